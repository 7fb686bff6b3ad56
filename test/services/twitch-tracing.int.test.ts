/**
 * Helix spans of the running Twitch platform: ingress-egress, the pipeline and the moderation step against
 * the fake Twitch (real Twurple), exporting to the fake OTLP collector. The calls made outside any message
 * (the channel lookup, the EventSub subscriptions, the stream poll) are root spans; a moderation action
 * taken for a chat message is a span in that message's trace, a refused one an error span.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { normalizeTraceId } from '../../src/core/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import authService from '../../src/services/auth/index.js';
import commands from '../../src/services/commands/index.js';
import { service as eventRouter } from '../../src/services/event-router/index.js';
import finalizer from '../../src/services/finalizer/index.js';
import ingressEgress from '../../src/services/ingress-egress/index.js';
import { createModerationService } from '../../src/services/moderation/index.js';
import persistence from '../../src/services/persistence/index.js';
import queryAnalyzer from '../../src/services/query-analyzer/index.js';
import { createStore, type EventRecord, type Store } from '../../src/store/index.js';
import { startFakeOtlpCollector, type FakeOtlpCollector, type ReceivedSpan } from '../fakes/otlp.js';
import { startTestHost } from '../support/harness.js';
import { waitForComponent } from '../support/pipeline.js';
import { BOT, OTHER, STREAMER, startTwitchWorld, type TwitchWorld } from '../support/twitch-world.js';
import { waitFor } from '../support/wait.js';
import { helixCallAttributes } from '../support/traces.js';

const BOT_SCOPES = ['chat:read', 'chat:edit', 'moderator:manage:chat_messages', 'moderator:manage:banned_users'];

let collector: FakeOtlpCollector;
let store: Store;
let world: TwitchWorld;
let bus: MemoryBus;
let host: Host;

beforeAll(async () => {
  collector = await startFakeOtlpCollector();
  store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  await store.init();
  world = await startTwitchWorld({ botScopes: BOT_SCOPES, channels: [STREAMER.login, OTHER.login] });
  // The bot moderates the streamer's channel, not the other one.
  world.api.addModerator(STREAMER.id, BOT.id);
  world.api.setStream(STREAMER.id, { title: 'Speedrun', gameName: 'Celeste' });
  bus = createMemoryBus();
  host = await startTestHost({
    services: [ingressEgress, authService, eventRouter, queryAnalyzer, createModerationService(), commands, persistence, finalizer],
    bus,
    env: {
      ...world.env(world.broadcasterEnv()),
      INSTANCE_ID: 'twitch-tracing',
      BOT_NAME: BOT.login,
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_SERVICE_NAME: 'bitbrat-twitch',
      OTEL_BSP_SCHEDULE_DELAY: '50',
    },
    architecture: loadArchitecture(),
    extra: { store },
  });
  await world.irc.waitFor(() => world.irc.joinedClients(STREAMER.login) > 0 && world.irc.joinedClients(OTHER.login) > 0, 15_000);
}, 60_000);

afterAll(async () => {
  await host?.stop();
  await bus?.close();
  await world?.stop();
  await store?.close();
  await collector?.close();
});

/** Chat from `user`; resolves with its final record once the finalizer wrote it. */
async function chat(user: string, text: string, channel: string): Promise<EventRecord> {
  const id = world.irc.sendChat({ channel, user, text, tags: { 'user-id': `u-${user}` } });
  return await waitFor(
    async () => {
      const page = await store.listEvents({ type: 'external.chat.message.v1', limit: 200 });
      const match = page.items.find((item) => item.final?.message?.id === id);
      return match?.outcome ? match : undefined;
    },
    { timeoutMs: 20_000, message: `the final record of "${text}"` },
  );
}

/** The spans received once the span `name` of trace `traceId` and its parent (which ends later, so may come in a later export) are in. */
const helixSpanAndParent = (traceId: string, name: string) =>
  collector.waitFor((all) => {
    const span = all.find((candidate) => candidate.traceId === traceId && candidate.name === name);
    return Boolean(span && all.some((candidate) => candidate.spanId === span.parentSpanId));
  });

const named = (spans: readonly ReceivedSpan[], name: string) => spans.filter((span) => span.name === name);

