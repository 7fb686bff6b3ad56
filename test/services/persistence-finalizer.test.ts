import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { createEnvelope, createReply, createStep, Topic, type Envelope } from '../../src/core/index.js';
import { replayDeadLetter } from '../../src/ops/dlq.js';
import { continueWith, defineService, type Host } from '../../src/runtime/index.js';
import finalizer, { pruneOlderThan } from '../../src/services/finalizer/index.js';
import persistence from '../../src/services/persistence/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startTestHost, testArchitecture } from '../support/harness.js';
import { waitFor } from '../support/wait.js';

const encoder = new TextEncoder();
const send = (bus: MemoryBus, topic: string, value: unknown, msgId?: string) =>
  bus.publish(topic, encoder.encode(typeof value === 'string' ? value : JSON.stringify(value)), { msgId });

function chat(text: string, extra: Partial<Envelope> = {}): Envelope {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'twitch', channel: 'streamer', channelId: '42' },
    user: { id: 'u1', name: 'alice', displayName: 'Alice', profileImageUrl: '', role: 'viewer' },
    payload: { text, raw: { tags: { id: 'abc' } } },
    extra: { message: { id: 'm1', text }, ...extra },
  });
}

function system(type: string, payload: Record<string, unknown>): Envelope {
  return createEnvelope({ type, source: { platform: 'twitch', channel: 'streamer', channelId: '42' }, payload });
}

