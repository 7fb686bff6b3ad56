/**
 * The full non-LLM pipeline through the real services: a viewer's `!ping` goes
 * ingress → auth → event-router → query-analyzer → moderation → event-router → commands → egress → finalizer
 * (persistence also consumes ingress). Egress is a bench stage that marks the reply delivered instead of
 * talking to Twitch. Latency is from the publish on internal.ingress.v1 to the envelope arriving at the
 * finalizer's handler (a hook in the finalizer reports it; no extra consumer adds to the load measured);
 * afterwards every event must have a final record with outcome `completed` and reply `pong` (and its
 * ingress record) in the store.
 *
 * Scenarios: memory bus + embedded PGlite (full speed and 500/s), NATS JetStream + the machine's
 * PostgreSQL with every service in this process (500/s and full speed, as `bitbrat start` runs on NATS)
 * and with a process per service (500/s, as `bitbrat up` and the containers run). Each scenario starts
 * fresh (bus prefix, store), warms up with 300 unmeasured events, and must find every record in the store
 * afterwards. BENCH_FULL_SCALE (default 1) scales the event counts.
 */
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance as perfHooks } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { MessageBus } from '../src/bus/index.js';
import { createMemoryBus } from '../src/bus/index.js';
import { Topic, stepTopic, type Envelope } from '../src/core/index.js';
import { normalizeChatMessage } from '../src/platforms/twitch/normalize.js';
import { continueWith, createHost, defineService, SERVICE_NODE_FLAGS, type ServiceDefinition } from '../src/runtime/index.js';
import auth from '../src/services/auth/index.js';
import commands from '../src/services/commands/index.js';
import router from '../src/services/event-router/index.js';
import finalizer from '../src/services/finalizer/index.js';
import persistence from '../src/services/persistence/index.js';
import analyzer from '../src/services/query-analyzer/index.js';
import moderation from '../src/services/moderation/index.js';
import { createStore, type CreateStoreOptions, type Store } from '../src/store/index.js';
import { testArchitecture } from '../test/support/harness.js';
import { drive, percentile, round } from './stats.js';

const SCALE = Number(process.env.BENCH_FULL_SCALE ?? '1') || 1;
/** BENCH_FULL_DRIVERS=memory or =nats runs only those scenarios (default: both). */
const DRIVERS = (process.env.BENCH_FULL_DRIVERS ?? 'memory,nats').split(',').map((part) => part.trim());
const VIEWERS = 2_000;
const WARMUP_EVENTS = 300;
const CHANNEL = 'benchchan';
const CHANNEL_ID = '100000';

const encoder = new TextEncoder();

/** Egress for the bench: the reply counts as delivered, then the envelope goes to finalization. */
export const benchEgress = defineService({
  name: 'bench-egress',
  setup: () => ({
    consumers: {
      [Topic.egress]: {
        mode: 'stage',
        next: 'finalization',
        async handle(envelope) {
          envelope.delivery = { delivered: true, at: new Date().toISOString() };
          return continueWith(envelope);
        },
      },
    },
  }),
});

export const FULL_PIPELINE_SERVICES: ServiceDefinition[] = [
  persistence,
  auth,
  router,
  analyzer,
  moderation,
  commands,
  benchEgress,
  finalizer,
];

/** Now as epoch milliseconds with sub-millisecond precision, comparable between processes. */
export const epochNow = () => performance.timeOrigin + performance.now();

/**
 * The pipeline's services with the finalizer telling `onArrival` when each envelope reaches it (before
 * it records it): the end of the measured path, seen without an extra consumer loading the bus.
 */
export function observedServices(onArrival: (id: string, at: number) => void): ServiceDefinition[] {
  const observedFinalizer: ServiceDefinition = {
    ...finalizer,
    async setup(ctx) {
      const instance = await finalizer.setup(ctx);
      const consumer = instance.consumers[Topic.finalizer];
      if (!consumer || consumer.mode === 'raw')
        throw new Error(`full-pipeline bench: the finalizer has no envelope consumer for ${Topic.finalizer}`);
      return {
        ...instance,
        consumers: {
          ...instance.consumers,
          [Topic.finalizer]: {
            ...consumer,
            handle: (envelope, handlerCtx) => {
              onArrival(envelope.id, epochNow());
              return consumer.handle(envelope, handlerCtx);
            },
          },
        },
      };
    },
  };
  return FULL_PIPELINE_SERVICES.map((service) => (service === finalizer ? observedFinalizer : service));
}