describe('Helix spans of the Twitch platform', () => {
  it('makes the calls made outside any message root client spans: the channel lookup, the EventSub subscriptions, the stream poll', async () => {
    // Two channels: ten subscriptions on the streamer's channel with the broadcaster's token, four on the other with the bot's.
    await waitForComponent(host, 'ingress-egress.eventsub', (component) => Boolean(component.detail?.includes('14/14')), 30_000);
    const spans = await collector.waitFor(
      (all) =>
        named(all, 'twitch.helix GET /users').length > 0 &&
        named(all, 'twitch.helix POST /eventsub/subscriptions').length >= 14 &&
        named(all, 'twitch.helix GET /streams').length > 0,
      20_000,
    );

    const [lookup] = named(spans, 'twitch.helix GET /users');
    expect(lookup).toMatchObject({ kind: 3, parentSpanId: '', status: { code: 0 } });
    expect(lookup!.attributes).toMatchObject(helixCallAttributes(world.api.port, '/users'));
    expect(lookup!.resource['service.name']).toBe('bitbrat-twitch');

    const subscriptions = named(spans, 'twitch.helix POST /eventsub/subscriptions');
    expect(subscriptions).toHaveLength(world.api.subscriptions.length);
    for (const span of subscriptions) {
      expect(span).toMatchObject({ kind: 3, parentSpanId: '', status: { code: 0 } });
      expect(span.attributes).toMatchObject({
        'http.request.method': 'POST',
        'url.full': `http://localhost:${world.api.port}/eventsub/subscriptions`,
        'http.response.status_code': 202,
      });
    }
    // Each subscription was made with the token the plan chose for it; the span says whose.
    expect(new Set(subscriptions.map((span) => span.attributes['bitbrat.twitch.token_user_id']))).toEqual(new Set([STREAMER.id, BOT.id]));
    // Each is a trace of its own.
    expect(new Set(subscriptions.map((span) => span.traceId)).size).toBe(subscriptions.length);

    const [poll] = named(spans, 'twitch.helix GET /streams');
    expect(poll).toMatchObject({ kind: 3, parentSpanId: '', status: { code: 0 } });
    expect(poll!.attributes).toMatchObject({ 'http.request.method': 'GET', 'http.response.status_code': 200 });
  });

  it('makes a moderation action for a chat message a span in that message’s trace, under the moderation step', async () => {
    const record = await chat('spammer', 'cheap followers at spam.example.com', STREAMER.login);
    const traceId = normalizeTraceId(record.final!.traceId);
    const spans = await helixSpanAndParent(traceId, 'twitch.helix DELETE /moderation/chat');
    const mine = spans.filter((span) => span.traceId === traceId);
    const deleted = mine.find((span) => span.name === 'twitch.helix DELETE /moderation/chat')!;
    expect(deleted).toMatchObject({ kind: 3, status: { code: 0 } });
    expect(deleted.attributes).toMatchObject({ 'http.response.status_code': 204, 'bitbrat.twitch.token_user_id': BOT.id });
    const step = mine.find((span) => span.spanId === deleted.parentSpanId);
    expect(step?.attributes).toMatchObject({ 'bitbrat.service': 'moderation', 'bitbrat.step': 'moderation' });
    expect(world.api.deletedMessages.some((message) => message.messageId === record.final!.message?.id)).toBe(true);
  });

  it('marks an action Twitch refuses as an error span with its status and the exception, while the message still completes', async () => {
    const record = await chat('spammer2', 'visit spam.example.com', OTHER.login);
    expect(record.outcome).toBe('handled');
    const traceId = normalizeTraceId(record.final!.traceId);
    const spans = await helixSpanAndParent(traceId, 'twitch.helix DELETE /moderation/chat');
    const refused = spans.find((span) => span.traceId === traceId && span.name === 'twitch.helix DELETE /moderation/chat')!;
    expect(refused.status.code).toBe(2);
    expect(refused.status.message).toMatch(/^403: Twitch answered HTTP 403/);
    expect(refused.attributes).toMatchObject({ 'error.type': '403', 'http.response.status_code': 403 });
    expect(refused.events.find((event) => event.name === 'exception')?.attributes).toMatchObject({
      'exception.type': 'HttpStatusCodeError',
      'exception.message': expect.stringMatching(/not one of the broadcaster’s moderators/),
    });
    // The moderation step itself did not fail: a refusal is a recorded outcome, and the warning still goes out.
    const step = spans.find((span) => span.spanId === refused.parentSpanId);
    expect(step?.attributes).toMatchObject({ 'bitbrat.step': 'moderation', 'bitbrat.outcome': 'handled' });
    expect(step?.status.code).not.toBe(2);
  });
});