describe('persistence and finalizer services', () => {
  let store: Store;
  let bus: MemoryBus;
  let host: Host;

  beforeAll(async () => {
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await store.init();
  });
  afterAll(async () => {
    await store.close();
  });
  beforeEach(async () => {
    bus = createMemoryBus();
    await bus.connect();
    host = await startTestHost({
      services: [persistence, finalizer],
      bus,
      architecture: testArchitecture([
        { name: 'persistence', consumes: [Topic.ingress] },
        { name: 'finalizer', consumes: [Topic.finalizer, Topic.deadletter] },
      ]),
      extra: { store },
    });
  });
  afterEach(async () => {
    await host.stop();
  });

  it('records every ingress envelope once, raw and normalized, even when redelivered', async () => {
    const envelope = chat('hello there');
    await send(bus, Topic.ingress, envelope, 'a');
    await send(bus, Topic.ingress, envelope, 'b'); // a second delivery of the same envelope
    const record = await waitFor(() => store.getEvent(envelope.id));
    expect(record.ingress?.envelope.id).toBe(envelope.id);
    expect(record.ingress?.raw).toEqual({ tags: { id: 'abc' } });
    expect(record.text).toBe('hello there');
    expect(record.userName).toBe('alice');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const page = await store.listEvents({ limit: 10 });
    expect(page.items.filter((item) => item.id === envelope.id)).toHaveLength(1);
  });

  it('merges source status and stream events into the sources document without losing fields', async () => {
    /** Puts a system event about the twitch:streamer source on ingress. */
    const aboutStreamer = (type: string, payload: Record<string, unknown> = {}) =>
      send(bus, Topic.ingress, system(type, { sourceId: 'twitch:streamer', platform: 'twitch', ...payload }));
    await aboutStreamer('system.source.status', {
      displayName: 'streamer',
      status: 'connected',
      authStatus: 'valid',
      permissions: { moderator: true },
      metrics: { messagesIn: 5, reconnects: 1, lastHeartbeat: '2026-11-25T10:00:00.000Z' },
    });
    await waitFor(async () => (await store.getSource('twitch:streamer'))?.status === 'connected');
    await aboutStreamer('system.stream.online', {
      title: 'Speedrun',
      game: 'Celeste',
      viewerCount: 17,
      startedAt: '2026-11-25T09:00:00.000Z',
    });
    await waitFor(async () => (await store.getSource('twitch:streamer'))?.streamStatus === 'online');
    await aboutStreamer('system.source.status', { status: 'connected', metrics: { messagesOut: 3, errors: 0 } });
    const source = await waitFor(async () => {
      const current = await store.getSource('twitch:streamer');
      return current?.metrics?.messagesOut === 3 ? current : undefined;
    });
    expect(source).toMatchObject({
      id: 'twitch:streamer',
      platform: 'twitch',
      displayName: 'streamer',
      status: 'connected',
      streamStatus: 'online',
      authStatus: 'valid',
      viewerCount: 17,
      permissions: { moderator: true },
      metrics: { messagesIn: 5, messagesOut: 3, errors: 0, reconnects: 1, lastHeartbeat: '2026-11-25T10:00:00.000Z' },
      metadata: { title: 'Speedrun', game: 'Celeste', startedAt: '2026-11-25T09:00:00.000Z' },
    });
    expect(source.lastStatusUpdate).toBeTruthy();
    expect(source.lastStreamUpdate).toBeTruthy();
    await aboutStreamer('system.stream.offline');
    const offline = await waitFor(async () => {
      const current = await store.getSource('twitch:streamer');
      return current?.streamStatus === 'offline' ? current : undefined;
    });
    expect(offline.metadata?.title).toBe('Speedrun');
    expect(offline.metrics?.messagesIn).toBe(5);
  });

  it('writes one final record with outcome, slip history, delivery and latency; duplicates make no second record', async () => {
    const envelope = chat('!ping', {
      routingSlip: [
        { ...createStep('router'), status: 'OK', attempt: 1, startedAt: '2026-11-25T10:00:00.010Z', endedAt: '2026-11-25T10:00:00.020Z' },
        { ...createStep('commands'), status: 'OK', attempt: 2, startedAt: '2026-11-25T10:00:00.030Z', endedAt: '2026-11-25T10:00:00.050Z' },
      ],
      candidates: [createReply('commands', 'pong')],
      outcome: 'completed',
      timestamp: '2026-11-25T10:00:00.000Z',
      delivery: { delivered: true, at: '2026-11-25T10:00:00.120Z', destination: 'internal.egress.v1' },
    });
    await send(bus, Topic.ingress, envelope);
    await send(bus, Topic.finalizer, envelope, 'f1');
    await send(bus, Topic.finalizer, envelope, 'f2');
    const record = await waitFor(async () => {
      const current = await store.getEvent(envelope.id);
      return current?.outcome ? current : undefined;
    });
    expect(record.outcome).toBe('completed');
    expect(record.replyDelivered).toBe(true);
    expect(record.replyText).toBe('pong');
    expect(record.latencyMs).toBe(120);
    expect(record.final?.routingSlip.map((step) => [step.id, step.status, step.attempt])).toEqual([
      ['router', 'OK', 1],
      ['commands', 'OK', 2],
    ]);
    expect(record.ingress?.envelope.id).toBe(envelope.id);
    const finalizedAt = record.finalizedAt;
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect((await store.getEvent(envelope.id))?.finalizedAt).toBe(finalizedAt);
    expect((await store.recordFinal([{ ...record }])).length).toBe(0);
  });

  it('records failed envelopes with their errors', async () => {
    const envelope = chat('boom', {
      outcome: 'failed',
      routingSlip: [
        { ...createStep('llm-bot'), status: 'ERROR', attempt: 3, error: { code: 'PROVIDER_ERROR', message: 'down', retryable: true } },
      ],
      errors: [
        { code: 'PROVIDER_ERROR', message: 'down (gave up after 3 attempts)', step: 'llm-bot', stepIndex: 0, at: new Date().toISOString() },
      ],
    });
    await send(bus, Topic.finalizer, envelope);
    const record = await waitFor(async () => {
      const current = await store.getEvent(envelope.id);
      return current?.outcome ? current : undefined;
    });
    expect(record.outcome).toBe('failed');
    expect(record.replyDelivered).toBe(false);
    expect(record.errors).toEqual([{ code: 'PROVIDER_ERROR', message: 'down (gave up after 3 attempts)', step: 'llm-bot' }]);
  });

  it('stores dead letters with reason and raw payload, including bytes that are not dead-letter records', async () => {
    await send(bus, Topic.deadletter, '\u0001 garbage that is not json');
    const page = await waitFor(async () => {
      const current = await store.listDeadLetters({ limit: 10 });
      return current.items.length ? current : undefined;
    });
    expect(page.items[0]!.deadLetter.reason.code).toBe('DECODE_FAILED');
    expect(page.items[0]!.deadLetter.raw).toContain('garbage that is not json');
  });

  it('prunes events and dead letters past retention', async () => {
    const other = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await other.init();
    try {
      const old = chat('old', { timestamp: new Date(Date.now() - 40 * 86_400_000).toISOString() });
      const fresh = chat('fresh');
      await other.recordIngress([
        { id: old.id, correlationId: old.correlationId, type: old.type, receivedAt: old.timestamp },
        { id: fresh.id, correlationId: fresh.correlationId, type: fresh.type, receivedAt: fresh.timestamp },
      ]);
      await other.insertDeadLetter({
        id: 'dl-old',
        receivedAt: old.timestamp,
        deadLetter: {
          kind: 'bitbrat.deadletter.v1',
          id: 'dl-old',
          at: old.timestamp,
          reason: { code: 'DECODE_FAILED', message: 'x' },
          topic: Topic.ingress,
          service: 'auth',
          raw: 'x',
          rawEncoding: 'utf8',
        },
      });
      const result = await pruneOlderThan({ store: other }, 30);
      expect(result).toMatchObject({ events: 1, deadLetters: 1 });
      expect(await other.getEvent(old.id)).toBeUndefined();
      expect(await other.getEvent(fresh.id)).toBeDefined();
    } finally {
      await other.close();
    }
  });
});

