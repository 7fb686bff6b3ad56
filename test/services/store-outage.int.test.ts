import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus } from '../../src/bus/index.js';
import { createEnvelope, Topic } from '../../src/core/index.js';
import finalizer from '../../src/services/finalizer/index.js';
import persistence from '../../src/services/persistence/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { startTestHost, testArchitecture } from '../support/harness.js';
import { auditFinalizations, finalizationsPerEvent } from '../support/finalization-audit.js';
import { sql, startPostgres, type PostgresInstance } from '../support/pg-server.js';
import { waitFor } from '../support/wait.js';

/**
 * Issue: when the database is unreachable, persistence and finalizer stop acking (messages stay on the
 * bus), report not-ready, and catch up when it returns — nothing lost, nothing duplicated.
 */
describe('persistence and finalizer through a 10 s PostgreSQL outage under steady load', () => {
  let pg: PostgresInstance;
  let store: Store;

  beforeAll(async () => {
    pg = await startPostgres();
    store = await createStore({ driver: 'postgres', databaseUrl: pg.url, secrets: { get: async () => 'a'.repeat(64) } });
    await store.init();
    await auditFinalizations(pg.url);
  }, 120_000);
  afterAll(async () => {
    await store?.close();
    await pg?.dispose();
  });

  it('holds messages while the database is down and records every event exactly once afterwards', async () => {
    const bus = createMemoryBus();
    const host = await startTestHost({
      services: [persistence, finalizer],
      bus,
      architecture: testArchitecture([
        { name: 'persistence', consumes: [Topic.ingress] },
        { name: 'finalizer', consumes: [Topic.finalizer, Topic.deadletter] },
      ]),
      extra: { store },
    });
    const ids: string[] = [];
    let sending = true;
    const encoder = new TextEncoder();
    const load = (async () => {
      while (sending) {
        const envelope = createEnvelope({
          type: 'external.chat.message.v1',
          source: { platform: 'twitch', channel: 'c', channelId: '1' },
          payload: { text: `message ${ids.length}` },
          extra: { outcome: 'completed' },
        });
        ids.push(envelope.id);
        const data = encoder.encode(JSON.stringify(envelope));
        await bus.publish(Topic.ingress, data);
        await bus.publish(Topic.finalizer, data);
        // Every tenth final message comes twice, as a redelivery after a lost ack would: it must not be
        // written twice.
        if (ids.length % 10 === 0) await bus.publish(Topic.finalizer, data);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();
    const ready = async () => (await host.app.inject({ url: '/readyz' })).statusCode;
    try {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(await ready()).toBe(200);
      await pg.stop();
      const stoppedAt = Date.now();
      await waitFor(async () => (await ready()) === 503, {
        timeoutMs: 8_000,
        intervalMs: 100,
        message: '/readyz to report the store down',
      });
      // Messages stay on the bus, unacked, while the database is away.
      await waitFor(() => bus.depth(Topic.ingress, 'persistence') > 5 && bus.depth(Topic.finalizer, 'finalizer') > 5, {
        timeoutMs: 8_000,
        message: 'messages held on the bus',
      });
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 10_000 - (Date.now() - stoppedAt))));
      await pg.start();
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      sending = false;
      await load;
      await waitFor(async () => (await ready()) === 200, { timeoutMs: 20_000, intervalMs: 200, message: '/readyz to recover' });
      await waitFor(
        async () => {
          const { rows } = await sql(
            pg.url,
            'SELECT count(*)::int AS n, count(*) FILTER (WHERE outcome IS NOT NULL)::int AS finalized FROM events WHERE id = ANY($1)',
            [ids],
          );
          return rows[0].n === ids.length && rows[0].finalized === ids.length;
        },
        { timeoutMs: 30_000, intervalMs: 250, message: `all ${ids.length} events recorded and finalized` },
      );
      const { rows } = await sql(pg.url, 'SELECT count(*)::int AS n FROM events');
      expect(rows[0].n).toBe(ids.length);
      expect(ids.length).toBeGreaterThan(300);
      // The rows' primary key rules out a second row; what can duplicate is a second finalization.
      const finalizations = await finalizationsPerEvent(pg.url, ids);
      expect([...finalizations].filter(([, count]) => count !== 1)).toEqual([]);
      // The last acks follow the last writes by a moment; then nothing is left on the bus.
      await waitFor(() => bus.depth(Topic.ingress, 'persistence') === 0 && bus.depth(Topic.finalizer, 'finalizer') === 0, {
        timeoutMs: 10_000,
        message: 'every held message acked',
      });
    } finally {
      sending = false;
      await load;
      await host.stop();
    }
  }, 120_000);
});
