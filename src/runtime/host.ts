// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import type { FastifyInstance } from 'fastify';
import { createBus, type CreateBusOptions, type MessageBus, type Subscription } from '../bus/index.js';
import { BitBratError, Topic, type Envelope } from '../core/index.js';
import type { CreateStoreOptions, Store } from '../store/index.js';
import { loadPlatformConfig, parseConfig, readEnv, type PlatformConfig } from './config.js';
import { createSlipEngine, type SlipEngine } from './engine.js';
import { createInflightTracker } from './inflight.js';
import { watchBusStorage } from './bus-storage.js';
import { createHealthRegistry, type HealthRegistry } from './health.js';
import { createHttpServer } from './http.js';
import { createLogger, createSecretScrubber, type Logger } from './logger.js';
import { knownSteps, loadArchitecture, resolveTopic, serviceManifest, type Architecture } from './manifest.js';
import { createRuntimeMetrics, type RuntimeMetrics } from './metrics.js';
import { createEnvSecretsProvider, type SecretsProvider } from './secrets.js';
import type { Consumer, ServiceContext, ServiceDefinition, ServiceInstance } from './service.js';
import { createTracing, traced } from './tracing.js';
import { loadTracingConfig, type TracingConfig } from './tracing-config.js';

/**
 * A per-instance group (egress replies for one process) nobody has consumed for this long is deleted by
 * the broker: the instance that owned it is gone. A live instance keeps consuming, however quiet.
 */
export const PER_INSTANCE_GROUP_EXPIRY_MS = 60 * 60 * 1000;

export interface HostOptions {
  services: ServiceDefinition[];
  /** Environment to read config from; default the process environment. */
  env?: Record<string, string | undefined>;
  /** Use this bus instead of creating one from config (tests, benchmarks). */
  bus?: MessageBus;
  /** Use this store instead of creating one from config. */
  store?: Store;
  secrets?: SecretsProvider;
  /** Listen on PORT (default true); false keeps the server in-process for `inject`. */
  listen?: boolean;
  /** Name used in logs for the whole process. Default: the service name, or `bitbrat` for several. */
  processName?: string;
  logDestination?: { write(line: string): void };
  architecture?: Architecture;
  /** Overrides for the R4 backoff (tests). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Whether to collect default process metrics (default true). */
  defaultMetrics?: boolean;
}

