/**
 * Traces on the in-memory bus: every service of a `!ping` in one process, exporting to a fake OTLP
 * collector over HTTP (protobuf and JSON). One chat message must be one trace: one root, every other
 * span's parent among the spans received, a span per routing-slip step with its outcome.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus, type MemoryBus } from '../../src/bus/index.js';
import { normalizeTraceId, Topic } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startFakeOtlpCollector, type FakeOtlpCollector } from '../fakes/otlp.js';
import { createLogSink, startTestHost } from '../support/harness.js';
import { chatEnvelope, pingPipeline, pipelineArchitecture, waitForFinalRecord } from '../support/pipeline.js';
import { PING_SERVICES, PING_STEPS, stepOutcomes, wholeTrace } from '../support/traces.js';
import { waitFor } from '../support/wait.js';

const SERVICES = pingPipeline();
const ARCHITECTURE = pipelineArchitecture(SERVICES);
const ping = () => chatEnvelope('!ping');

describe.each([
  { protocol: 'http/protobuf', encoding: 'protobuf' },
  { protocol: 'http/json', encoding: 'json' },
] as const)('tracing on the memory bus over OTLP $protocol', ({ protocol, encoding }) => {
  let collector: FakeOtlpCollector;
  let store: Store;
  let bus: MemoryBus;
  let host: Host;
  const logs = createLogSink();

  beforeAll(async () => {
    collector = await startFakeOtlpCollector();
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await store.init();
    bus = createMemoryBus();
    await bus.connect();
    host = await startTestHost({
      services: SERVICES,
      bus,
      architecture: ARCHITECTURE,
      env: {
        LOG_LEVEL: 'info',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        OTEL_SERVICE_NAME: 'bitbrat-all-in-one',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,team=stream%20ops',
        OTEL_BSP_SCHEDULE_DELAY: '50',
      },
      extra: { store, logDestination: logs.stream },
    });
  }, 60_000);
  afterAll(async () => {
    await host?.stop();
    await store?.close();
    await collector?.close();
  });

  it('makes one trace of a !ping through every service, rooted at the chat source', async () => {
    const envelope = ping();
    await host.context('chat-source').publish(Topic.ingress, envelope);
    const traceId = normalizeTraceId(envelope.traceId);
    const spans = await wholeTrace(collector, traceId);

    expect(spans.every((span) => span.encoding === encoding)).toBe(true);
    const roots = spans.filter((span) => span.parentSpanId === '');
    expect(roots.map((span) => span.name)).toEqual([`chat-source publish ${Topic.ingress}`]);
    expect(roots[0]!.kind).toBe(4);
    const services = new Set(spans.map((span) => span.attributes['bitbrat.service']));
    for (const service of PING_SERVICES) expect(services).toContain(service);

    // A span per step, with its service, attempt and outcome.
    expect(stepOutcomes(spans)).toEqual(PING_STEPS);
    const commands = spans.find((span) => span.attributes['bitbrat.step'] === 'commands')!;
    expect(commands.name).toBe('commands commands');
    expect(commands.kind).toBe(5);
    expect(commands.attributes).toMatchObject({
      'messaging.destination.name': 'internal.commands.v1',
      'messaging.message.id': envelope.id,
      'bitbrat.correlation_id': envelope.correlationId,
    });

    // The hops follow the bus: auth's span is the child of the publish, the finalizer's of egress.
    const byId = new Map(spans.map((span) => [span.spanId, span]));
    const auth = spans.find(
      (span) => span.attributes['bitbrat.service'] === 'auth' && span.attributes['messaging.destination.name'] === Topic.ingress,
    )!;
    expect(byId.get(auth.parentSpanId)).toBe(roots[0]);
    const final = spans.find((span) => span.attributes['bitbrat.service'] === 'finalizer')!;
    expect(byId.get(final.parentSpanId)?.attributes['bitbrat.service']).toBe('test-egress');

    // The store calls the services make for the message are child spans of their step.
    const storeSpans = spans.filter((span) => span.name.startsWith('store '));
    expect(storeSpans.length).toBeGreaterThan(0);
    for (const span of storeSpans) {
      expect(span.kind).toBe(3);
      expect(span.attributes['db.system.name']).toBe('pglite');
    }

    // The resource names the process and carries OTEL_RESOURCE_ATTRIBUTES.
    expect(roots[0]!.resource).toMatchObject({
      'service.name': 'bitbrat-all-in-one',
      'deployment.environment.name': 'test',
      team: 'stream ops',
      'service.instance.id': host.platform.INSTANCE_ID,
    });
  });

  it('puts the trace and span ids on every log line of a traced message', async () => {
    const envelope = ping();
    await host.context('chat-source').publish(Topic.ingress, envelope);
    const traceId = normalizeTraceId(envelope.traceId);
    const spans = await wholeTrace(collector, traceId);
    const lines = await waitFor(
      () => {
        const found = logs.records().filter((record) => record.envelopeId === envelope.id);
        return found.length > 0 ? found : undefined;
      },
      { message: 'a log line of the message' },
    );
    const spanIds = new Set(spans.map((span) => span.spanId));
    for (const line of lines) {
      expect(line.trace_id).toBe(traceId);
      expect(spanIds).toContain(line.span_id);
    }
    const delivering = lines.find((line) => line.msg === 'delivering the reply')!;
    expect(spans.find((span) => span.spanId === delivering.span_id)?.attributes['bitbrat.service']).toBe('test-egress');
  });

  it('marks a failed step span as an error with its code', async () => {
    const envelope = ping();
    // An envelope whose current step nobody serves: the router's publish is dead-lettered (UNKNOWN_STEP).
    envelope.routingSlip = [{ id: 'no-such-step', status: 'PENDING', attempt: 0, maxAttempts: 3, destination: 'internal.no-such-step.v1' }];
    await host.context('chat-source').publish('internal.commands.v1', envelope);
    const traceId = normalizeTraceId(envelope.traceId);
    const spans = await collector.waitFor((all) =>
      all.some((span) => span.traceId === traceId && span.attributes['bitbrat.outcome'] === 'dead-letter'),
    );
    const failed = spans.find((span) => span.traceId === traceId && span.attributes['bitbrat.outcome'] === 'dead-letter')!;
    expect(failed.status.code).toBe(2);
    expect(failed.attributes['bitbrat.error_code']).toBe(failed.attributes['error.type']);
    expect(String(failed.attributes['bitbrat.error_code'])).toMatch(/^[A-Z_]+$/);
  });
});

describe('tracing with a collector that never answers', () => {
  it('still takes a !ping to its final record, and stops without waiting for the export', async () => {
    // Accepts connections and never replies: every export hangs until its timeout.
    const sockets = new Set<import('node:net').Socket>();
    const silent = (await import('node:net')).createServer((socket) => {
      sockets.add(socket);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
    await store.init();
    const bus = createMemoryBus();
    await bus.connect();
    const host = await startTestHost({
      services: SERVICES,
      bus,
      architecture: ARCHITECTURE,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: '10' },
      extra: { store },
    });
    try {
      const envelope = ping();
      await host.context('chat-source').publish(Topic.ingress, envelope);
      const record = await waitForFinalRecord(store, envelope.id);
      expect(record.outcome).toBe('completed');
      expect(sockets.size).toBeGreaterThan(0);
    } finally {
      await host.stop();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
      await store.close();
    }
  }, 60_000);
});
