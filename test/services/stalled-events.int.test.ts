import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { eventsCommand } from '../../src/cli/events.js';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { Topic, type Envelope } from '../../src/core/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { service as auth } from '../../src/services/auth/index.js';
import { service as eventRouter } from '../../src/services/event-router/index.js';
import { service as persistence } from '../../src/services/persistence/index.js';
import { service as finalizer } from '../../src/services/finalizer/index.js';
import { service as gateway } from '../../src/services/api-gateway/index.js';
import { chatEnvelope } from '../support/envelopes.js';
import { collect, createLogSink, startTestHost } from '../support/harness.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const MODERATOR = 'moderator-token-stall';
const VIEWER = 'viewer-token-stall';
const encoder = new TextEncoder();

let bus: MemoryBus;
let store: Store;
let host: Host;
let observer: Awaited<ReturnType<typeof collect>>;
const logs = createLogSink();
/** The first test's event: warned about early, then left stalled through every later check. */
let firstStalledId = '';

// This host runs no query-analyzer: the router's first step for chat is served nowhere here, and the
// query-analyzer "elsewhere" (its health URL) does not answer. Every chat message stalls there.
beforeAll(async () => {
  bus = createMemoryBus();
  await bus.connect();
  store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
  await store.init();
  observer = await collect(bus, [Topic.finalizer, Topic.deadletter]);
  const closedPort = await freePort();
  host = await startTestHost({
    services: [auth, eventRouter, persistence, finalizer, gateway],
    bus,
    listen: true,
    architecture: loadArchitecture(),
    env: {
      HOST: '127.0.0.1',
      API_GATEWAY_TOKENS: `${MODERATOR}:moderator,${VIEWER}:viewer`,
      API_GATEWAY_HEALTH_URLS: `query-analyzer=http://127.0.0.1:${closedPort}`,
      STALLED_AFTER_MS: '1000',
      LOG_LEVEL: 'warn',
    },
    extra: { store, logDestination: logs.stream },
  });
});

afterAll(async () => {
  await host?.stop();
  await store?.close();
  await bus?.close();
});

const api = async (method: 'GET' | 'POST', url: string, token = MODERATOR, payload?: unknown) => {
  const response = await host.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: response.statusCode, body: response.json() };
};

async function sendChat(text: string): Promise<Envelope> {
  const envelope = chatEnvelope({
    text,
    source: { platform: 'twitch', channel: 'stallchan', channelId: 'stallchan-id' },
    user: { id: `u-${text.length}`, name: 'viewer' },
    messageId: `m-${Math.random().toString(36).slice(2)}`,
  });
  await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)));
  return envelope;
}

const stalledIds = async () => ((await api('GET', '/api/events/stalled')).body.items as Array<{ id: string }>).map((item) => item.id);

