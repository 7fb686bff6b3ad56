/**
 * `npm run bench`: prints one JSON line per scenario. Set BENCH_ONLY=memory,nats,… to run a subset.
 * NATS scenarios use a nats-server started for the run (or NATS_URL when BENCH_NATS_URL=shared).
 */
import { createMemoryBus } from '../src/bus/index.js';
import { benchDriver } from './pipeline.js';

const only = (process.env.BENCH_ONLY ?? '')
  .split(',')
  .map((part) => part.trim())
  .filter(Boolean);
const wanted = (name: string) => only.length === 0 || only.includes(name);
const emit = (line: Record<string, unknown>) => process.stdout.write(JSON.stringify(line) + '\n');

const cleanups: Array<() => Promise<void>> = [];
try {
  if (wanted('memory')) {
    await benchDriver(
      { driver: 'memory', makeBus: async (prefix) => createMemoryBus({ prefix }), fastEvents: 30_000, rateEvents: 3_000 },
      emit,
    );
  }
  if (wanted('nats')) {
    const { startNatsServer } = await import('../test/support/nats-server.js');
    const server = await startNatsServer();
    cleanups.push(() => server.stop());
    const { createNatsBus } = await import('../src/bus/nats.js');
    await benchDriver(
      { driver: 'nats', makeBus: async (prefix) => createNatsBus({ servers: server.url, prefix }), fastEvents: 6_000, rateEvents: 3_000 },
      emit,
    );
  }
  for (const [name, file] of [
    ['finalizer', './finalizer.js'],
    ['twitch', './twitch-ingest.js'],
    ['analyzer', './analyzer.js'],
    ['llm', './llm-bot.js'],
    ['chaos', './chaos.js'],
    ['full', './full-pipeline.js'],
    ['footprint', './footprint.js'],
    ['envelope', './envelope-check.js'],
  ] as const) {
    if (!wanted(name)) continue;
    const module = (await import(file)) as Record<string, unknown>;
    const fn = Object.values(module).find((value) => typeof value === 'function' && /^bench/.test((value as { name: string }).name)) as
      | (() => Promise<unknown>)
      | undefined;
    if (!fn) throw new Error(`${file} exports no bench function`);
    const result = await fn();
    for (const line of Array.isArray(result) ? result : [result]) emit(line as Record<string, unknown>);
  }
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
}
process.exit(0);
