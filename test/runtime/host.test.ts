import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createMemoryBus, type MemoryBus, type SubscribeOptions } from '../../src/bus/index.js';
import { BitBratError, createEnvelope, createStep, Topic } from '../../src/core/index.js';
import { env, loadPlatformConfig } from '../../src/runtime/config.js';
import { continueWith, createHost, defineService, handled, type Host } from '../../src/runtime/index.js';
import { busOptionsFromConfig, PER_INSTANCE_GROUP_EXPIRY_MS } from '../../src/runtime/host.js';
import { collect, createLogSink, startTestHost, testArchitecture } from '../support/harness.js';
import { waitFor } from '../support/wait.js';

const hosts: Host[] = [];
afterEach(async () => {
  for (const host of hosts.splice(0)) await host.stop().catch(() => undefined);
});

function chat(slip: string[]) {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'test', channel: 'chan', channelId: '1' },
    user: { id: 'u1', name: 'viewer', displayName: 'Viewer', profileImageUrl: '', role: 'viewer' },
    payload: { text: 'hello' },
    routingSlip: slip.map((id) => createStep(id)),
  });
}

const publishEnvelope = (bus: MemoryBus, topic: string, envelope: object) =>
  bus.publish(topic, new TextEncoder().encode(JSON.stringify(envelope)));

describe('platform config for the JetStream stream', () => {
  it('hands NATS_STREAM_MAX_AGE_MS and NATS_STREAM_MAX_BYTES to the bus: 24 h and no size limit by default', () => {
    expect(busOptionsFromConfig(loadPlatformConfig({}), 'test').nats).toEqual({ maxAgeMs: 86_400_000, maxBytes: 0 });
    const config = loadPlatformConfig({
      MESSAGE_BUS_DRIVER: 'nats',
      NATS_STREAM_MAX_AGE_MS: '3600000',
      NATS_STREAM_MAX_BYTES: '10737418240',
    });
    expect(busOptionsFromConfig(config, 'test').nats).toEqual({ maxAgeMs: 3_600_000, maxBytes: 10_737_418_240 });
  });

  it('refuses an age under a minute and a negative or non-numeric size, listing both', () => {
    const error = (() => {
      try {
        loadPlatformConfig({ NATS_STREAM_MAX_AGE_MS: '500', NATS_STREAM_MAX_BYTES: '-1' });
      } catch (caught) {
        return caught as BitBratError;
      }
      return undefined;
    })();
    expect(error).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(error!.message).toContain('NATS_STREAM_MAX_AGE_MS');
    expect(error!.message).toContain('NATS_STREAM_MAX_BYTES');
    expect(() => loadPlatformConfig({ NATS_STREAM_MAX_BYTES: '10GB' })).toThrow(/NATS_STREAM_MAX_BYTES: must be a number/);
  });
});

