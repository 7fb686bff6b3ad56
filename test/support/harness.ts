import { Writable } from 'node:stream';
import type { MessageBus, BusMessage } from '../../src/bus/index.js';
import type { DeadLetter, Envelope } from '../../src/core/index.js';
import { createHost, type Architecture, type Host, type HostOptions, type ServiceDefinition } from '../../src/runtime/index.js';
import { waitFor } from './wait.js';

/** Builds an architecture for ad-hoc test services from their consumers. */
export function testArchitecture(services: Array<{ name: string; consumes: string[] }>): Architecture {
  return {
    version: 1,
    name: 'test',
    defaults: { port: 0, health: [], env: [], secrets: [] },
    services: Object.fromEntries(
      services.map((service) => [
        service.name,
        { description: '', entry: 'test', consumes: service.consumes, publishes: [], paths: [], env: [], secrets: [], scaling: { min: 1, max: 1 }, expose: false },
      ]),
    ),
  };
}

/** Collected log lines (JSON) for assertions on logging. */
export function createLogSink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      callback();
    },
  });
  return { lines, stream, records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

export interface Collected<T> {
  topic: string;
  value: T;
  headers: Record<string, string>;
  msgId?: string;
}

/** Subscribes to topics as a test observer and keeps everything it receives. */
export async function collect(bus: MessageBus, topics: string[], group = `observer-${Math.random().toString(36).slice(2, 8)}`) {
  const received: Collected<any>[] = [];
  for (const topic of topics) {
    await bus.subscribe(topic, group, async (message: BusMessage) => {
      let value: unknown;
      try {
        value = JSON.parse(new TextDecoder().decode(message.data));
      } catch {
        value = new TextDecoder().decode(message.data);
      }
      received.push({ topic: message.topic, value, headers: message.headers, msgId: message.msgId });
      await message.ack();
    }, { ackWaitMs: 30_000 });
  }
  return {
    received,
    on: (topic: string) => received.filter((item) => item.topic === topic),
    envelopes: (topic: string) => received.filter((item) => item.topic === topic).map((item) => item.value as Envelope),
    deadLetters: (topic = 'internal.deadletter.v1') => received.filter((item) => item.topic === topic).map((item) => item.value as DeadLetter),
    waitFor: (topic: string, predicate: (value: any) => boolean = () => true, timeoutMs = 15_000) =>
      waitFor(() => received.find((item) => item.topic === topic && predicate(item.value))?.value, { timeoutMs, message: `a message on ${topic}` }),
  };
}

/** A host for test services on the given bus, not listening on a port unless asked. */
export async function startTestHost(options: {
  services: ServiceDefinition[];
  bus: MessageBus;
  env?: Record<string, string | undefined>;
  architecture?: Architecture;
  listen?: boolean;
  extra?: Partial<HostOptions>;
}): Promise<Host> {
  const architecture =
    options.architecture ??
    testArchitecture(options.services.map((service) => ({ name: service.name, consumes: Object.keys(service.consumers!({} as never)) })));
  const host = await createHost({
    services: options.services,
    bus: options.bus,
    env: { LOG_LEVEL: 'silent', PORT: '0', ...options.env },
    architecture,
    listen: options.listen ?? false,
    retryBaseMs: 20,
    retryMaxMs: 200,
    defaultMetrics: false,
    ...options.extra,
  });
  await host.start();
  return host;
}
