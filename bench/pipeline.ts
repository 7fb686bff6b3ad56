/**
 * Foundation benchmark: a 6-step slip of no-op services through the real runtime, against a raw-bus
 * relay through the same number of hops with the driver's bare publish/consume (JSON serialization
 * included, no runtime). Both publish 7 times per event (entry + 6 hops / 6 steps + finalization).
 */
import type { MessageBus } from '../src/bus/index.js';
import { createEnvelope, createStep, Topic, type Envelope } from '../src/core/index.js';
import { createHost, continueWith, defineService, type ServiceDefinition } from '../src/runtime/index.js';
import { derivedArchitecture } from '../test/support/harness.js';
import { drive, percentile, round } from './stats.js';

export const HOPS = 6;
const RAW_SLIP = Array.from({ length: HOPS }, (_, i) => `bench-s${i + 1}`);

export interface PipelineScenario {
  driver: string;
  makeBus: (prefix: string) => Promise<MessageBus>;
  fastEvents: number;
  rateEvents: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function benchEnvelope(index: number, steps: string[]): Envelope {
  return createEnvelope({
    type: 'external.chat.message.v1',
    source: { platform: 'bench', channel: 'bench', channelId: '1' },
    user: { id: `u${index % 100}`, name: `viewer${index % 100}`, displayName: 'Viewer', profileImageUrl: '', role: 'viewer' },
    payload: { text: `message number ${index} with a little text in it` },
    routingSlip: steps.map((id) => createStep(id)),
    extra: { message: { id: `m${index}`, text: `message number ${index} with a little text in it` } },
  });
}

/** The bare relay: hop i consumes raw.i, parses, re-serializes and publishes raw.i+1; the last hop records. */
export async function runRawBus(bus: MessageBus, events: number, offeredPerSec: number) {
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  for (let hop = 0; hop < HOPS; hop += 1) {
    await bus.subscribe(`internal.rawbench${hop}.v1`, `raw${hop}`, async (message) => {
      const envelope = JSON.parse(decoder.decode(message.data)) as Envelope;
      await bus.publish(`internal.rawbench${hop + 1}.v1`, encoder.encode(JSON.stringify(envelope)), { msgId: `${envelope.id}:${hop}` });
      await message.ack();
    });
  }
  await bus.subscribe(`internal.rawbench${HOPS}.v1`, 'rawdone', async (message) => {
    const envelope = JSON.parse(decoder.decode(message.data)) as Envelope;
    const started = sentAt.get(envelope.id);
    if (started !== undefined) latencies.push(performance.now() - started);
    await message.ack();
  });
  const { elapsedMs } = await drive({
    events,
    offeredPerSec,
    completed: () => latencies.length,
    send: async (index) => {
      // The same payload as the pipeline carries: the envelope with its six-step slip.
      const envelope = benchEnvelope(index, RAW_SLIP);
      sentAt.set(envelope.id, performance.now());
      await bus.publish('internal.rawbench0.v1', encoder.encode(JSON.stringify(envelope)), { msgId: envelope.id });
    },
  });
  return summarize(latencies, elapsedMs);
}

/** The same load through six no-op step services and a finalization sink, all on the real runtime. */
export async function runPipeline(bus: MessageBus, events: number, offeredPerSec: number) {
  const steps = Array.from({ length: HOPS }, (_, i) => `bench-s${i + 1}`);
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const services: ServiceDefinition[] = steps.map((name) =>
    defineService({
      name,
      setup: () => ({ consumers: { [`internal.${name}.v1`]: { mode: 'step', handle: async () => continueWith() } } }),
    }),
  );
  services.push(
    defineService({
      name: 'bench-final',
      setup: () => ({
        consumers: {
          [Topic.finalizer]: {
            mode: 'sink',
            handle: async (envelope) => {
              const started = sentAt.get(envelope.id);
              if (started !== undefined) latencies.push(performance.now() - started);
              return continueWith();
            },
          },
        },
      }),
    }),
  );
  const { services: hosted, architecture } = derivedArchitecture(services);
  const host = await createHost({
    services: hosted,
    bus,
    env: { LOG_LEVEL: 'silent', PORT: '0' },
    architecture,
    listen: false,
    defaultMetrics: false,
  });
  await host.start();
  try {
    const { elapsedMs } = await drive({
      events,
      offeredPerSec,
      completed: () => latencies.length,
      send: async (index) => {
        const envelope = benchEnvelope(index, steps);
        sentAt.set(envelope.id, performance.now());
        await bus.publish(`internal.${steps[0]}.v1`, encoder.encode(JSON.stringify(envelope)), { msgId: envelope.id });
      },
    });
    return summarize(latencies, elapsedMs);
  } finally {
    await host.stop();
  }
}

function summarize(latencies: number[], elapsedMs: number) {
  return {
    events: latencies.length,
    eventsPerSec: round((latencies.length / elapsedMs) * 1000, 1),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
  };
}

/** Runs the four lines (raw and pipeline, full speed and 500/s) for one driver. */
export async function benchDriver(scenario: PipelineScenario, emit: (line: Record<string, unknown>) => void) {
  const run = async (kind: 'raw-bus' | 'pipeline', offeredPerSec: number) => {
    const bus = await scenario.makeBus(`bench${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}.`);
    await bus.connect();
    try {
      const events = offeredPerSec === 0 ? scenario.fastEvents : scenario.rateEvents;
      return kind === 'raw-bus' ? await runRawBus(bus, events, offeredPerSec) : await runPipeline(bus, events, offeredPerSec);
    } finally {
      await bus.close();
    }
  };
  const rawFast = await run('raw-bus', 0);
  emit({ scenario: 'raw-bus', driver: scenario.driver, hops: HOPS, offeredPerSec: 0, ...rawFast });
  const pipeFast = await run('pipeline', 0);
  emit({
    scenario: 'pipeline',
    driver: scenario.driver,
    hops: HOPS,
    offeredPerSec: 0,
    ...pipeFast,
    ratioToRawBus: round(pipeFast.eventsPerSec / rawFast.eventsPerSec),
  });
  const rawRate = await run('raw-bus', 500);
  emit({ scenario: 'raw-bus', driver: scenario.driver, hops: HOPS, offeredPerSec: 500, ...rawRate });
  const pipeRate = await run('pipeline', 500);
  emit({
    scenario: 'pipeline',
    driver: scenario.driver,
    hops: HOPS,
    offeredPerSec: 500,
    ...pipeRate,
    p99RatioToRawBus: round(pipeRate.p99Ms / Math.max(rawRate.p99Ms, 0.001)),
  });
}