describe('service host', () => {
  it('fails at start-up with one error listing every config problem', async () => {
    const svc = defineService({
      name: 'echo',
      configSchema: z.object({ ECHO_LIMIT: env.int(5, { min: 1 }), ECHO_NAME: env.requiredString() }),
      setup: () => ({ consumers: {} }),
    });
    const error = await createHost({
      services: [svc],
      bus: createMemoryBus(),
      env: { PORT: 'eighty', MESSAGE_BUS_DRIVER: 'kafka', ECHO_LIMIT: '0', LOG_LEVEL: 'silent' },
      architecture: testArchitecture([{ name: 'echo', consumes: [] }]),
    }).then(
      () => undefined,
      (caught: Error) => caught,
    );
    expect(error).toBeInstanceOf(Error);
    const message = String((error as Error).message);
    for (const fragment of ['PORT', 'MESSAGE_BUS_DRIVER', 'ECHO_LIMIT', 'ECHO_NAME']) expect(message).toContain(fragment);
  });

  it('refuses a service whose consumers disagree with the manifest', async () => {
    const svc = defineService({
      name: 'echo',
      setup: () => ({ consumers: { 'internal.echo.v1': { mode: 'step', handle: async () => continueWith() } } }),
    });
    const host = await createHost({
      services: [svc],
      bus: createMemoryBus(),
      env: { LOG_LEVEL: 'silent' },
      listen: false,
      architecture: testArchitecture([{ name: 'echo', consumes: ['internal.other.v1'] }]),
    });
    hosts.push(host);
    await expect(host.start()).rejects.toThrow(/consumes \[internal\.echo\.v1\] but architecture\.yaml says \[internal\.other\.v1\]/);
  });

  it('is not ready until the bus is connected and consumers run, and not ready while the bus is down', async () => {
    const bus = createMemoryBus();
    const svc = defineService({
      name: 'echo',
      setup: () => ({ consumers: { 'internal.echo.v1': { mode: 'step', handle: async () => continueWith() } } }),
    });
    const host = await createHost({
      services: [svc],
      bus,
      env: { LOG_LEVEL: 'silent' },
      listen: false,
      architecture: testArchitecture([{ name: 'echo', consumes: ['internal.echo.v1'] }]),
    });
    hosts.push(host);
    await host.app.ready();
    expect((await host.app.inject({ url: '/readyz' })).statusCode).toBe(503);
    await host.start();
    const ready = await host.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().components['echo.consumers'].ready).toBe(true);
    bus.setConnected(false);
    const down = await host.app.inject({ url: '/readyz' });
    expect(down.statusCode).toBe(503);
    expect(down.json().components.bus.ready).toBe(false);
    bus.setConnected(true);
    expect((await host.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    expect((await host.app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok', services: ['echo'] });
    expect((await host.app.inject({ url: '/livez' })).statusCode).toBe(200);
  });

  it('holds a message while a dependency is down and leaves no listener behind on the shutdown signal once it passes', async () => {
    const bus = createMemoryBus();
    let signal: AbortSignal | undefined;
    let calls = 0;
    const svc = defineService({
      name: 'flaky',
      setup: () => ({
        consumers: {
          'internal.flaky.v1': {
            mode: 'step',
            async handle(_envelope, ctx) {
              // No deadline on this envelope: the handler's signal is the runtime's shutdown signal.
              signal = ctx.signal;
              calls += 1;
              if (calls <= 2) throw new BitBratError('STORE_UNAVAILABLE', 'store down for the test', { retryable: true });
              return continueWith();
            },
          },
        },
      }),
    });
    const host = await startTestHost({ services: [svc], bus });
    hosts.push(host);
    const observer = await collect(bus, [Topic.finalizer]);
    const envelope = chat(['flaky']);
    await publishEnvelope(bus, 'internal.flaky.v1', envelope);
    const final = await observer.waitFor(Topic.finalizer, (value) => value.id === envelope.id);
    expect(final.outcome).toBe('completed');
    expect(calls).toBe(3);
    expect(getEventListeners(signal!, 'abort')).toHaveLength(0);
  });

  it('subscribes a per-instance topic with a group of its own that the broker may expire, and shared topics without', async () => {
    const bus = createMemoryBus();
    const seen: Array<{ topic: string; group: string; options: SubscribeOptions | undefined }> = [];
    const subscribe = bus.subscribe.bind(bus);
    bus.subscribe = (topic, group, handler, options) => {
      seen.push({ topic, group, options });
      return subscribe(topic, group, handler, options);
    };
    const svc = defineService({
      name: 'gateway',
      setup: () => ({
        consumers: {
          'internal.egress.{instanceId}.v1': { mode: 'sink', handle: async () => continueWith() },
          'internal.shared.v1': { mode: 'sink', handle: async () => continueWith() },
        },
      }),
    });
    const host = await startTestHost({ services: [svc], bus, env: { INSTANCE_ID: 'abc123' } });
    hosts.push(host);
    const own = seen.find((entry) => entry.topic === 'internal.egress.abc123.v1');
    const shared = seen.find((entry) => entry.topic === 'internal.shared.v1');
    expect(own).toMatchObject({ group: 'gateway-abc123', options: { expireAfterIdleMs: PER_INSTANCE_GROUP_EXPIRY_MS } });
    expect(shared?.group).toBe('gateway');
    expect(shared?.options?.expireAfterIdleMs).toBeUndefined();
  });

  it('hands each envelope on a topic two services of the process consume to the one that names its platform', async () => {
    const bus = createMemoryBus();
    const seen: Record<string, string[]> = { twitchy: [], console: [] };
    const sink = (name: string, platforms: string[]) =>
      defineService({
        name,
        setup: () => ({
          consumers: {
            'internal.egress.{instanceId}.v1': {
              mode: 'sink',
              platforms,
              async handle(envelope) {
                seen[name]!.push(envelope.source.platform);
                return continueWith();
              },
            },
          },
        }),
      });
    const host = await startTestHost({
      services: [sink('twitchy', ['twitch']), sink('console', ['api'])],
      bus,
      env: { INSTANCE_ID: 'i1' },
    });
    hosts.push(host);
    for (const platform of ['twitch', 'api', 'discord']) {
      const envelope = chat([]);
      envelope.source.platform = platform;
      await publishEnvelope(bus, 'internal.egress.i1.v1', envelope);
    }
    // A platform nobody names still reaches both.
    await waitFor(() => seen.twitchy!.includes('discord') && seen.console!.includes('discord'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seen.twitchy!.sort()).toEqual(['discord', 'twitch']);
    expect(seen.console!.sort()).toEqual(['api', 'discord']);
  });

  it('exports Prometheus metrics per service and topic', async () => {
    const bus = createMemoryBus();
    const svc = defineService({
      name: 'echo',
      setup: () => ({ consumers: { 'internal.echo.v1': { mode: 'step', handle: async (envelope) => handled(envelope) } } }),
    });
    const host = await startTestHost({ services: [svc], bus });
    hosts.push(host);
    const observer = await collect(bus, [Topic.finalizer, Topic.deadletter]);
    await publishEnvelope(bus, 'internal.echo.v1', chat(['echo']));
    await bus.publish('internal.echo.v1', new TextEncoder().encode('not json'));
    await observer.waitFor(Topic.finalizer);
    await observer.waitFor(Topic.deadletter);
    const text = (await host.app.inject({ url: '/metrics' })).body;
    expect(text).toMatch(/bitbrat_messages_consumed_total\{[^}]*service="echo"[^}]*topic="internal\.echo\.v1"[^}]*\} 2/);
    expect(text).toMatch(/bitbrat_messages_deadlettered_total\{[^}]*service="echo"[^}]*code="DECODE_FAILED"[^}]*\} 1/);
    expect(text).toMatch(/bitbrat_messages_published_total\{[^}]*topic="internal\.finalizer\.v1"[^}]*\} 1/);
    expect(text).toMatch(/bitbrat_handler_duration_seconds_bucket\{[^}]*service="echo"/);
  });

  it('shows how much the bus server keeps: a bus-storage component, gauges, and a warning from 80 % of the limit', async () => {
    const usage = { name: 'BITBRAT', messages: 12_345, bytes: 900 * 1024 * 1024, maxBytes: 1024 * 1024 * 1024 };
    const bus = Object.assign(createMemoryBus(), { storage: async () => ({ ...usage }) });
    const sink = createLogSink();
    const svc = defineService({ name: 'echo', setup: () => ({ consumers: {} }) });
    const host = await createHost({
      services: [svc],
      bus,
      env: { LOG_LEVEL: 'info' },
      listen: false,
      logDestination: sink.stream,
      architecture: testArchitecture([{ name: 'echo', consumes: [] }]),
    });
    hosts.push(host);
    await host.start();
    const component = await waitFor(() => host.health.snapshot()['bus-storage']);
    expect(component).toMatchObject({ ready: true, detail: 'BITBRAT: 12345 messages, 900.0 MB of 1.0 GB (87 %)' });
    const text = await host.metrics.registry.metrics();
    expect(text).toMatch(/^bitbrat_bus_stored_bytes 943718400$/m);
    expect(text).toMatch(/^bitbrat_bus_max_bytes 1073741824$/m);
    const warning = await waitFor(() => sink.records().find((record) => String(record.msg).includes('bus storage is 87 % full')));
    expect(warning.level).toBe('warn');
    expect(String(warning.msg)).toContain('NATS_STREAM_MAX_BYTES');
  });

  it('has no bus-storage component for a bus that cannot tell (memory)', async () => {
    const host = await startTestHost({
      services: [defineService({ name: 'echo', setup: () => ({ consumers: {} }) })],
      bus: createMemoryBus(),
    });
    hosts.push(host);
    expect(host.health.snapshot()['bus-storage']).toBeUndefined();
  });

  it('logs carry service, correlationId and traceId, and secret values are redacted', async () => {
    const bus = createMemoryBus();
    const sink = createLogSink();
    const secret = 'sk-verysecretvalue-123456';
    const svc = defineService({
      name: 'echo',
      setup: (ctx) => ({
        consumers: {
          'internal.echo.v1': {
            mode: 'step',
            handle: async (envelope, handlerCtx) => {
              handlerCtx.logger.info({ token: secret, note: `leaked ${secret}` }, 'handling');
              return handled(envelope);
            },
          },
        },
        start: async () => ctx.registerSecret(secret),
      }),
    });
    const host = await createHost({
      services: [svc, defineService({ name: 'other', setup: () => ({ consumers: {} }) })],
      bus,
      env: { LOG_LEVEL: 'info' },
      listen: false,
      logDestination: sink.stream,
      architecture: testArchitecture([
        { name: 'echo', consumes: ['internal.echo.v1'] },
        { name: 'other', consumes: [] },
      ]),
    });
    hosts.push(host);
    await host.start();
    const envelope = chat(['echo']);
    await publishEnvelope(bus, 'internal.echo.v1', envelope);
    const line = await waitFor(() => sink.records().find((record) => record.msg === 'handling'));
    expect(line.service).toBe('echo');
    expect(line.correlationId).toBe(envelope.correlationId);
    expect(line.traceId).toBe(envelope.traceId);
    expect(sink.lines.join('\n')).not.toContain(secret);
  });

  it('shuts down gracefully: stops consuming, finishes in-flight work, stops services in reverse order', async () => {
    const bus = createMemoryBus();
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started = false;
    const slow = defineService({
      name: 'slow',
      setup: () => ({
        consumers: {
          'internal.slow.v1': {
            mode: 'step',
            handle: async (envelope) => {
              started = true;
              await gate;
              order.push('handler-done');
              return handled(envelope);
            },
          },
        },
        stop: async () => void order.push('slow-stopped'),
      }),
    });
    const first = defineService({ name: 'first', setup: () => ({ consumers: {}, stop: async () => void order.push('first-stopped') }) });
    const host = await startTestHost({ services: [first, slow], bus });
    const observer = await collect(bus, [Topic.finalizer]);
    await publishEnvelope(bus, 'internal.slow.v1', chat(['slow']));
    await waitFor(() => started);
    const stopping = host.stop();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(order).toEqual([]);
    release();
    await stopping;
    expect(order).toEqual(['handler-done', 'slow-stopped', 'first-stopped']);
    expect(observer.envelopes(Topic.finalizer)).toHaveLength(1);
  });

  it('ends a shutdown that a service never finishes once SHUTDOWN_TIMEOUT_MS has passed, naming what did not stop', async () => {
    const sink = createLogSink();
    const stuck = defineService({ name: 'stuck', setup: () => ({ consumers: {}, stop: () => new Promise<void>(() => undefined) }) });
    const after: string[] = [];
    const first = defineService({ name: 'first', setup: () => ({ consumers: {}, stop: async () => void after.push('first-stopped') }) });
    const host = await startTestHost({
      services: [first, stuck],
      bus: createMemoryBus(),
      env: { LOG_LEVEL: 'warn', SHUTDOWN_TIMEOUT_MS: '200' },
      extra: { logDestination: sink.stream },
    });
    // Resolves at all only because the shutdown is bounded; the stuck stop never settles.
    await host.stop();
    expect(after).toEqual(['first-stopped']);
    expect(sink.records().map((record) => record.msg)).toEqual(
      expect.arrayContaining([expect.stringMatching(/shutdown timeout/), 'shutdown: stopping stuck did not finish in time']),
    );
  });

  it("runs each service's setup once, then its start and stop once each, and hands out what setup returned", async () => {
    const calls: string[] = [];
    const svc = defineService({
      name: 'counted',
      setup: () => {
        calls.push('setup');
        return {
          consumers: { 'internal.counted.v1': { mode: 'step', handle: async () => continueWith() } },
          start: async () => void calls.push('start'),
          stop: async () => void calls.push('stop'),
        };
      },
    });
    const host = await startTestHost({ services: [svc], bus: createMemoryBus() });
    expect(calls).toEqual(['setup', 'start']);
    expect(Object.keys(host.instance('counted').consumers)).toEqual(['internal.counted.v1']);
    expect(() => host.instance('missing')).toThrow(/not hosted here/);
    await host.stop();
    expect(calls).toEqual(['setup', 'start', 'stop']);
  });
});