export interface Host {
  readonly platform: Readonly<PlatformConfig>;
  readonly app: FastifyInstance;
  readonly bus: MessageBus;
  readonly store: Store | undefined;
  readonly health: HealthRegistry;
  readonly metrics: RuntimeMetrics;
  readonly logger: Logger;
  /** The port the HTTP server listens on (after start). */
  readonly port: number;
  context(service: string): ServiceContext;
  /** What a hosted service's `setup` returned (after start), for services that offer more (tests, tools). */
  instance(service: string): ServiceInstance;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface Running {
  definition: ServiceDefinition;
  ctx: ServiceContext;
  /** What `setup` returned (set once, at start). */
  instance?: ServiceInstance;
  engine: SlipEngine;
  subscriptions: Subscription[];
  started: boolean;
}

/**
 * Hosts one or more services in this process: config, secrets, logging, bus, store, HTTP health, the
 * slip engine and graceful shutdown in reverse start order.
 */
export async function createHost(options: HostOptions): Promise<Host> {
  const env = options.env ?? readEnv();
  const architecture = options.architecture ?? loadArchitecture();
  const problems: string[] = [];
  let platform: Readonly<PlatformConfig> | undefined;
  try {
    platform = loadPlatformConfig(env);
  } catch (error) {
    problems.push((error as Error).message);
  }
  let tracingConfig: TracingConfig = { enabled: false };
  try {
    tracingConfig = loadTracingConfig(env);
  } catch (error) {
    problems.push((error as Error).message);
  }
  const serviceConfigs = new Map<string, unknown>();
  for (const definition of options.services) {
    try {
      serviceManifest(definition.name, architecture);
      serviceConfigs.set(
        definition.name,
        definition.configSchema ? parseConfig(definition.configSchema, env, `configuration for ${definition.name}`) : {},
      );
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  if (problems.length > 0 || !platform) throw new BitBratError('CONFIG_INVALID', problems.join('\n'));
  const config = platform;

  const scrubber = createSecretScrubber();
  const processName = options.processName ?? (options.services.length === 1 ? options.services[0]!.name : 'bitbrat');
  const rootLogger = createLogger({
    level: config.LOG_LEVEL,
    ...(options.services.length === 1 ? { service: processName } : { process: processName }),
    instanceId: config.INSTANCE_ID,
    scrubber,
    destination: options.logDestination,
    format: config.LOG_FORMAT,
  });
  const secrets = options.secrets ?? (await createSecrets(config, env));
  const metrics = createRuntimeMetrics({ defaultMetrics: options.defaultMetrics });
  // Off (undefined, nothing of the SDK loaded) unless an OTLP endpoint is configured.
  const tracing = await createTracing(tracingConfig, { service: processName, instanceId: config.INSTANCE_ID });
  const health = createHealthRegistry();
  // Not ready until start() has connected the bus and the consumers run.
  health.set('bus', false, 'not started');
  const bus =
    options.bus ??
    (await createBus(busOptionsFromConfig(config, `${processName}-${config.INSTANCE_ID}`, rootLogger.child({ component: 'bus' }))));
  const needsStore = options.services.some((service) => service.needsStore);
  let store: Store | undefined = options.store;
  // With tracing on, services see the store through a wrapper that makes every call a child span.
  let servicesStore: Store | undefined;
  const storeForServices = (active: Store) => (tracing ? (servicesStore ??= tracedStore(active)) : active);

  const app = createHttpServer({ health, metrics, services: () => options.services.map((service) => service.name), logger: rootLogger });
  // One per process: every engine here records where it last sent each envelope (stalled events).
  const inflight = createInflightTracker({
    finalTopics: [Topic.finalizer, Topic.deadletter],
    ttlMs: Math.max(3_600_000, 2 * config.STALLED_AFTER_MS),
  });
  app.get('/_debug/inflight', async (request) => {
    const id = (request.query as Record<string, unknown>).id;
    if (typeof id === 'string') return { items: [inflight.get(id)].filter(Boolean), size: inflight.size };
    return { items: inflight.list(1_000), size: inflight.size };
  });
  const running: Running[] = [];
  let storeTimer: NodeJS.Timeout | undefined;
  let busStorage: { stop(): void } | undefined;
  let unsubscribeBus: (() => void) | undefined;
  let port = 0;

  const makeContext = (definition: ServiceDefinition): Running => {
    const logger = options.services.length === 1 ? rootLogger : rootLogger.child({ service: definition.name });
    const engine = createSlipEngine({
      service: definition.name,
      instanceId: config.INSTANCE_ID,
      bus,
      logger,
      metrics,
      tracing,
      publishMaxRetries: config.PUBLISH_MAX_RETRIES,
      retryBaseMs: options.retryBaseMs,
      retryMaxMs: options.retryMaxMs,
      // Steps of architecture.yaml, and of the ad-hoc services a test or an embedding describes.
      knownSteps: () => knownSteps(loadArchitecture(), architecture),
      inflight,
      onDependency: (name, ready, detail) => {
        if (name === 'store' && !store) return;
        health.set(name, ready && (name === 'bus' ? bus.isConnected() : true), ready ? undefined : detail);
      },
    });
    const ctx: ServiceContext = {
      name: definition.name,
      instanceId: config.INSTANCE_ID,
      platform: config,
      config: serviceConfigs.get(definition.name) as Record<string, unknown>,
      logger,
      bus,
      get store(): Store {
        if (!store) throw new BitBratError('NOT_CONFIGURED', `${definition.name} has no store (set needsStore)`);
        return storeForServices(store);
      },
      secrets,
      metrics,
      health: health.scoped(`${definition.name}.`),
      publish: (topic: string, envelope: Envelope, publishOptions?: { msgId?: string }) =>
        engine.publishEnvelope(topic, envelope, publishOptions?.msgId),
      inflight,
      registerSecret: (value) => scrubber.add(value),
      ...(tracing ? { tracing } : {}),
    };
    return { definition, ctx, engine, subscriptions: [], started: false };
  };

  const host: Host = {
    platform: config,
    app,
    bus,
    get store() {
      return store;
    },
    health,
    metrics,
    logger: rootLogger,
    get port() {
      return port;
    },
    context(name) {
      const found = running.find((entry) => entry.definition.name === name);
      if (!found) throw new BitBratError('UNKNOWN_SERVICE', `service ${name} is not hosted here`);
      return found.ctx;
    },
    instance(name) {
      const found = running.find((entry) => entry.definition.name === name);
      if (!found?.instance) throw new BitBratError('UNKNOWN_SERVICE', `service ${name} is not hosted here or not started`);
      return found.instance;
    },

    async start() {
      health.set('bus', false, 'connecting');
      if (needsStore) health.set('store', false, 'connecting');
      for (const definition of options.services) running.push(makeContext(definition));
      // Not ready until every service's consumers run (not just the bus and store).
      for (const entry of running) entry.ctx.health.set('consumers', false, 'starting');

      // Each service's setup runs once; its consumers are checked against architecture.yaml before
      // touching the network.
      for (const entry of running) {
        entry.instance = await entry.definition.setup(entry.ctx);
        const manifest = serviceManifest(entry.definition.name, architecture);
        const declared = Object.keys(entry.instance.consumers).sort();
        const expected = [...manifest.consumes].sort();
        if (JSON.stringify(declared) !== JSON.stringify(expected)) {
          throw new BitBratError(
            'CONFIG_INVALID',
            `service ${entry.definition.name} consumes [${declared.join(', ')}] but architecture.yaml says [${expected.join(', ')}]`,
          );
        }
      }

      for (const entry of running) await entry.instance?.routes?.(app);
      if (options.listen !== false) {
        await app.listen({ port: config.PORT, host: config.HOST });
        const address = app.server.address();
        port = typeof address === 'object' && address ? address.port : config.PORT;
        rootLogger.info({ port, host: config.HOST }, 'http server listening');
      } else {
        await app.ready();
      }

      unsubscribeBus = bus.onStatus((event) => {
        health.set('bus', event.status === 'connected', event.status === 'connected' ? undefined : `bus ${event.status}`);
        if (event.status !== 'connected') rootLogger.warn({ status: event.status }, 'bus connection changed');
        else rootLogger.info('bus connected');
      });
      await bus.connect();
      health.set('bus', bus.isConnected(), bus.isConnected() ? undefined : 'bus disconnected');
      busStorage = watchBusStorage(bus, health, metrics, rootLogger);

      if (needsStore) {
        if (!store) {
          const { createStore } = await import('../store/index.js');
          store = await createStore(storeOptionsFromConfig(config, secrets, rootLogger.child({ component: 'store' })));
        }
        await store.init();
        health.set('store', true);
        const activeStore = store;
        storeTimer = setInterval(() => {
          void activeStore.ping().then((ok: boolean) => health.set('store', ok, ok ? undefined : 'store unreachable'));
        }, 5_000);
        storeTimer.unref();
      }

      for (const entry of running) {
        await entry.instance?.start?.();
        entry.started = true;
      }

      const planned = running.map((entry) => ({
        entry,
        consumers: Object.entries((entry.instance?.consumers ?? {}) as Record<string, Consumer>).map(([manifestTopic, consumer]) => ({
          manifestTopic,
          topic: resolveTopic(manifestTopic, config.INSTANCE_ID),
          consumer,
        })),
      }));
      const share = platformShares(planned.flatMap((plan) => plan.consumers));
      for (const { entry, consumers } of planned) {
        for (const { manifestTopic, topic, consumer: declared } of consumers) {
          const consumer = share(topic, declared);
          const perInstance = manifestTopic !== topic;
          const group = perInstance ? `${entry.definition.name}-${config.INSTANCE_ID}` : entry.definition.name;
          const subscription = await bus.subscribe(topic, group, (message) => entry.engine.process(topic, consumer, message), {
            maxInFlight: consumer.maxInFlight ?? config.MAX_IN_FLIGHT,
            ackWaitMs: consumer.ackWaitMs ?? config.ACK_WAIT_MS,
            // Nobody else consumes this instance's own topic: its group may go once the instance has.
            ...(perInstance ? { expireAfterIdleMs: PER_INSTANCE_GROUP_EXPIRY_MS } : {}),
          });
          entry.subscriptions.push(subscription);
        }
        entry.ctx.health.set('consumers', true, `${entry.subscriptions.length} topic(s)`);
      }
      rootLogger.info(
        { services: running.map((entry) => entry.definition.name), bus: bus.driver, store: store ? config.STORE_DRIVER : 'none' },
        'started',
      );
    },

    async stop() {
      rootLogger.info('stopping');
      // Shutdown is bounded: past SHUTDOWN_TIMEOUT_MS held messages are released (redelivered later) and
      // every step still running is abandoned with a warning, so SIGTERM always ends the process.
      let expired = false;
      let expire!: () => void;
      const expiry = new Promise<void>((resolve) => {
        expire = resolve;
      });
      const deadline = setTimeout(() => {
        expired = true;
        rootLogger.warn(
          { timeoutMs: config.SHUTDOWN_TIMEOUT_MS },
          'shutdown timeout: releasing held messages and abandoning what has not stopped',
        );
        for (const entry of running) entry.engine.releaseHolds();
        expire();
      }, config.SHUTDOWN_TIMEOUT_MS);
      deadline.unref();
      const bounded = async (what: string, work: () => Promise<unknown>): Promise<void> => {
        const done = work().catch((error: unknown) => rootLogger.warn({ err: error }, `${what} failed`));
        await Promise.race([done, expiry]);
        if (expired) rootLogger.warn(`shutdown: ${what} did not finish in time`);
      };
      // Stop consuming and let in-flight work finish, services in reverse start order.
      for (const entry of [...running].reverse()) {
        entry.ctx.health.set('consumers', false, 'stopping');
        entry.engine.releaseHolds();
        await bounded(`draining ${entry.definition.name}`, () =>
          Promise.all(entry.subscriptions.map((subscription) => subscription.drain())),
        );
        entry.subscriptions = [];
      }
      for (const entry of [...running].reverse()) {
        if (entry.started && entry.instance?.stop) await bounded(`stopping ${entry.definition.name}`, () => entry.instance!.stop!());
        entry.started = false;
      }
      if (storeTimer) clearInterval(storeTimer);
      busStorage?.stop();
      unsubscribeBus?.();
      await bounded('closing the http server', () => app.close());
      if (store && !options.store) await bounded('closing the store', () => store!.close());
      if (!options.bus) await bounded('closing the bus', () => bus.close());
      clearTimeout(deadline);
      // Last: every span of the shutdown is exported before the process exits.
      if (tracing) await flushTraces(tracing.shutdown(), rootLogger);
      rootLogger.info('stopped');
    },
  };
  return host;
}

/** How long stopping waits for the last spans to export: an unreachable collector must not hold up shutdown. */
const TRACE_FLUSH_TIMEOUT_MS = 5_000;

async function flushTraces(shutdown: Promise<void>, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), TRACE_FLUSH_TIMEOUT_MS);
    timer.unref();
  });
  try {
    const result = await Promise.race([shutdown.then(() => 'done' as const), timedOut]);
    if (result === 'timeout')
      logger.warn({ timeoutMs: TRACE_FLUSH_TIMEOUT_MS }, 'trace export at shutdown did not finish; remaining spans dropped');
  } catch (error) {
    logger.warn({ err: error }, 'trace export at shutdown failed');
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The store as services see it with tracing on: each method call made for a traced message is a client
 * span (`store <method>`), child of the message's span. Calls outside a message are not traced.
 */
function tracedStore(store: Store): Store {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function' || typeof property !== 'string') return value;
      let wrapper = wrapped.get(property);
      if (!wrapper) {
        const name = `store ${property}`;
        const attributes = { 'db.system.name': target.driver, 'db.operation.name': property };
        wrapper = (...args: unknown[]) => traced(name, attributes, () => (value as (...a: unknown[]) => unknown).apply(target, args));
        wrapped.set(property, wrapper);
      }
      return wrapper;
    },
  });
}