describe('stalled events', () => {
  it('reports an event not finalized within STALLED_AFTER_MS as stalled at its step, with the unreachable consumer as the cause', async () => {
    const envelope = await sendChat('hello, is anyone there?');
    firstStalledId = envelope.id;
    const stalled = await waitFor(
      async () => (await api('GET', '/api/events/stalled')).body.items.find((item: { id: string }) => item.id === envelope.id),
      { timeoutMs: 15_000, message: 'the event to be reported stalled' },
    );
    expect(stalled).toMatchObject({
      id: envelope.id,
      correlationId: envelope.correlationId,
      text: 'hello, is anyone there?',
      at: { step: 'query-analyzer', topic: 'internal.query-analyzer.v1', publishedBy: 'event-router', consumers: ['query-analyzer'] },
      cause: 'query-analyzer is unreachable',
    });
    expect(stalled.stalledForMs).toBeGreaterThanOrEqual(1000);

    const detail = await api('GET', `/api/events/${envelope.id}`);
    expect(detail.body.stalled).toMatchObject({ at: { step: 'query-analyzer' }, cause: 'query-analyzer is unreachable' });
    const inflight = await host.app.inject({ method: 'GET', url: `/_debug/inflight?id=${envelope.id}` });
    expect(inflight.json().items).toEqual([
      expect.objectContaining({ id: envelope.id, topic: 'internal.query-analyzer.v1', by: 'event-router' }),
    ]);

    // The periodic check sets the gauge and warns once per stalled event.
    await waitFor(async () => /^bitbrat_events_stalled [1-9]/m.test((await host.app.inject({ method: 'GET', url: '/metrics' })).body), {
      timeoutMs: 10_000,
      message: 'bitbrat_events_stalled > 0',
    });
    const warning = await waitFor(() => logs.records().find((record) => record.eventId === envelope.id), {
      timeoutMs: 10_000,
      message: 'the stalled warning',
    });
    expect(warning).toMatchObject({
      level: 'warn',
      msg: 'event stalled at query-analyzer: query-analyzer is unreachable',
      step: 'query-analyzer',
    });
  });

  it('lets a moderator dead-letter a stalled event: a STALLED dead letter and a failed final record, and it is no longer stalled', async () => {
    const envelope = await sendChat('dead letter me please');
    await waitFor(async () => (await stalledIds()).includes(envelope.id), { timeoutMs: 15_000, message: 'the event to stall' });
    expect((await api('POST', `/api/events/${envelope.id}/dead-letter`, VIEWER, {})).status).toBe(403);

    const response = await api('POST', `/api/events/${envelope.id}/dead-letter`, MODERATOR, { reason: 'analyzer is down' });
    expect(response.status).toBe(200);
    const final = await observer.waitFor(Topic.finalizer, (value) => (value as Envelope).id === envelope.id, 10_000);
    expect((final as Envelope).outcome).toBe('failed');
    expect((final as Envelope).errors!.at(-1)).toMatchObject({ code: 'STALLED', message: expect.stringContaining('analyzer is down') });
    const record = await waitFor(async () => {
      const current = await store.getEvent(envelope.id);
      return current?.finalizedAt ? current : undefined;
    });
    expect(record.outcome).toBe('failed');
    const letter = await waitFor(async () => store.getDeadLetter(response.body.deadLetterId));
    expect(letter.deadLetter).toMatchObject({ reason: { code: 'STALLED' }, envelopeId: envelope.id, replayTopic: Topic.ingress });
    expect(await stalledIds()).not.toContain(envelope.id);

    const again = await api('POST', `/api/events/${envelope.id}/dead-letter`, MODERATOR, {});
    expect(again.status).toBe(409);
    expect(again.body.message).toMatch(/finalized/);
  });

  it('lets a moderator replay a stalled event as a new envelope of the same conversation, finalizing the stalled one', async () => {
    const envelope = await sendChat('replay me please');
    await waitFor(async () => (await stalledIds()).includes(envelope.id), { timeoutMs: 15_000, message: 'the event to stall' });
    const response = await api('POST', `/api/events/${envelope.id}/replay`, MODERATOR, {});
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ id: envelope.id, correlationId: envelope.correlationId });
    expect(response.body.replayId).not.toBe(envelope.id);

    const final = (await observer.waitFor(Topic.finalizer, (value) => (value as Envelope).id === envelope.id, 10_000)) as Envelope;
    expect(final.errors!.at(-1)).toMatchObject({ code: 'STALLED', message: expect.stringContaining(response.body.replayId) });
    // The copy went through ingress again: recorded, and routed to the same step.
    const copy = await waitFor(async () => store.getEvent(response.body.replayId));
    expect(copy).toMatchObject({ correlationId: envelope.correlationId, text: 'replay me please' });
    await waitFor(
      async () =>
        (await host.app.inject({ method: 'GET', url: `/_debug/inflight?id=${response.body.replayId}` })).json().items[0]?.topic ===
        'internal.query-analyzer.v1',
    );
  });

  it('lists, dead-letters and replays stalled events from the command line', async () => {
    const first = await sendChat('cli dead letter');
    const second = await sendChat('cli replay');
    await waitFor(
      async () => {
        const ids = await stalledIds();
        return ids.includes(first.id) && ids.includes(second.id);
      },
      { timeoutMs: 15_000, message: 'both events to stall' },
    );
    const run = async (args: string[]) => {
      const out: string[] = [];
      const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
        out.push(String(chunk));
        return true;
      });
      try {
        const code = await eventsCommand([...args, '--url', `http://127.0.0.1:${host.port}`, '--token', MODERATOR], {});
        return { code, stdout: out.join('') };
      } finally {
        spy.mockRestore();
      }
    };
    const listed = await run(['stalled']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`${first.id} .* stalled at query-analyzer — query-analyzer is unreachable`));
    const dead = await run(['dead-letter', first.id, '--reason', 'operator test']);
    expect(dead).toMatchObject({ code: 0, stdout: expect.stringContaining(`dead-lettered ${first.id}`) });
    const replayed = await run(['replay', second.id]);
    expect(replayed).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`replayed ${second.id} as \\S+`)) });
    await waitFor(async () => !(await stalledIds()).includes(first.id) && !(await stalledIds()).includes(second.id), {
      message: 'both to be finalized',
    });
    await expect(eventsCommand(['replay'], {})).rejects.toThrow(/give the event id/);
  });

  it('answers 404 for an unknown event and 400 for a bad body or query', async () => {
    expect((await api('POST', '/api/events/no-such-event/replay', MODERATOR, {})).status).toBe(404);
    const envelope = await sendChat('bad body');
    await waitFor(async () => store.getEvent(envelope.id));
    expect((await api('POST', `/api/events/${envelope.id}/replay`, MODERATOR, { unexpected: true })).status).toBe(400);
    expect((await api('GET', '/api/events/stalled?limit=0')).status).toBe(400);
  });

  it('has warned once per stalled event, however many checks ran since (one a second here)', async () => {
    const warnings = logs.records().filter((record) => String(record.msg).startsWith('event stalled'));
    const perEvent = new Map<unknown, number>();
    for (const record of warnings) perEvent.set(record.eventId, (perEvent.get(record.eventId) ?? 0) + 1);
    expect(perEvent.get(firstStalledId)).toBe(1);
    expect([...perEvent.values()].every((count) => count === 1)).toBe(true);
    // It was still stalled at the last check: the gauge counts it, the log did not repeat it.
    expect((await stalledIds()).includes(firstStalledId)).toBe(true);
  });
});

