import { Writable } from 'node:stream';
import { createMemoryBus, type BusMessage, type MemoryBus, type MessageBus } from '../../src/bus/index.js';
import { BitBratError, type DeadLetter, type Envelope } from '../../src/core/index.js';
import {
  createEnvSecretsProvider,
  createHealthRegistry,
  createHost,
  createLogger,
  createSecretScrubber,
  createRuntimeMetrics,
  loadPlatformConfig,
  parseConfig,
  type Architecture,
  type Host,
  type HostOptions,
  type ServiceContext,
  type ServiceDefinition,
} from '../../src/runtime/index.js';
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
        {
          description: '',
          entry: 'test',
          consumes: service.consumes,
          publishes: [],
          paths: [],
          env: [],
          secrets: [],
          scaling: { min: 1, max: 1 },
          expose: false,
        },
      ]),
    ),
  };
}

/**
 * The services with an architecture that lists, for each, the topics its setup returns consumers for
 * (ad-hoc test services have no entry in architecture.yaml). Each list is filled when the host runs that
 * setup, before it checks the consumers against it, so no setup runs twice or with a made-up context.
 */
export function derivedArchitecture(services: ServiceDefinition[]): { services: ServiceDefinition[]; architecture: Architecture } {
  const consumes = new Map(services.map((service) => [service.name, [] as string[]]));
  const architecture = testArchitecture(services.map((service) => ({ name: service.name, consumes: consumes.get(service.name)! })));
  const wrapped = services.map(
    (service): ServiceDefinition => ({
      ...service,
      async setup(ctx) {
        const instance = await service.setup(ctx);
        consumes.get(service.name)!.push(...Object.keys(instance.consumers));
        return instance;
      },
    }),
  );
  return { services: wrapped, architecture };
}

/**
 * A context for calling a service's setup outside a host (to look at what it returns): its config and the
 * platform's from `env` and their defaults, a silent logger, an unconnected memory bus; no store.
 */
export function standaloneContext(definition: ServiceDefinition, env: Record<string, string | undefined> = {}): ServiceContext {
  const health = createHealthRegistry();
  // A logger without a scrubber fails in pino (hooks: undefined); the host always passes one too.
  const scrubber = createSecretScrubber();
  return {
    name: definition.name,
    instanceId: 'test',
    platform: loadPlatformConfig(env),
    config: definition.configSchema ? parseConfig(definition.configSchema, env, `configuration for ${definition.name}`) : {},
    logger: createLogger({ level: 'silent', scrubber }),
    bus: createMemoryBus(),
    get store(): never {
      throw new BitBratError('NOT_CONFIGURED', `${definition.name} has no store outside a host`);
    },
    secrets: createEnvSecretsProvider(env),
    metrics: createRuntimeMetrics({ defaultMetrics: false }),
    health: health.scoped(`${definition.name}.`),
    publish: async () => {
      throw new BitBratError('NOT_CONFIGURED', `${definition.name} cannot publish outside a host`);
    },
    registerSecret: (value) => scrubber.add(value),
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
    await bus.subscribe(
      topic,
      group,
      async (message: BusMessage) => {
        let value: unknown;
        try {
          value = JSON.parse(new TextDecoder().decode(message.data));
        } catch {
          value = new TextDecoder().decode(message.data);
        }
        received.push({ topic: message.topic, value, headers: message.headers, msgId: message.msgId });
        await message.ack();
      },
      { ackWaitMs: 30_000 },
    );
  }
  return {
    received,
    on: (topic: string) => received.filter((item) => item.topic === topic),
    envelopes: (topic: string) => received.filter((item) => item.topic === topic).map((item) => item.value as Envelope),
    deadLetters: (topic = 'internal.deadletter.v1') =>
      received.filter((item) => item.topic === topic).map((item) => item.value as DeadLetter),
    waitFor: (topic: string, predicate: (value: any) => boolean = () => true, timeoutMs = 15_000) =>
      waitFor(() => received.find((item) => item.topic === topic && predicate(item.value))?.value, {
        timeoutMs,
        message: `a message on ${topic}`,
      }),
  };
}

/** What `collect` returns: everything received on the observed topics, and ways to wait for and read it. */
export type Observer = Awaited<ReturnType<typeof collect>>;

/** How `startTestHost` starts a host. */
export interface TestHostOptions {
  services: ServiceDefinition[];
  bus: MessageBus;
  env?: Record<string, string | undefined>;
  architecture?: Architecture;
  listen?: boolean;
  extra?: Partial<HostOptions>;
}

/** A host for test services on the given bus, not listening on a port unless asked. */
export async function startTestHost(options: TestHostOptions): Promise<Host> {
  const { services, architecture } = options.architecture
    ? { services: options.services, architecture: options.architecture }
    : derivedArchitecture(options.services);
  const host = await createHost({
    services,
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

/** A host on its own memory bus, and an observer of that bus. */
export interface MemoryBusHost {
  bus: MemoryBus;
  observer: Observer;
  host: Host;
}

/**
 * Connects a fresh memory bus, subscribes an observer to `observe` (before anything is published), then
 * starts the host on that bus (the other options as for `startTestHost`).
 */
export async function startOnMemoryBus(options: Omit<TestHostOptions, 'bus'> & { observe?: string[] }): Promise<MemoryBusHost> {
  const { observe = [], ...hostOptions } = options;
  const bus = createMemoryBus();
  await bus.connect();
  const observer = await collect(bus, observe);
  const host = await startTestHost({ ...hostOptions, bus });
  return { bus, observer, host };
}

/** The host's /readyz: its status code and its body (the readiness of every component). */
export async function readyz(host: Host): Promise<{ status: number; body: any }> {
  const response = await host.app.inject({ method: 'GET', url: '/readyz' });
  return { status: response.statusCode, body: response.json() };
}

/** Waits until the host's /readyz answers 200 (every service ready, every connector connected). */
export async function waitUntilReady(host: Host, options: { timeoutMs?: number; message?: string } = {}): Promise<void> {
  await waitFor(async () => (await readyz(host)).status === 200, {
    timeoutMs: options.timeoutMs ?? 15_000,
    message: options.message ?? '/readyz to answer 200',
  });
}
