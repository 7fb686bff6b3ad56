/**
 * The finalizer's sustained write rate per store driver: final envelopes are put on a memory bus as
 * fast as the finalizer takes them, and the rate is measured until every record is in the store.
 */
import { createMemoryBus } from '../src/bus/index.js';
import { createEnvelope, createReply, createStep, Topic } from '../src/core/index.js';
import finalizer from '../src/services/finalizer/index.js';
import { createStore, type CreateStoreOptions, type Store } from '../src/store/index.js';
import { createHost } from '../src/runtime/index.js';
import { testArchitecture } from '../test/support/harness.js';
import { round } from './stats.js';

const architecture = testArchitecture([{ name: 'finalizer', consumes: [Topic.finalizer, Topic.deadletter] }]);

async function measure(driver: string, store: Store, events: number) {
  const bus = createMemoryBus();
  const host = await createHost({
    services: [finalizer],
    bus,
    store,
    env: { LOG_LEVEL: 'silent', MAX_IN_FLIGHT: '256' },
    architecture,
    listen: false,
    defaultMetrics: false,
  });
  await host.start();
  const encoder = new TextEncoder();
  const ids: string[] = [];
  const started = performance.now();
  for (let i = 0; i < events; i += 1) {
    const envelope = createEnvelope({
      type: 'external.chat.message.v1',
      source: { platform: 'bench', channel: 'c', channelId: '1' },
      payload: { text: `message ${i}` },
      routingSlip: ['query-analyzer', 'router', 'commands'].map((id) => ({ ...createStep(id), status: 'OK' as const, attempt: 1 })),
      extra: {
        outcome: 'completed',
        candidates: [createReply('commands', 'pong')],
        delivery: { delivered: true, at: new Date().toISOString() },
      },
    });
    ids.push(envelope.id);
    await bus.publish(Topic.finalizer, encoder.encode(JSON.stringify(envelope)));
  }
  // Wait until the bus is drained and the last record is readable.
  while (bus.depth(Topic.finalizer, 'finalizer') > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const last = await store.getEvent(ids[ids.length - 1]!);
  const elapsedMs = performance.now() - started;
  await host.stop();
  if (!last?.outcome) throw new Error(`finalizer bench on ${driver}: the last record is missing`);
  return { scenario: 'finalizer-writes', driver, events, eventsPerSec: round((events / elapsedMs) * 1000, 1) };
}

export async function benchFinalizer(): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const secrets = { get: async () => 'b'.repeat(64) };
  const run = async (driver: string, options: CreateStoreOptions, events: number, cleanup?: () => Promise<void>) => {
    const store = await createStore(options);
    await store.init();
    try {
      lines.push(await measure(driver, store, events));
    } finally {
      await store.close();
      await cleanup?.();
    }
  };
  await run('pglite', { driver: 'pglite', dataDir: 'memory://', embedded: true, secrets }, 5_000);
  const { startPostgres } = await import('../test/support/pg-server.js');
  // A private server with the durability of a real one (fsync on), so the figure is a server's.
  const postgres = await startPostgres({ durable: true });
  try {
    await run('postgres', { driver: 'postgres', databaseUrl: postgres.url, schema: 'bench', secrets }, 10_000);
  } finally {
    await postgres.dispose();
  }
  const { startFirestoreEmulator } = await import('../test/support/firestore-emulator.js');
  const emulator = await startFirestoreEmulator();
  try {
    await run(
      'firestore',
      { driver: 'firestore', firestore: { projectId: 'bench', host: emulator.host, collectionPrefix: `b${Date.now()}_` }, secrets },
      2_000,
    );
  } finally {
    await emulator.stop();
  }
  return lines;
}