/**
 * For topics that several consumers of this process take (each in its own group, so each gets every
 * envelope) and where some name the platforms they deliver to: every consumer declines the envelopes
 * of a platform another one names, so each envelope is handled once. In the all-in-one process the
 * per-instance egress topic is one such: Twitch replies belong to ingress-egress, console replies to
 * the api-gateway. Envelopes of a platform nobody names still reach every consumer.
 */
function platformShares(consumers: Array<{ topic: string; consumer: Consumer }>) {
  const byTopic = new Map<string, Consumer[]>();
  for (const { topic, consumer } of consumers) byTopic.set(topic, [...(byTopic.get(topic) ?? []), consumer]);
  return (topic: string, consumer: Consumer): Consumer => {
    const peers = byTopic.get(topic) ?? [];
    if (consumer.mode === 'raw' || peers.length < 2) return consumer;
    const mine = new Set(consumer.platforms ?? []);
    const others = new Set(peers.flatMap((peer) => (peer !== consumer && peer.mode !== 'raw' ? (peer.platforms ?? []) : [])));
    for (const platform of mine) others.delete(platform);
    if (others.size === 0) return consumer;
    return { ...consumer, declines: (envelope) => others.has(envelope.source.platform) };
  };
}

/** The bus options the platform config describes; `name` is the connection name the server shows. */
export function busOptionsFromConfig(
  config: Readonly<PlatformConfig>,
  name: string,
  logger?: CreateBusOptions['logger'],
): CreateBusOptions {
  return {
    driver: config.MESSAGE_BUS_DRIVER,
    prefix: config.BUS_PREFIX,
    natsUrl: config.NATS_URL,
    nats: { maxAgeMs: config.NATS_STREAM_MAX_AGE_MS, maxBytes: config.NATS_STREAM_MAX_BYTES },
    name,
    pubsub: config.GOOGLE_CLOUD_PROJECT ? { projectId: config.GOOGLE_CLOUD_PROJECT, emulatorHost: config.PUBSUB_EMULATOR_HOST } : undefined,
    ...(logger ? { logger } : {}),
  };
}