/** The consumed topics exactly as architecture.yaml lists them (plus the bench egress). */
export const FULL_PIPELINE_ARCHITECTURE = testArchitecture([
  { name: 'auth', consumes: [Topic.ingress] },
  { name: 'event-router', consumes: [Topic.authenticated, Topic.router] },
  { name: 'query-analyzer', consumes: [stepTopic('query-analyzer')] },
  { name: 'moderation', consumes: [stepTopic('moderation')] },
  { name: 'commands', consumes: [stepTopic('commands')] },
  { name: 'persistence', consumes: [Topic.ingress] },
  { name: 'finalizer', consumes: [Topic.finalizer, Topic.deadletter] },
  { name: 'bench-egress', consumes: [Topic.egress] },
]);

/** A `!ping` from one of many viewers, as the Twitch IRC normalizer turns a PRIVMSG into an envelope. */
function pingEnvelope(tag: string, index: number): Envelope {
  const viewer = index % VIEWERS;
  const login = `viewer_${tag}${viewer}`;
  return normalizeChatMessage(
    {
      channel: `#${CHANNEL}`,
      userLogin: login,
      text: '!ping',
      tags: {
        'badge-info': '',
        badges: viewer % 7 === 0 ? 'premium/1' : '',
        color: '#1E90FF',
        'display-name': `Viewer_${tag}${viewer}`,
        emotes: '',
        'first-msg': '0',
        flags: '',
        id: `${tag}-${index}-${Math.random().toString(36).slice(2, 10)}`,
        mod: '0',
        'returning-chatter': '0',
        'room-id': CHANNEL_ID,
        subscriber: '0',
        'tmi-sent-ts': String(Date.now()),
        turbo: '0',
        'user-id': String(200_000 + viewer),
        'user-type': '',
      },
    },
    { egressDestination: Topic.egress },
  );
}

interface Scenario {
  driver: string;
  store: string;
  offeredPerSec: number;
  events: number;
  makeBus: (prefix: string) => Promise<MessageBus>;
  /** `childEnv` tells a service process where the store is (see bench/service-process.ts). */
  makeStore: () => Promise<{ store: Store; cleanup: () => Promise<void>; childEnv?: Record<string, string> }>;
  /**
   * Run every service in a process of its own (bench/service-process.ts), as `bitbrat up` and the compose
   * deployment do, with this environment (where the bus is); by default they all run in this process.
   */
  processPerService?: { env: Record<string, string> };
}

/** What a service process (bench/service-process.ts) tells the benchmark. */
export type ServiceProcessMessage =
  | { type: 'ready' | 'marked' }
  | { type: 'report'; cpuMs: number; loop: number }
  | { type: 'arrivals'; arrivals: Array<[string, number]> };

/** A forked service process: `request` sends a command and resolves with its answer. */
interface ServiceProcess {
  readonly name: string;
  request(message: string): Promise<unknown>;
  stop(): Promise<void>;
}

