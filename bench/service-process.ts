/**
 * One service of the full-pipeline benchmark in a process of its own, as `bitbrat up` and the compose
 * deployment run them: it hosts BENCH_SERVICE on the NATS bus and PostgreSQL schema the benchmark names.
 * Started with `fork`; answers `ready` once it consumes, `mark`/`report` with its CPU and event-loop use
 * since the last mark, and drains, closes and exits on `stop`. The finalizer's process also sends when
 * each envelope arrived (epoch ms), in batches sent 10 ms after the first arrival of each.
 */
import { performance as perfHooks } from 'node:perf_hooks';
import { createNatsBus } from '../src/bus/nats.js';
import { createHost } from '../src/runtime/index.js';
import { createStore } from '../src/store/index.js';
import { FULL_PIPELINE_ARCHITECTURE, observedServices, type ServiceProcessMessage } from './full-pipeline.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`service-process: ${name} is not set`);
  return value;
};

const send = (message: ServiceProcessMessage) => process.send!(message);
let arrivals: Array<[string, number]> = [];
let flushArrivals: NodeJS.Timeout | undefined;
const arrived = (id: string, at: number) => {
  arrivals.push([id, at]);
  flushArrivals ??= setTimeout(() => {
    flushArrivals = undefined;
    send({ type: 'arrivals', arrivals });
    arrivals = [];
  }, 10);
};

const name = env('BENCH_SERVICE');
const service = observedServices(arrived).find((definition) => definition.name === name);
if (!service) throw new Error(`service-process: no service "${name}" in the full pipeline`);
const bus = await createNatsBus({ servers: env('BENCH_NATS_URL'), prefix: env('BENCH_BUS_PREFIX'), name });
const store = await createStore({
  driver: 'postgres',
  databaseUrl: env('BENCH_DATABASE_URL'),
  schema: env('BENCH_SCHEMA'),
  secrets: { get: async () => 'a'.repeat(64) },
});
await bus.connect();
await store.init();
const host = await createHost({
  services: [service],
  bus,
  store,
  env: { LOG_LEVEL: 'silent', PORT: '0', INSTANCE_ID: name },
  architecture: FULL_PIPELINE_ARCHITECTURE,
  listen: false,
  defaultMetrics: false,
});
await host.start();

let cpuMark = process.cpuUsage();
let loopMark = perfHooks.eventLoopUtilization();
process.on('message', (message) => {
  if (message === 'mark') {
    cpuMark = process.cpuUsage();
    loopMark = perfHooks.eventLoopUtilization();
    send({ type: 'marked' });
  } else if (message === 'report') {
    const cpu = process.cpuUsage(cpuMark);
    send({ type: 'report', cpuMs: (cpu.user + cpu.system) / 1_000, loop: perfHooks.eventLoopUtilization(loopMark).utilization });
  } else if (message === 'stop') {
    void (async () => {
      await host.stop().catch(() => undefined);
      await bus.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      clearTimeout(flushArrivals);
      process.exit(0);
    })();
  }
});
// The benchmark is gone (it crashed or was killed): do not outlive it.
process.on('disconnect', () => process.exit(1));
send({ type: 'ready' });