/** The store options the platform config describes (the embedded store generates its own keys). */
export function storeOptionsFromConfig(
  config: Readonly<PlatformConfig>,
  secrets: SecretsProvider,
  logger?: CreateStoreOptions['logger'],
): CreateStoreOptions {
  return {
    driver: config.STORE_DRIVER,
    dataDir: config.DATA_DIR,
    databaseUrl: config.DATABASE_URL,
    firestore: config.GOOGLE_CLOUD_PROJECT ? { projectId: config.GOOGLE_CLOUD_PROJECT, host: config.FIRESTORE_EMULATOR_HOST } : undefined,
    secrets,
    embedded: config.STORE_DRIVER === 'pglite',
    ...(logger ? { logger } : {}),
  };
}

/** The configured secrets provider. */
export async function createSecrets(config: Readonly<PlatformConfig>, env: Record<string, string | undefined>): Promise<SecretsProvider> {
  if (config.SECRETS_PROVIDER === 'env') return createEnvSecretsProvider(env);
  const { createSecretsProvider } = await import('./secrets-providers.js');
  return createSecretsProvider({
    kind: config.SECRETS_PROVIDER,
    env,
    dir: config.SECRETS_DIR,
    projectId: config.GOOGLE_CLOUD_PROJECT,
  } as never);
}

/** Runs a host until SIGTERM/SIGINT, then stops it gracefully. */
export async function runUntilSignal(host: Host, onStarted?: () => void): Promise<void> {
  await host.start();
  onStarted?.();
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      host.logger.info({ signal }, 'signal received; shutting down');
      void host.stop().finally(resolve);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