describe('dead letters end to end: invalid input, storage, replay', () => {
  it('an invalid envelope is dead-lettered with the reason, stored, and replayed to ingress once fixed; never deleted', async () => {
    const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await store.init();
    const bus = createMemoryBus();
    await bus.connect();
    const seen: string[] = [];
    const intake = defineService({
      name: 'intake',
      setup: () => ({
        consumers: { [Topic.ingress]: { mode: 'sink', handle: async (envelope) => (seen.push(envelope.id), continueWith()) } },
      }),
    });
    const host = await startTestHost({
      services: [intake, finalizer],
      bus,
      architecture: testArchitecture([
        { name: 'intake', consumes: [Topic.ingress] },
        { name: 'finalizer', consumes: [Topic.finalizer, Topic.deadletter] },
      ]),
      extra: { store },
    });
    try {
      const broken = { ...chat('fix me'), timestamp: 'yesterday-ish' };
      await send(bus, Topic.ingress, broken);
      const letter = await waitFor(async () => (await store.listDeadLetters({ limit: 5 })).items[0]);
      expect(letter.deadLetter.reason.code).toBe('ENVELOPE_INVALID');
      expect(letter.deadLetter.reason.message).toContain('timestamp');
      expect(letter.deadLetter.service).toBe('intake');
      await expect(replayDeadLetter(store, (topic, data, msgId) => bus.publish(topic, data, { msgId }), letter.id)).rejects.toThrow(
        /still not a valid envelope/,
      );
      const fixed = JSON.stringify({ ...broken, timestamp: new Date().toISOString() });
      const result = await replayDeadLetter(store, (topic, data, msgId) => bus.publish(topic, data, { msgId }), letter.id, { raw: fixed });
      expect(result.topic).toBe(Topic.ingress);
      await waitFor(() => seen.includes(broken.id));
      const after = await store.getDeadLetter(letter.id);
      expect(after?.replayCount).toBe(1);
      expect(after?.replayedAt).toBeTruthy();
      expect((await store.listDeadLetters({ limit: 5, includeReplayed: true })).items.map((item) => item.id)).toContain(letter.id);
    } finally {
      await host.stop();
      await store.close();
    }
  });
});

describe('retention schedule', () => {
  it('the finalizer prunes on its schedule without being asked', async () => {
    const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await store.init();
    const bus = createMemoryBus();
    const host = await startTestHost({
      services: [finalizer],
      bus,
      env: { RETENTION_INTERVAL_MS: '1000', EVENTS_RETENTION_DAYS: '7' },
      architecture: testArchitecture([{ name: 'finalizer', consumes: [Topic.finalizer, Topic.deadletter] }]),
      extra: { store },
    });
    try {
      const old = chat('old', { timestamp: new Date(Date.now() - 8 * 86_400_000).toISOString() });
      await store.recordIngress([{ id: old.id, correlationId: old.correlationId, type: old.type, receivedAt: old.timestamp }]);
      await waitFor(async () => (await store.getEvent(old.id)) === undefined, {
        timeoutMs: 10_000,
        intervalMs: 200,
        message: 'the scheduled prune',
      });
    } finally {
      await host.stop();
      await store.close();
    }
  });
});
