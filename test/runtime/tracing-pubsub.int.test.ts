/**
 * Traces on Google Pub/Sub (the emulator): every service of a `!ping` in a host of its own, as on Cloud
 * Run, each with its own Pub/Sub client and its own tracer, all exporting to one fake OTLP collector. What
 * ties one host's spans to another's is only the `traceparent` attribute of the Pub/Sub messages, so the
 * message must still be one trace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPubSubBus } from '../../src/bus/pubsub.js';
import type { MessageBus } from '../../src/bus/index.js';
import { normalizeTraceId, Topic } from '../../src/core/index.js';
import type { Host } from '../../src/runtime/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startFakeOtlpCollector, type FakeOtlpCollector } from '../fakes/otlp.js';
import { startTestHost } from '../support/harness.js';
import { chatEnvelope, pingPipeline, pipelineArchitecture, waitForFinalRecord } from '../support/pipeline.js';
import { pubsubEmulatorAvailable, startPubSubEmulator, type PubSubEmulatorHandle } from '../support/pubsub-emulator.js';
import { PING_SERVICES, PING_STEPS, stepOutcomes, wholeTrace } from '../support/traces.js';
import { requireServer } from '../support/wait.js';

const SERVICES = pingPipeline();
const ARCHITECTURE = pipelineArchitecture(SERVICES);

let emulator: PubSubEmulatorHandle | undefined;
let collector: FakeOtlpCollector;
let store: Store;
const hosts = new Map<string, Host>();
const buses: MessageBus[] = [];

beforeAll(async () => {
  requireServer('Pub/Sub emulator', pubsubEmulatorAvailable(), 'install the Google Cloud CLI Pub/Sub emulator and java');
  emulator = await startPubSubEmulator();
  collector = await startFakeOtlpCollector();
  store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });
  await store.init();
  const prefix = `t${Math.random().toString(36).slice(2, 10)}-`;
  // Consumers first: Pub/Sub delivers only to subscriptions that exist when a message is published.
  for (const service of [...SERVICES.filter((candidate) => candidate.name !== 'chat-source'), SERVICES[0]!]) {
    const bus = await createPubSubBus({ projectId: 'bitbrat-trace', emulatorHost: emulator.host, prefix });
    buses.push(bus);
    hosts.set(
      service.name,
      await startTestHost({
        services: [service],
        bus,
        architecture: ARCHITECTURE,
        env: {
          INSTANCE_ID: `trace-${service.name}`,
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
          OTEL_SERVICE_NAME: service.name,
          OTEL_BSP_SCHEDULE_DELAY: '50',
        },
        extra: { store },
      }),
    );
  }
}, 180_000);

afterAll(async () => {
  for (const host of [...hosts.values()].reverse()) await host.stop();
  for (const bus of buses) await bus.close();
  await store?.close();
  await collector?.close();
  await emulator?.stop();
}, 60_000);

describe('tracing on Google Pub/Sub with a host per service', () => {
  it('makes one trace of a !ping across every service, the traceparent carried in the Pub/Sub attributes', async () => {
    const envelope = chatEnvelope('!ping');
    await hosts.get('chat-source')!.context('chat-source').publish(Topic.ingress, envelope);
    const record = await waitForFinalRecord(store, envelope.id, 60_000);
    expect(record.outcome).toBe('completed');
    expect(record.replyText).toBe('pong');

    const traceId = normalizeTraceId(envelope.traceId);
    const spans = await wholeTrace(collector, traceId, { services: PING_SERVICES, timeoutMs: 60_000 });

    // One root, the chat source's publish; every service's spans in the one tree, each from its own host.
    const roots = spans.filter((span) => span.parentSpanId === '');
    expect(roots.map((span) => [span.name, span.resource['service.name']])).toEqual([
      [`chat-source publish ${Topic.ingress}`, 'chat-source'],
    ]);
    const serviceSpans = spans.filter((span) => span.attributes['bitbrat.service'] !== undefined);
    for (const span of serviceSpans) expect(span.resource['service.name']).toBe(span.attributes['bitbrat.service']);
    expect(new Set(serviceSpans.map((span) => span.resource['service.name']))).toEqual(new Set(PING_SERVICES));
    expect(stepOutcomes(spans)).toEqual(PING_STEPS);

    // Each consumed message is a Pub/Sub consumer span whose parent is a span of another host.
    const byId = new Map(spans.map((span) => [span.spanId, span]));
    const consumed = spans.filter((span) => span.kind === 5);
    expect(consumed.length).toBeGreaterThanOrEqual(PING_SERVICES.length - 1);
    for (const span of consumed) {
      expect(span.attributes['messaging.system']).toBe('pubsub');
      const parent = byId.get(span.parentSpanId);
      expect(parent, span.name).toBeDefined();
      expect(parent!.resource['service.name']).not.toBe(span.resource['service.name']);
    }
    const auth = consumed.find((span) => span.resource['service.name'] === 'auth')!;
    expect(byId.get(auth.parentSpanId)).toBe(roots[0]);
  });
});
