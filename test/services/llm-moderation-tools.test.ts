/** The LLM's moderation tools on the built-in platform MCP server: offered to and usable by moderators and up only. */
import { describe, expect, it } from 'vitest';
import { createAnnotation, createEnvelope } from '../../src/core/index.js';
import type { Requester } from '../../src/services/llm-bot/index.js';
import { MODERATION_TOOL_POLICIES } from '../../src/services/llm-bot/mcp-moderation.js';
import { RESULT_ANNOTATION, requestOf } from '../../src/services/moderation/requests.js';
import { answerNextRequest, expectModeratorTools, requesterAs, resultText, usePlatformMcp } from '../support/platform-mcp.js';

const person = (role: string): Requester =>
  requesterAs(role, { permissions: role === 'moderator' || role === 'broadcaster' ? ['users:moderate'] : [] });

describe('the moderation tools for the LLM', () => {
  const mcp = usePlatformMcp(
    async (store) => {
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
      // Nothing here performs the requests: a short wait for the moderation service's answer keeps the tests quick.
    },
    { confirmWithinMs: 300 },
  );
  const { published, calls, call } = mcp;

  it('lists the three tools, each with a policy that viewers, subscribers and VIPs fail', async () => {
    await expectModeratorTools(mcp.platform, {
      prefix: 'moderation_',
      names: ['moderation_delete_last_message', 'moderation_shoutout', 'moderation_timeout'],
      policies: MODERATION_TOOL_POLICIES,
      requester: person,
    });
  });

  it('refuses a viewer and a call without a requester, and asks for nothing', async () => {
    calls.length = 0;
    const asViewer = await call('moderation_timeout', { login: 'troll', seconds: 600 }, person('viewer'));
    expect(asViewer.isError).toBe(true);
    expect(resultText(asViewer)).toBe('forbidden: moderation_timeout is not available to role viewer');
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
    expect(resultText(result)).toMatch(/no recent message from nobody/);
  });

  it('tells the model what the moderation service answered: done, or why not', async () => {
    const answer = (status: string, message: string) =>
      answerNextRequest(mcp, () =>
        createAnnotation('moderation', { kind: RESULT_ANNOTATION, label: 'timeout', payload: { status, message } }),
      );
    published.length = 0;
    const [done] = await Promise.all([
      call('moderation_timeout', { login: 'troll', seconds: 600 }, person('moderator')),
      answer('done', 'timed out troll for 600 s'),
    ]);
    expect(done.isError).toBeFalsy();
    expect(JSON.parse(resultText(done))).toEqual({ ok: true, action: 'timeout', status: 'done', message: 'timed out troll for 600 s' });
    published.length = 0;
    const [refused] = await Promise.all([
      call('moderation_timeout', { login: 'troll', seconds: 600 }, person('moderator')),
      answer('not-permitted', 'the bot is not a moderator in this channel'),
    ]);
    expect(refused.isError).toBe(true);
    expect(JSON.parse(resultText(refused))).toEqual({
      ok: false,
      action: 'timeout',
      status: 'not-permitted',
      message: 'the bot is not a moderator in this channel',
    });
  });
});
