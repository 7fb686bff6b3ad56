import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MessageBus } from '../../src/bus/index.js';
import { createEnvelope, Topic, type Envelope } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import { createCommandsService } from '../../src/services/commands/index.js';
import eventRouter from '../../src/services/event-router/index.js';
import { createModerationService } from '../../src/services/moderation/index.js';
import { createQueryAnalyzer } from '../../src/services/query-analyzer/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { collect, startTestHost } from '../support/harness.js';

const encoder = new TextEncoder();
const LLM_TOPIC = 'internal.llm-bot.v1';

/** A chat message as the Twitch normalizer publishes it (seed 003 shape). */
function twitchChat(text: string, options: { userId?: string; login?: string; badges?: string[]; egress?: boolean } = {}): Envelope {
  const login = options.login ?? 'viewer_one';
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: {
      platform: 'twitch',
      channel: 'streamer',
      channelId: '1000',
      ...(options.egress === false ? {} : { egressDestination: Topic.egress }),
    },
    user: { id: options.userId ?? '2001', name: login, displayName: login, profileImageUrl: '', role: '' },
    payload: {
      text,
      messageId: 'm-' + Math.random().toString(36).slice(2),
      badges: options.badges ?? [],
      isMod: false,
      isSubscriber: false,
      emotes: [],
    },
  });
}

const slipHistory = (envelope: Envelope) => envelope.routingSlip.map((step) => `${step.id}:${step.status}`);

describe('the phased flow: auth → router → query-analyzer → router → reaction', () => {
  let store: Store;
  let bus: MessageBus;
  let host: Host;
  let observer: Awaited<ReturnType<typeof collect>>;

  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    bus = createMemoryBus();
    await bus.connect();
    observer = await collect(bus, [Topic.egress, Topic.finalizer, Topic.deadletter, LLM_TOPIC]);
    host = await startTestHost({
      services: [authService, eventRouter, createQueryAnalyzer(), createModerationService(), createCommandsService()],
      bus,
      env: { ANALYZER_BLOCKLIST: 'buy followers', LLM_PROVIDER: 'openai' },
      extra: { store },
    });
  });
  afterAll(async () => {
    await host?.stop();
    await bus?.close();
    await store?.close();
  });

  const send = (envelope: Envelope) => bus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)));

  it("answers a viewer's !ping with pong on egress, with the whole path in the slip", async () => {
    const envelope = twitchChat('!ping');
    await send(envelope);
    const out: Envelope = await observer.waitFor(Topic.egress, (value) => value.id === envelope.id);
    expect(out.candidates?.map((candidate) => candidate.text)).toEqual(['pong']);
    expect(slipHistory(out)).toEqual(['query-analyzer:OK', 'moderation:OK', 'router:OK', 'commands:OK']);
    expect(out.outcome).toBe('completed');
    expect(out.user).toMatchObject({ role: 'viewer', permissions: ['chat', 'commands:use'] });
    expect(out.message).toMatchObject({ command: 'ping', args: [] });
    expect(out.annotations?.map((annotation) => annotation.kind)).toEqual(
      expect.arrayContaining(['first-message', 'intent', 'sentiment', 'spam', 'route']),
    );
    expect(out.annotations?.filter((annotation) => annotation.kind === 'route').map((annotation) => annotation.label)).toEqual([
      'chat-enrichment',
      'commands',
    ]);
    for (const step of out.routingSlip) expect(Date.parse(step.endedAt!)).toBeGreaterThanOrEqual(Date.parse(step.startedAt!));
  });

  it('ends a spam message at the moderation step, which acts on it (here without Twitch: not permitted) and warns', async () => {
    const envelope = twitchChat('BUY FOLLOWERS NOW at cheap-viewers.xyz', { userId: '2002', login: 'spammer', egress: false });
    await send(envelope);
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
    expect(final.outcome).toBe('handled');
    expect(final.candidates?.map((candidate) => candidate.text)).toEqual([
      '@spammer please don’t: no links without a moderator’s !permit (warning)',
    ]);
    expect(final.annotations?.find((annotation) => annotation.kind === 'moderation')).toMatchObject({
      label: 'spam',
      source: 'query-analyzer',
    });
    expect(final.annotations?.find((annotation) => annotation.kind === 'moderation-result')).toMatchObject({
      label: 'delete',
      payload: { filter: 'links', status: 'not-permitted' },
    });
    expect(slipHistory(final)).toEqual(['query-analyzer:OK', 'moderation:OK', 'router:PENDING']);
  });

  it("finalizes a message no rule reacts to as 'unrouted'", async () => {
    const envelope = twitchChat('nice weather today', { userId: '2003', login: 'chatter', egress: false });
    await send(envelope);
    const final: Envelope = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
    expect(final.outcome).toBe('unrouted');
    expect(slipHistory(final)).toEqual(['query-analyzer:OK', 'moderation:OK', 'router:OK']);
    expect(final.candidates ?? []).toEqual([]);
  });

  it('sends a question on to the llm-bot step', async () => {
    const envelope = twitchChat('what game is this?', { userId: '2004', login: 'curious', badges: ['subscriber'] });
    await send(envelope);
    const out: Envelope = await observer.waitFor(LLM_TOPIC, (value) => value.id === envelope.id);
    expect(slipHistory(out)).toEqual(['query-analyzer:OK', 'moderation:OK', 'router:OK', 'llm-bot:PENDING']);
    expect(out.user.role).toBe('subscriber');
    expect(out.annotations?.find((annotation) => annotation.kind === 'intent')?.label).toBe('question');
  });

  it('lets a moderator add a command from chat that a viewer can then use', async () => {
    const add = twitchChat('!addcom !lurk -cd=0 {user} is lurking', { userId: '2005', login: 'mod_mia', badges: ['moderator'] });
    await send(add);
    expect((await observer.waitFor(Topic.egress, (value) => value.id === add.id)).candidates[0].text).toBe('Command !lurk added.');
    const use = twitchChat('!lurk', { userId: '2006', login: 'quiet_one' });
    await send(use);
    expect((await observer.waitFor(Topic.egress, (value) => value.id === use.id)).candidates[0].text).toBe('quiet_one is lurking');
    expect(observer.deadLetters()).toEqual([]);
  });
});