/** Forks bench/service-process.ts for one service, with the Node flags of `npm start`, and waits until it consumes. */
async function startServiceProcess(
  name: string,
  env: Record<string, string>,
  onArrival: (id: string, at: number) => void,
): Promise<ServiceProcess> {
  const child = fork(fileURLToPath(new URL('./service-process.ts', import.meta.url)), [], {
    env: { ...process.env, ...env, BENCH_SERVICE: name },
    execArgv: [...SERVICE_NODE_FLAGS, '--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const replies: Array<(value: unknown) => void> = [];
  child.on('message', (message: ServiceProcessMessage) => {
    if (message.type === 'arrivals') for (const [id, at] of message.arrivals) onArrival(id, at);
    else replies.shift()?.(message);
  });
  const next = () => new Promise<unknown>((resolve) => replies.push(resolve));
  const ready = next();
  const outcome = await Promise.race([ready, exited.then((code) => ({ exited: code }))]);
  if ((outcome as ServiceProcessMessage).type !== 'ready')
    throw new Error(`full-pipeline bench: service process ${name} did not start (${JSON.stringify(outcome)})`);
  return {
    name,
    request(message) {
      const reply = next();
      child.send(message);
      return Promise.race([reply, exited.then((code) => Promise.reject(new Error(`service process ${name} exited (${code})`)))]);
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.send('stop');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Waits until every id has a final record and its ingress record; throws unless each is `completed` with
 * reply `pong` delivered. Reads in publish order and waits at the first incomplete one, so polling does
 * not compete with the writers it is waiting for.
 */
async function verifyStore(store: Store, ids: string[], timeoutMs = 60_000) {
  const deadline = performance.now() + timeoutMs;
  const CHUNK = 32;
  let index = 0;
  while (index < ids.length) {
    const chunk = ids.slice(index, index + CHUNK);
    const records = await Promise.all(chunk.map((id) => store.getEvent(id)));
    let complete = 0;
    for (const record of records) {
      if (!record?.outcome || !record.ingress) break;
      if (record.outcome !== 'completed' || record.replyText !== 'pong' || record.replyDelivered !== true) {
        throw new Error(
          `full-pipeline bench: event ${record.id} finalized as ${record.outcome} with reply ${JSON.stringify(record.replyText)} (delivered: ${record.replyDelivered})`,
        );
      }
      complete += 1;
    }
    index += complete;
    if (complete < chunk.length) {
      if (performance.now() > deadline) {
        const record = records[complete];
        const state = record ? (record.outcome ? 'has no ingress record' : 'is not finalized') : 'has no record';
        throw new Error(
          `full-pipeline bench: ${ids.length - index} of ${ids.length} events incomplete in the store (event ${chunk[complete]} ${state})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function runScenario(scenario: Scenario): Promise<Record<string, unknown>> {
  const tag = Math.random().toString(36).slice(2, 6);
  const busPrefix = `bfp${Date.now().toString(36)}${tag}.`;
  const bus = await scenario.makeBus(busPrefix);
  const { store, cleanup, childEnv } = await scenario.makeStore();
  let host: Awaited<ReturnType<typeof createHost>> | undefined;
  const children: ServiceProcess[] = [];
  try {
    await bus.connect();
    await store.init();
    const sentAt = new Map<string, number>();
    let latencies: number[] = [];
    // A redelivered envelope arrives again: only its first arrival counts.
    const onArrival = (id: string, at: number) => {
      const started = sentAt.get(id);
      if (started === undefined) return;
      latencies.push(at - started);
      sentAt.delete(id);
    };
    if (scenario.processPerService) {
      const env = { ...scenario.processPerService.env, ...childEnv, BENCH_BUS_PREFIX: busPrefix };
      const started = await Promise.allSettled(FULL_PIPELINE_SERVICES.map((service) => startServiceProcess(service.name, env, onArrival)));
      for (const result of started) if (result.status === 'fulfilled') children.push(result.value);
      const failed = started.find((result) => result.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    } else {
      host = await createHost({
        services: observedServices(onArrival),
        bus,
        store,
        env: { LOG_LEVEL: 'silent', PORT: '0' },
        architecture: FULL_PIPELINE_ARCHITECTURE,
        listen: false,
        defaultMetrics: false,
      });
      await host.start();
    }

    let ids: string[] = [];
    const run = async (prefix: string, events: number, offeredPerSec: number) => {
      latencies = [];
      ids = [];
      return drive({
        events,
        offeredPerSec,
        completed: () => latencies.length,
        send: async (index) => {
          const envelope = pingEnvelope(prefix, index);
          ids.push(envelope.id);
          sentAt.set(envelope.id, epochNow());
          // As the ingress service publishes (ctx.publish): the in-process bus takes the envelope itself.
          if (bus.publishJson) await bus.publishJson(Topic.ingress, envelope, { msgId: envelope.id });
          else await bus.publish(Topic.ingress, encoder.encode(JSON.stringify(envelope)), { msgId: envelope.id });
        },
      });
    };
    // Warm-up (not measured): JIT, connection pools, first rows; its records are settled before measuring.
    await run(`w${tag}`, WARMUP_EVENTS, 0);
    await verifyStore(store, ids);
    // Each service process measures its own CPU and event-loop use over the same window.
    await Promise.all(children.map((child) => child.request('mark')));
    const cpuBefore = process.cpuUsage();
    const eluBefore = perfHooks.eventLoopUtilization();
    const { elapsedMs } = await run(tag, scenario.events, scenario.offeredPerSec);
    const cpu = process.cpuUsage(cpuBefore);
    const elu = perfHooks.eventLoopUtilization(eluBefore);
    const childUse = (await Promise.all(children.map((child) => child.request('report')))) as Array<{ cpuMs: number; loop: number }>;
    const measured = latencies;
    await verifyStore(store, ids);
    return {
      scenario: 'full-pipeline',
      driver: scenario.driver,
      store: scenario.store,
      layout: children.length > 0 ? 'process per service' : 'one process',
      offeredPerSec: scenario.offeredPerSec,
      events: measured.length,
      eventsPerSec: round((measured.length / elapsedMs) * 1000, 1),
      p50Ms: round(percentile(measured, 50)),
      p99Ms: round(percentile(measured, 99)),
      // How busy this process was while measuring: CPU time per wall time (%, can exceed 100 with GC and
      // worker threads) and event-loop utilization (%). Near 100 means the bench is CPU-bound here.
      cpuPct: round(((cpu.user + cpu.system) / 1_000 / elapsedMs) * 100, 0),
      loopPct: round(elu.utilization * 100, 0),
      // With a process per service, the figures above are the bench's own process (the publisher);
      // these are every service process's.
      ...(children.length > 0
        ? {
            processes: children.length + 1,
            services: Object.fromEntries(
              children.map((child, index) => [
                child.name,
                { cpuPct: round((childUse[index]!.cpuMs / elapsedMs) * 100, 0), loopPct: round(childUse[index]!.loop * 100, 0) },
              ]),
            ),
          }
        : {}),
    };
  } finally {
    await host?.stop().catch(() => undefined);
    await Promise.all(children.map((child) => child.stop().catch(() => undefined)));
    await bus.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    await cleanup().catch(() => undefined);
  }
}

export async function benchFullPipeline(): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const n = (events: number) => Math.max(100, Math.round(events * SCALE));

  const memoryBus = async (prefix: string) => createMemoryBus({ prefix });
  // The embedded mode as `npm start` runs it: PGlite on disk in a data directory.
  const pglite = async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-bench-'));
    return {
      store: await createStore({ driver: 'pglite', dataDir, embedded: true, secrets: { get: async () => undefined } }),
      cleanup: async () => rm(dataDir, { recursive: true, force: true }),
    };
  };
  if (DRIVERS.includes('memory')) {
    lines.push(
      await runScenario({ driver: 'memory', store: 'pglite', offeredPerSec: 0, events: n(10_000), makeBus: memoryBus, makeStore: pglite }),
    );
    lines.push(
      await runScenario({ driver: 'memory', store: 'pglite', offeredPerSec: 500, events: n(5_000), makeBus: memoryBus, makeStore: pglite }),
    );
  }
  if (!DRIVERS.includes('nats')) return lines;

  const { startPostgres, uniqueSchema, dropSchema } = await import('../test/support/pg-server.js');
  const { startNatsServer } = await import('../test/support/nats-server.js');
  const { createNatsBus } = await import('../src/bus/nats.js');
  // A private server with the durability of a real one (fsync on), so the figures are a server's.
  const pgServer = await startPostgres({ durable: true });
  const server = await startNatsServer().catch(async (error: unknown) => {
    await pgServer.dispose();
    throw error;
  });
  try {
    const natsBus = async (prefix: string) => createNatsBus({ servers: server.url, prefix });
    const postgres = async () => {
      const databaseUrl = pgServer.url;
      const schema = uniqueSchema('bfp');
      const options: CreateStoreOptions = { driver: 'postgres', databaseUrl, schema, secrets: { get: async () => 'a'.repeat(64) } };
      return {
        store: await createStore(options),
        cleanup: () => dropSchema(databaseUrl, schema),
        childEnv: { BENCH_DATABASE_URL: databaseUrl, BENCH_SCHEMA: schema },
      };
    };
    lines.push(
      await runScenario({ driver: 'nats', store: 'postgres', offeredPerSec: 500, events: n(5_000), makeBus: natsBus, makeStore: postgres }),
    );
    lines.push(
      await runScenario({ driver: 'nats', store: 'postgres', offeredPerSec: 0, events: n(6_000), makeBus: natsBus, makeStore: postgres }),
    );
    // The NATS topology of `bitbrat up` and the containers: every service its own process.
    lines.push(
      await runScenario({
        driver: 'nats',
        store: 'postgres',
        offeredPerSec: 500,
        events: n(5_000),
        makeBus: natsBus,
        makeStore: postgres,
        processPerService: { env: { BENCH_NATS_URL: server.url } },
      }),
    );
  } finally {
    await server.stop();
    await pgServer.dispose();
  }
  return lines;
}
