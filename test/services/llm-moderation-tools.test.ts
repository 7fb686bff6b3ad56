/** The LLM's moderation tools on the built-in platform MCP server: offered to and usable by moderators and up only. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, type Envelope } from '../../src/core/index.js';
import {
  POLICY_META_KEY,
  REQUESTER_META_KEY,
  connectPlatformMcp,
  toolAllowed,
  type PlatformMcp,
  type Requester,
} from '../../src/services/llm-bot/index.js';
import { MODERATION_TOOL_POLICIES } from '../../src/services/llm-bot/mcp-moderation.js';
import { requestOf } from '../../src/services/moderation/requests.js';
import { createStore, type Store } from '../../src/store/index.js';

const person = (role: string): Requester => ({
  platform: 'twitch',
  channel: '#streamer',
  channelId: '1000',
  userId: `u-${role}`,
  login: `${role}_login`,
  role,
  permissions: role === 'moderator' || role === 'broadcaster' ? ['users:moderate'] : [],
});

describe('the moderation tools for the LLM', () => {
  let store: Store;
  let platform: PlatformMcp;
  const published: Array<{ topic: string; envelope: Envelope }> = [];
  const calls: string[] = [];

  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    await store.init();
    const chat = createEnvelope({
      type: 'external.chat.message.v1',
      source: { platform: 'twitch', channel: '#streamer', channelId: '1000' },
      user: { id: 'u-troll', name: 'troll', displayName: 'Troll', profileImageUrl: '', role: 'viewer' },
      payload: { text: 'rude words', messageId: 'msg-42' },
      extra: { message: { id: 'msg-42', text: 'rude words' } },
    });
    await store.recordIngress([
      {
        id: chat.id,
        correlationId: chat.id,
        type: chat.type,
        platform: 'twitch',
        channel: '#streamer',
        userId: 'u-troll',
        userName: 'troll',
        text: 'rude words',
        receivedAt: new Date().toISOString(),
        ingress: { envelope: chat },
      },
    ]);
    platform = await connectPlatformMcp({
      store,
      publish: async (topic, envelope) => void published.push({ topic, envelope }),
      onCall: (event) => calls.push(`${event.tool}:${event.outcome}`),
    });
  });

  afterAll(async () => {
    await platform?.close();
    await store?.close();
  });

  const call = (name: string, args: Record<string, unknown>, requester?: Requester) =>
    platform.client.callTool({ name, arguments: args, ...(requester ? { _meta: { [REQUESTER_META_KEY]: requester } } : {}) });

  it('lists the three tools, each with a policy that viewers, subscribers and VIPs fail', async () => {
    const tools = (await platform.client.listTools()).tools.filter((tool) => tool.name.startsWith('moderation_'));
    expect(tools.map((tool) => tool.name).sort()).toEqual(['moderation_delete_last_message', 'moderation_shoutout', 'moderation_timeout']);
    for (const tool of tools) {
      const policy = tool._meta?.[POLICY_META_KEY] as Record<string, string>;
      expect(policy).toEqual(MODERATION_TOOL_POLICIES[tool.name as keyof typeof MODERATION_TOOL_POLICIES]);
      for (const role of ['viewer', 'subscriber', 'vip', 'banned']) expect(toolAllowed(policy, person(role))).toBe(false);
      for (const role of ['moderator', 'broadcaster']) expect(toolAllowed(policy, person(role))).toBe(true);
    }
  });

  it('refuses a viewer and a call without a requester, and asks for nothing', async () => {
    calls.length = 0;
    const asViewer = await call('moderation_timeout', { login: 'troll', seconds: 600 }, person('viewer'));
    expect(asViewer.isError).toBe(true);
    expect((asViewer.content as Array<{ text: string }>)[0]!.text).toBe('forbidden: moderation_timeout is not available to role viewer');
    expect((await call('moderation_shoutout', { login: 'friend' })).isError).toBe(true);
    expect(calls).toEqual(['moderation_timeout:denied', 'moderation_shoutout:denied']);
    expect(published).toEqual([]);
  });

  it('sends a moderator’s timeout, shoutout and delete to the moderation step as requests', async () => {
    published.length = 0;
    expect(
      (await call('moderation_timeout', { login: '@Troll', seconds: 600, reason: 'insults' }, person('moderator'))).isError,
    ).toBeFalsy();
    expect((await call('moderation_shoutout', { login: 'friend' }, person('moderator'))).isError).toBeFalsy();
    expect((await call('moderation_delete_last_message', { login: 'troll' }, person('moderator'))).isError).toBeFalsy();
    expect(published.map((item) => item.topic)).toEqual(['internal.moderation.v1', 'internal.moderation.v1', 'internal.moderation.v1']);
    expect(published.map((item) => requestOf(item.envelope))).toEqual([
      { action: 'timeout', target: { login: 'troll' }, durationSec: 600, reason: 'insults' },
      { action: 'shoutout', target: { login: 'friend' }, reason: 'asked by moderator_login' },
      { action: 'delete', messageId: 'msg-42', target: { login: 'troll', id: 'u-troll' }, reason: 'asked by moderator_login' },
    ]);
    expect(published[0]!.envelope).toMatchObject({
      type: 'moderation.request.v1',
      user: { id: 'u-moderator', role: 'moderator' },
      routingSlip: [{ id: 'moderation', status: 'PENDING' }],
    });
  });

  it('says so when the chatter has no recent message to delete', async () => {
    const result = await call('moderation_delete_last_message', { login: 'nobody' }, person('moderator'));
    expect(result.isError).toBe(true);
    expect((result.content as Array<{ text: string }>)[0]!.text).toMatch(/no recent message from nobody/);
  });
});
