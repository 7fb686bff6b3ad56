import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, nanos } from '@nats-io/transport-node';
import { AckPolicy, DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { BusStatusEvent, MessageBus } from '../../src/bus/index.js';
import { createNatsBus, natsDurableName, natsStreamName } from '../../src/bus/nats.js';
import { startNatsServer, natsAvailable, type NatsServerHandle } from '../support/nats-server.js';
import { requireServer, waitFor } from '../support/wait.js';
import { describeBusContract } from './bus-contract.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const uniquePrefix = () => `n${Math.random().toString(36).slice(2, 10)}.`;

let server: NatsServerHandle | undefined;

beforeAll(async () => {
  requireServer('nats-server', await natsAvailable(), 'install nats-server or set NATS_SERVER_BIN');
  server = await startNatsServer();
});

afterAll(async () => {
  await server?.stop();
});

describeBusContract('nats', { create: async (prefix) => createNatsBus({ servers: server!.url, prefix }) });

describe('the nats bus on JetStream', () => {
  it('creates a file-backed stream for the prefix and one durable pull consumer per group and topic', async () => {
    const prefix = uniquePrefix();
    const bus = await createNatsBus({ servers: server!.url, prefix });
    const nc = await connect({ servers: server!.url });
    try {
      await bus.connect();
      await bus.subscribe('internal.shape.v1', 'shape-group', async (message) => message.ack(), { maxInFlight: 7, ackWaitMs: 1_500 });
      const jsm = await jetstreamManager(nc);
      const stream = await jsm.streams.info(natsStreamName(prefix));
      expect(stream.config.subjects).toEqual([`${prefix}internal.>`]);
      expect(stream.config.storage).toBe(StorageType.File);
      expect(stream.config.retention).toBe('limits');
      expect(stream.config.duplicate_window).toBe(120_000 * 1_000_000);
      expect(stream.config.max_age).toBe(24 * 3_600_000 * 1_000_000);
      expect(stream.config.max_bytes).toBe(-1);
      expect(stream.config.discard).toBe(DiscardPolicy.New);
      const consumer = await jsm.consumers.info(natsStreamName(prefix), natsDurableName('shape-group', 'internal.shape.v1'));
      expect(consumer.config.durable_name).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(consumer.config.filter_subject).toBe(`${prefix}internal.shape.v1`);
      expect(consumer.config.ack_policy).toBe(AckPolicy.Explicit);
      expect(consumer.config.ack_wait).toBe(1_500 * 1_000_000);
      expect(consumer.config.max_ack_pending).toBe(7);

      // A second subscriber with other settings updates the same durable instead of failing.
      await bus.subscribe('internal.shape.v1', 'shape-group', async (message) => message.ack(), { maxInFlight: 9, ackWaitMs: 2_000 });
      const updated = await jsm.consumers.info(natsStreamName(prefix), natsDurableName('shape-group', 'internal.shape.v1'));
      expect(updated.config.max_ack_pending).toBe(9);
      expect(updated.config.ack_wait).toBe(2_000 * 1_000_000);
    } finally {
      await bus.close();
      await nc.close();
    }
  });

  it('lets the server delete a per-instance group once nothing consumes it, and keeps it while its instance runs', async () => {
    const prefix = uniquePrefix();
    const nc = await connect({ servers: server!.url });
    const durable = natsDurableName('gateway-abc123', 'internal.egress.abc123.v1');
    const lingering = natsDurableName('gateway-shared', 'internal.egress.abc123.v1');
    const bus = await createNatsBus({ servers: server!.url, prefix });
    try {
      await bus.connect();
      await bus.subscribe('internal.egress.abc123.v1', 'gateway-abc123', async (message) => message.ack(), { expireAfterIdleMs: 1_500 });
      await bus.subscribe('internal.egress.abc123.v1', 'gateway-shared', async (message) => message.ack());
      const jsm = await jetstreamManager(nc);
      expect((await jsm.consumers.info(natsStreamName(prefix), durable)).config.inactive_threshold).toBe(1_500 * 1_000_000);
      // While the instance is consuming, the group stays however long it is quiet.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      expect((await jsm.consumers.info(natsStreamName(prefix), durable)).name).toBe(durable);
      await bus.close();
      await waitFor(
        () =>
          jsm.consumers.info(natsStreamName(prefix), durable).then(
            () => false,
            (error: Error) => /consumer not found/i.test(error.message),
          ),
        { timeoutMs: 15_000, intervalMs: 250, message: 'the idle per-instance consumer to be deleted' },
      );
      // A group without the option is durable as before.
      expect((await jsm.consumers.info(natsStreamName(prefix), lingering)).name).toBe(lingering);
    } finally {
      await bus.close().catch(() => undefined);
      await nc.close();
    }
  });

  it('keeps a message published before any subscriber and delivers it to the first group that subscribes', async () => {
    const bus = await createNatsBus({ servers: server!.url, prefix: uniquePrefix() });
    try {
      await bus.connect();
      await bus.publish('internal.early.v1', encoder.encode('early bird'));
      const got: string[] = [];
      await bus.subscribe('internal.early.v1', 'late-group', async (message) => {
        got.push(decoder.decode(message.data));
        await message.ack();
      });
      await waitFor(() => got.length === 1, { message: 'the early message' });
      expect(got).toEqual(['early bird']);
    } finally {
      await bus.close();
    }
  });

  it('shares one group across two connections (two processes of one service)', async () => {
    const prefix = uniquePrefix();
    const one = await createNatsBus({ servers: server!.url, prefix });
    const two = await createNatsBus({ servers: server!.url, prefix });
    try {
      await one.connect();
      await two.connect();
      const seen: Array<{ by: string; body: string }> = [];
      const handler = (by: string) => async (message: { data: Uint8Array; ack(): Promise<void> }) => {
        seen.push({ by, body: decoder.decode(message.data) });
        await new Promise((resolve) => setTimeout(resolve, 10));
        await message.ack();
      };
      await one.subscribe('internal.shared.v1', 'svc', handler('one'), { maxInFlight: 2 });
      await two.subscribe('internal.shared.v1', 'svc', handler('two'), { maxInFlight: 2 });
      for (let i = 0; i < 30; i += 1) await one.publish('internal.shared.v1', encoder.encode(`j${i}`));
      await waitFor(() => seen.length >= 30, { timeoutMs: 20_000, message: 'thirty jobs' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(new Set(seen.map((item) => item.body)).size).toBe(30);
      expect(seen).toHaveLength(30);
      expect(seen.some((item) => item.by === 'one')).toBe(true);
      expect(seen.some((item) => item.by === 'two')).toBe(true);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('delivers header keys lower-cased, whatever case the publisher used', async () => {
    const bus = await createNatsBus({ servers: server!.url, prefix: uniquePrefix() });
    try {
      await bus.connect();
      const got: Array<Record<string, string>> = [];
      await bus.subscribe('internal.case.v1', 'g', async (message) => {
        got.push(message.headers);
        await message.ack();
      });
      await bus.publish('internal.case.v1', encoder.encode('x'), { headers: { 'X-Mixed-Case': 'v' }, msgId: 'case-1' });
      await waitFor(() => got.length === 1, { message: 'the message' });
      expect(got[0]).toEqual({ 'x-mixed-case': 'v' });
    } finally {
      await bus.close();
    }
  });

  it('rejects a publish no stream accepts with a retryable PUBLISH_FAILED', async () => {
    const bus = await createNatsBus({ servers: server!.url, prefix: uniquePrefix() });
    try {
      await bus.connect();
      await expect(bus.publish('external.nowhere.v1', encoder.encode('lost'))).rejects.toMatchObject({
        name: 'BitBratError',
        code: 'PUBLISH_FAILED',
        retryable: true,
      });
    } finally {
      await bus.close();
    }
  });

  it('brings an existing stream to the configured age and size limits, set to refuse rather than discard when full', async () => {
    const prefix = uniquePrefix();
    const name = natsStreamName(prefix);
    const nc = await connect({ servers: server!.url });
    // As an earlier version left it: no size limit, and discard old.
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name,
      subjects: [`${prefix}internal.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(86_400_000),
    });
    const bus = await createNatsBus({ servers: server!.url, prefix, maxAgeMs: 3_600_000, maxBytes: 5_000_000 });
    try {
      await bus.connect();
      const stream = await jsm.streams.info(name);
      expect(stream.config.max_age).toBe(nanos(3_600_000));
      expect(stream.config.max_bytes).toBe(5_000_000);
      expect(stream.config.discard).toBe(DiscardPolicy.New);
    } finally {
      await bus.close();
      await nc.close();
    }
  });

  it('tells how much its stream holds and the size limit', async () => {
    const limited = await createNatsBus({ servers: server!.url, prefix: uniquePrefix(), maxBytes: 1_000_000 });
    const unlimited = await createNatsBus({ servers: server!.url, prefix: uniquePrefix() });
    try {
      await expect(limited.storage!()).rejects.toMatchObject({ code: 'BUS_UNAVAILABLE' });
      await limited.connect();
      await unlimited.connect();
      for (let index = 0; index < 3; index += 1) await limited.publish('internal.usage.v1', encoder.encode('x'.repeat(1_000)));
      const usage = await limited.storage!();
      expect(usage).toMatchObject({ messages: 3, maxBytes: 1_000_000 });
      expect(usage.name).toMatch(/^BITBRAT_N/);
      expect(usage.bytes).toBeGreaterThan(3_000);
      expect(await unlimited.storage!()).toEqual({ name: expect.any(String), messages: 0, bytes: 0 });
    } finally {
      await limited.close();
      await unlimited.close();
    }
  });

  it('refuses publishes to a full stream with a retryable PUBLISH_FAILED and keeps every message it accepted', async () => {
    const prefix = uniquePrefix();
    const bus = await createNatsBus({ servers: server!.url, prefix, maxBytes: 20_000 });
    try {
      await bus.connect();
      const accepted: string[] = [];
      let refusal: unknown;
      for (let index = 0; index < 100 && !refusal; index += 1) {
        const text = `${index}:${'x'.repeat(1_000)}`;
        try {
          await bus.publish('internal.full.v1', encoder.encode(text), { msgId: `full-${index}` });
          accepted.push(text);
        } catch (error) {
          refusal = error;
        }
      }
      expect(refusal).toMatchObject({ name: 'BitBratError', code: 'PUBLISH_FAILED', retryable: true });
      expect((refusal as Error).message).toMatch(/rejected by JetStream: .*maximum bytes/i);
      expect(accepted.length).toBeGreaterThan(10);
      expect(accepted.length).toBeLessThan(20);
      // Nothing was discarded to make room: a consumer gets every accepted message, first one included.
      const received: string[] = [];
      await bus.subscribe('internal.full.v1', 'full-reader', async (message) => {
        received.push(decoder.decode(message.data));
        await message.ack();
      });
      await waitFor(() => received.length === accepted.length, { timeoutMs: 10_000, message: `${accepted.length} messages` });
      expect(received).toEqual(accepted);
    } finally {
      await bus.close();
    }
  });

  it('recreates a durable consumer deleted on the server and keeps delivering', async () => {
    const prefix = uniquePrefix();
    const bus = await createNatsBus({ servers: server!.url, prefix });
    const nc = await connect({ servers: server!.url });
    try {
      await bus.connect();
      const got: string[] = [];
      await bus.subscribe('internal.fragile.v1', 'g', async (message) => {
        got.push(decoder.decode(message.data));
        await message.ack();
      });
      await bus.publish('internal.fragile.v1', encoder.encode('one'));
      await waitFor(() => got.length === 1, { message: 'the first message' });
      const jsm = await jetstreamManager(nc);
      // nats-server 2.9 can fail a delete that races the consumer's own state write; the test retries it.
      await waitFor(() => jsm.consumers.delete(natsStreamName(prefix), natsDurableName('g', 'internal.fragile.v1')), {
        timeoutMs: 5_000,
        intervalMs: 100,
        message: 'the consumer to be deleted',
      });
      await bus.publish('internal.fragile.v1', encoder.encode('two'));
      await waitFor(() => got.includes('two'), { timeoutMs: 20_000, message: 'the message after the consumer was deleted' });
      const info = await jsm.consumers.info(natsStreamName(prefix), natsDurableName('g', 'internal.fragile.v1'));
      expect(info.config.filter_subject).toBe(`${prefix}internal.fragile.v1`);
    } finally {
      await bus.close();
      await nc.close();
    }
  });

  it('recreates the stream when it disappears; publishing and consuming resume', async () => {
    const prefix = uniquePrefix();
    const bus = await createNatsBus({ servers: server!.url, prefix });
    const nc = await connect({ servers: server!.url });
    try {
      await bus.connect();
      const got: string[] = [];
      await bus.subscribe('internal.gone.v1', 'g', async (message) => {
        got.push(decoder.decode(message.data));
        await message.ack();
      });
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(natsStreamName(prefix));
      await waitFor(
        async () => {
          await bus.publish('internal.gone.v1', encoder.encode('back'), { msgId: 'back-1' });
          return true;
        },
        { timeoutMs: 15_000, intervalMs: 100, message: 'a publish to succeed after the stream was deleted' },
      );
      await waitFor(() => got.includes('back'), { timeoutMs: 30_000, message: 'the message on the recreated stream' });
      expect((await jsm.streams.info(natsStreamName(prefix))).config.subjects).toEqual([`${prefix}internal.>`]);
    } finally {
      await bus.close();
      await nc.close();
    }
  });

  it('fails to connect with a retryable BUS_UNAVAILABLE when no server listens', async () => {
    const bus = await createNatsBus({ servers: 'nats://127.0.0.1:1', prefix: uniquePrefix() });
    await expect(bus.connect()).rejects.toMatchObject({ name: 'BitBratError', code: 'BUS_UNAVAILABLE', retryable: true });
    await bus.close();
  });
});

describe('the nats bus across a server restart', () => {
  let own: NatsServerHandle | undefined;
  let bus: MessageBus | undefined;

  afterAll(async () => {
    await bus?.close();
    await own?.stop();
  });

  it('reports the disconnect and the reconnect, and messages flow again after the server comes back', async () => {
    own = await startNatsServer();
    const prefix = uniquePrefix();
    bus = await createNatsBus({ servers: own.url, prefix });
    const events: BusStatusEvent[] = [];
    bus.onStatus((event) => events.push(event));
    await bus.connect();
    const got: Array<{ body: string; deliveryCount: number }> = [];
    let holdFirst = true;
    await bus.subscribe(
      'internal.restart.v1',
      'survivor',
      async (message) => {
        const body = decoder.decode(message.data);
        got.push({ body, deliveryCount: message.deliveryCount });
        // The in-flight message is left unsettled across the restart: it must come back.
        if (body === 'in-flight' && holdFirst) return;
        await message.ack();
      },
      { ackWaitMs: 1_000 },
    );
    await bus.publish('internal.restart.v1', encoder.encode('before'));
    await waitFor(() => got.some((item) => item.body === 'before'), { message: 'the message before the restart' });
    await bus.publish('internal.restart.v1', encoder.encode('in-flight'));
    await waitFor(() => got.some((item) => item.body === 'in-flight'), { message: 'the in-flight message' });
    holdFirst = false;

    const sawDown = waitFor(() => !bus!.isConnected(), { timeoutMs: 10_000, intervalMs: 1, message: 'isConnected() to go false' });
    await own.restart();
    await sawDown;
    await waitFor(() => bus!.isConnected(), { timeoutMs: 15_000, message: 'isConnected() to come back' });
    const statuses = events.map((event) => event.status);
    expect(statuses).toContain('disconnected');
    expect(statuses.lastIndexOf('connected')).toBeGreaterThan(statuses.indexOf('disconnected'));

    await waitFor(
      async () => {
        await bus!.publish('internal.restart.v1', encoder.encode('after'), { msgId: 'after-restart' });
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 200, message: 'a publish after the restart to succeed' },
    );
    await waitFor(() => got.some((item) => item.body === 'after'), { timeoutMs: 20_000, message: 'the message after the restart' });
    await waitFor(() => got.filter((item) => item.body === 'in-flight').length >= 2, {
      timeoutMs: 20_000,
      message: 'the in-flight message to be redelivered',
    });
    expect(got.filter((item) => item.body === 'in-flight').at(-1)!.deliveryCount).toBeGreaterThanOrEqual(2);
    expect(got.filter((item) => item.body === 'before')).toHaveLength(1);

    // Now a crash: while the server is gone, publishing fails fast and retryably; nothing is lost after.
    await own.kill();
    await waitFor(() => !bus!.isConnected(), { timeoutMs: 10_000, message: 'isConnected() to go false after the kill' });
    await expect(bus.publish('internal.restart.v1', encoder.encode('while-down'))).rejects.toMatchObject({
      code: 'BUS_UNAVAILABLE',
      retryable: true,
    });
    await own.restart();
    await waitFor(() => bus!.isConnected(), { timeoutMs: 15_000, message: 'isConnected() after the crash' });
    await waitFor(
      async () => {
        await bus!.publish('internal.restart.v1', encoder.encode('after-crash'), { msgId: 'after-crash' });
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 200, message: 'a publish after the crash to succeed' },
    );
    await waitFor(() => got.some((item) => item.body === 'after-crash'), { timeoutMs: 20_000, message: 'the message after the crash' });
    // The SIGKILL may lose the server's record of recent acks (it writes consumer state to disk lazily), so
    // 'after' may come again: at-least-once, which consumers tolerate (R8). What must not happen is a second
    // copy in the stream: the publish retries carried one msgId each, and 'while-down' was never sent.
    expect(got.filter((item) => item.body === 'after').length).toBeGreaterThanOrEqual(1);
    const nc = await connect({ servers: own.url });
    try {
      const stream = await (await jetstreamManager(nc)).streams.info(natsStreamName(prefix));
      expect(stream.state.messages).toBe(4); // before, in-flight, after, after-crash
    } finally {
      await nc.close();
    }
  });
});