describe('stalled events in a split deployment', () => {
  it('finds the step in the process that published it, over its /_debug/inflight, and names the consumer that is down', async () => {
    const sharedBus = createMemoryBus();
    await sharedBus.connect();
    const splitStore = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    await splitStore.init();
    // "Another machine": auth and the router, whose engines remember where they sent each envelope.
    const routing = await startTestHost({
      services: [auth, eventRouter],
      bus: sharedBus,
      listen: true,
      architecture: loadArchitecture(),
      env: { HOST: '127.0.0.1' },
      extra: { store: splitStore },
    });
    const closedPort = await freePort();
    const front = await startTestHost({
      services: [persistence, finalizer, gateway],
      bus: sharedBus,
      architecture: loadArchitecture(),
      env: {
        API_GATEWAY_TOKENS: `${MODERATOR}:moderator`,
        API_GATEWAY_HEALTH_URLS: `auth=http://127.0.0.1:${routing.port},event-router=http://127.0.0.1:${routing.port},query-analyzer=http://127.0.0.1:${closedPort}`,
        STALLED_AFTER_MS: '1000',
      },
      extra: { store: splitStore },
    });
    try {
      const envelope = chatEnvelope({
        text: 'anyone home?',
        source: { platform: 'twitch', channel: 'splitchan', channelId: 'splitchan-id' },
        user: { id: 'u-split', name: 'viewer' },
        messageId: 'm-split',
      });
      await sharedBus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)));
      const list = async () =>
        (await front.app.inject({ method: 'GET', url: '/api/events/stalled', headers: { authorization: `Bearer ${MODERATOR}` } })).json()
          .items as Array<Record<string, any>>;
      const stalled = await waitFor(async () => (await list()).find((item) => item.id === envelope.id), {
        timeoutMs: 15_000,
        message: 'the event to stall',
      });
      // The front process published nothing for it past ingress: the step came from the routing process.
      expect(front.context('api-gateway').inflight?.get(envelope.id)?.topic).not.toBe('internal.query-analyzer.v1');
      expect(stalled).toMatchObject({
        at: { step: 'query-analyzer', publishedBy: 'event-router', consumers: ['query-analyzer'] },
        cause: 'query-analyzer is unreachable',
      });
    } finally {
      await front.stop();
      await routing.stop();
      await splitStore.close();
      await sharedBus.close();
    }
  });
});
