import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BitBratError, isBitBratError } from '../../src/core/index.js';
import { createStore, type Store } from '../../src/store/index.js';
import { MIGRATIONS } from '../../src/store/sql.js';
import { dropSchema, sql, startPostgres, uniqueSchema, type PostgresInstance } from '../support/pg-server.js';
import { runPostgresUrl } from '../support/run-postgres.js';
import { waitFor } from '../support/wait.js';
import { describeStoreContract } from './store-contract.js';

const url = runPostgresUrl();
const key = randomBytes(32).toString('base64');
const secrets = (values: Record<string, string> = { TOKEN_ENCRYPTION_KEY: key }) => ({ get: async (name: string) => values[name] });

async function caught(promise: Promise<unknown>): Promise<BitBratError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  if (!isBitBratError(error)) throw new Error(`expected a BitBratError, got ${String(error)}`);
  return error;
}

const contractSchema = uniqueSchema('contract');
describeStoreContract("postgres (the test run's server)", {
  create: async () => await createStore({ driver: 'postgres', databaseUrl: url, schema: contractSchema, secrets: secrets() }),
  cleanup: async () => {
    await dropSchema(url, contractSchema);
  },
});

describe('postgres store', () => {
  const schemas: string[] = [];
  const stores: Store[] = [];
  const open = async (schema: string, extra: Parameters<typeof createStore>[0] extends infer O ? Partial<O> : never = {}) => {
    const store = await createStore({ driver: 'postgres', databaseUrl: url, schema, secrets: secrets(), ...extra });
    stores.push(store);
    return store;
  };

  afterAll(async () => {
    for (const store of stores) await store.close().catch(() => undefined);
    for (const schema of schemas) await dropSchema(url, schema);
  });

  it('lets two instances start at once on a fresh schema and applies each migration once', async () => {
    const schema = uniqueSchema('race');
    schemas.push(schema);
    const [a, b] = await Promise.all([open(schema), open(schema)]);
    await Promise.all([a.init(), b.init()]);
    const { rows } = await sql(url, `SELECT version FROM "${schema}".schema_migrations ORDER BY version`);
    expect(rows.map((row) => row.version)).toEqual(MIGRATIONS.map((migration) => migration.version));
    const tables = await sql(url, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, [schema]);
    expect(tables.rows.map((row) => row.table_name)).toEqual([
      'claims',
      'commands',
      'conversations',
      'counters',
      'deadletters',
      'documents',
      'events',
      'oauth_tokens',
      'rules',
      'schema_migrations',
      'sources',
      'users',
    ]);
    // Both see the same data through their own pools.
    await a.incrementCounter('shared', 2);
    expect(await b.incrementCounter('shared', 3)).toBe(5);
    // A third start later finds everything applied.
    const c = await open(schema);
    await c.init();
    expect((await sql(url, `SELECT count(*)::int AS n FROM "${schema}".schema_migrations`)).rows[0].n).toBe(MIGRATIONS.length);
  });

  it('maps constraint violations to STORE_CONSTRAINT (not retryable)', async () => {
    const schema = uniqueSchema('constraint');
    schemas.push(schema);
    const store = await open(schema);
    await store.init();
    const error = await caught(
      store.recordFinal([
        { id: 'e1', correlationId: 'e1', type: 't', receivedAt: '2030-01-01T00:00:00.000Z', outcome: 'nonsense' as never },
      ]),
    );
    expect(error.code).toBe('STORE_CONSTRAINT');
    expect(error.retryable).toBe(false);
    expect(error.details?.sqlState).toBe('23514');
    const badTime = await caught(store.recordIngress([{ id: 'e2', correlationId: 'e2', type: 't', receivedAt: 'not a time' }]));
    expect(badTime.code).toBe('STORE_CONSTRAINT');
  });

  it('stores oauth tokens encrypted', async () => {
    const schema = uniqueSchema('tokens');
    schemas.push(schema);
    const store = await open(schema);
    await store.init();
    await store.putToken({
      id: 'twitch:bot',
      accessToken: 'oauth-PLAINTEXT-access',
      refreshToken: 'oauth-PLAINTEXT-refresh',
      scopes: [],
      obtainedAt: '2030-01-01T00:00:00.000Z',
    });
    const { rows } = await sql(url, `SELECT access_token, refresh_token FROM "${schema}".oauth_tokens`);
    expect(rows[0].access_token).toMatch(/^enc:v1:/);
    expect(JSON.stringify(rows)).not.toContain('PLAINTEXT');
    expect((await store.getToken('twitch:bot'))?.refreshToken).toBe('oauth-PLAINTEXT-refresh');
  });

  it('fails init with SECRET_MISSING when no key is configured and it is not embedded', async () => {
    const store = await open(uniqueSchema('nokey'), { secrets: secrets({}) });
    const error = await caught(store.init());
    expect(error.code).toBe('SECRET_MISSING');
    expect(error.message).toContain('TOKEN_ENCRYPTION_KEY');
  });
});

describe('postgres store when the database goes away', () => {
  let server: PostgresInstance | undefined;
  let store: Store | undefined;

  beforeAll(async () => {
    server = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    await store?.close().catch(() => undefined);
    await server?.dispose();
  });

  it('reports unavailable while down and recovers with the same store object', async () => {
    store = await createStore({ driver: 'postgres', databaseUrl: server!.url, schema: 'bitbrat', secrets: secrets() });
    await store.init();
    // Several parallel calls leave several idle connections in the pool to be cut off.
    await Promise.all(Array.from({ length: 6 }, (_, index) => store!.incrementCounter(`c${index}`, 1)));
    expect(await store.ping()).toBe(true);

    await server!.stop();
    expect(await store.ping()).toBe(false);
    const error = await caught(store.incrementCounter('c0', 1));
    expect(error.code).toBe('STORE_UNAVAILABLE');
    expect(error.retryable).toBe(true);
    const listError = await caught(store.listEvents({}));
    expect(listError.code).toBe('STORE_UNAVAILABLE');

    await server!.start();
    await waitFor(() => store!.ping(), { timeoutMs: 15_000, intervalMs: 100, message: 'the store to answer again' });
    expect(await store.incrementCounter('c0', 1)).toBe(2);
    await store.recordIngress([{ id: 'after-outage', correlationId: 'after-outage', type: 't', receivedAt: '2030-01-01T00:00:00.000Z' }]);
    expect((await store.getEvent('after-outage'))?.id).toBe('after-outage');
  });
});

describe('postgres store prepared statements', () => {
  let server: PostgresInstance | undefined;
  let store: Store | undefined;

  beforeAll(async () => {
    server = await startPostgres({ settings: ['log_statement=all'] });
  }, 120_000);
  afterAll(async () => {
    await store?.close().catch(() => undefined);
    await server?.dispose();
  });

  const touch = (userId: string) => ({ platform: 'twitch', userId, login: `login_${userId}`, at: '2030-01-01T00:00:00.000Z' });
  /** The user upserts the server ran so far, by how: `prepared` ran a named statement, `unnamed` the text. */
  const upsertsInLog = async () => {
    const log = await readFile(server!.logFile, 'utf8');
    return {
      prepared: (log.match(/execute bitbrat_[0-9a-f]{24}: INSERT INTO users/g) ?? []).length,
      unnamed: (log.match(/execute <unnamed>: INSERT INTO users/g) ?? []).length,
    };
  };

  it('runs the user upsert as a prepared statement, and unprepared once a migration changed its table', async () => {
    store = await createStore({ driver: 'postgres', databaseUrl: server!.url, schema: 'prepared', secrets: secrets() });
    await store.init();
    for (let index = 0; index < 5; index += 1) await store.touchUsers([touch(`u${index}`)]);
    expect(await upsertsInLog()).toEqual({ prepared: 5, unnamed: 0 });

    // A newer version adds a column while this process runs: RETURNING * now has another row type, which
    // PostgreSQL refuses for the plans prepared before. The touch still goes through.
    await sql(server!.url, 'ALTER TABLE prepared.users ADD COLUMN added_later text');
    // The pool hands out the connection it got back last, the one that prepared the upsert.
    const [first] = await store.touchUsers([touch('u0')]);
    expect([first!.user.messageCount, first!.created]).toEqual([2, false]);
    expect((await upsertsInLog()).unnamed).toBe(1);
    // From then on the text runs unprepared on every connection.
    const results = await Promise.all(Array.from({ length: 6 }, (_, index) => store!.touchUsers([touch(`u${index}`)])));
    expect(results.map(([result]) => [result!.user.userId, result!.user.messageCount, result!.created])).toEqual([
      ['u0', 3, false],
      ['u1', 2, false],
      ['u2', 2, false],
      ['u3', 2, false],
      ['u4', 2, false],
      ['u5', 1, true],
    ]);
    expect((await upsertsInLog()).unnamed).toBe(7);
  });

  it('runs a whole transaction again when a stale prepared plan aborted it', async () => {
    const big = await createStore({ driver: 'postgres', databaseUrl: server!.url, schema: 'prepared_tx', secrets: secrets() });
    try {
      await big.init();
      // More users than one statement carries: touchUsers writes them in one transaction of several upserts.
      const many = Array.from({ length: 1_500 }, (_, index) => touch(`m${index}`));
      await big.touchUsers(many);
      await sql(server!.url, 'ALTER TABLE prepared_tx.users ADD COLUMN added_later text');
      const again = await big.touchUsers(many);
      expect(again).toHaveLength(1_500);
      expect(again.every((result) => result.user.messageCount === 2 && !result.created)).toBe(true);
      const counts = await sql(server!.url, 'SELECT count(*)::int AS users, sum(message_count)::int AS messages FROM prepared_tx.users');
      expect(counts.rows[0]).toEqual({ users: 1_500, messages: 3_000 });
    } finally {
      await big.close();
    }
  });
});
