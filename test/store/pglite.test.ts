import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, describe, expect, it } from 'vitest';
import { isBitBratError } from '../../src/core/index.js';
import { createStore, type CreateStoreOptions, type Store } from '../../src/store/index.js';
import { createTokenCipher, parseTokenKey } from '../../src/store/crypto.js';
import { MIGRATIONS, mapSqlError } from '../../src/store/sql.js';
import { openPgliteWorker } from '../../src/store/pglite.js';
import { spawnSync } from 'node:child_process';
import type { Worker } from 'node:worker_threads';
import { describeStoreContract } from './store-contract.js';

const secrets = (values: Record<string, string> = {}) => ({ get: async (name: string) => values[name] });

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return isBitBratError(error) ? error.code : `not a BitBratError: ${String(error)}`;
  }
}

describeStoreContract('pglite (memory)', {
  create: () => createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: secrets() }),
});

describe('pglite store on disk', () => {
  const dirs: string[] = [];
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bitbrat-pglite-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  const open = async (dataDir: string, extra: Partial<CreateStoreOptions> = {}): Promise<Store> => {
    const store = await createStore({ driver: 'pglite', dataDir, embedded: true, secrets: secrets(), ...extra });
    await store.init();
    return store;
  };

  it('keeps data across close and reopen, reusing the generated token key', async () => {
    const dataDir = await tempDir();
    const first = await open(dataDir);
    await first.recordIngress([
      {
        id: 'e1',
        correlationId: 'e1',
        type: 'external.chat.message.v1',
        channel: '#c',
        receivedAt: '2030-01-01T00:00:00.000Z',
        text: 'hi',
      },
    ]);
    await first.recordFinal([
      { id: 'e1', correlationId: 'e1', type: 'external.chat.message.v1', receivedAt: '2030-01-01T00:00:00.000Z', outcome: 'completed' },
    ]);
    await first.putToken({
      id: 'twitch:bot',
      accessToken: 'plain-access-SECRET',
      refreshToken: 'plain-refresh-SECRET',
      scopes: ['chat:read'],
      obtainedAt: '2030-01-01T00:00:00.000Z',
    });
    await first.mergeSource({ id: 'twitch:1', platform: 'twitch', status: 'connected', metrics: { messagesIn: 3 } });
    await first.upsertRule({ id: 'r1', priority: 1, enabled: true, logic: true, action: { steps: ['router'] } });
    const version = await first.rulesVersion();
    await first.close();

    const keyFile = join(dataDir, 'token.key');
    expect(existsSync(keyFile)).toBe(true);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const keyText = await readFile(keyFile, 'utf8');
    expect(parseTokenKey(keyText)).toHaveLength(32);
    expect(existsSync(join(dataDir, 'pglite'))).toBe(true);

    const second = await open(dataDir);
    expect(await second.getEvent('e1')).toMatchObject({ id: 'e1', text: 'hi', outcome: 'completed' });
    expect(
      await second.recordFinal([{ id: 'e1', correlationId: 'e1', type: 'x', receivedAt: '2030-01-01T00:00:00.000Z', outcome: 'failed' }]),
    ).toEqual([]);
    expect(await second.getToken('twitch:bot')).toMatchObject({
      accessToken: 'plain-access-SECRET',
      refreshToken: 'plain-refresh-SECRET',
      version: 1,
    });
    expect(await second.getSource('twitch:1')).toEqual({
      id: 'twitch:1',
      platform: 'twitch',
      status: 'connected',
      metrics: { messagesIn: 3 },
    });
    expect(await second.rulesVersion()).toBe(version);
    await second.close();
    expect(await readFile(keyFile, 'utf8')).toBe(keyText);

    // The raw row holds ciphertext that the key file's key opens, never the plaintext.
    const db = await PGlite.create(join(dataDir, 'pglite'));
    try {
      const { rows } = await db.query<{ access_token: string; refresh_token: string }>(
        `SELECT access_token, refresh_token FROM oauth_tokens WHERE id = 'twitch:bot'`,
      );
      const raw = rows[0]!;
      expect(raw.access_token).toMatch(/^enc:v1:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
      expect(raw.access_token).not.toContain('SECRET');
      expect(raw.refresh_token).not.toContain('SECRET');
      expect(createTokenCipher(parseTokenKey(keyText)).decrypt(raw.access_token, 'oauth_tokens:twitch:bot')).toBe('plain-access-SECRET');
      const migrations = await db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(migrations.rows.map((row) => row.version)).toEqual(MIGRATIONS.map((migration) => migration.version));
    } finally {
      await db.close();
    }
  });

  it('upgrades a data directory from migration 1, keeping the events written as jsonb, and stores new envelopes as their JSON text', async () => {
    const dataDir = await tempDir();
    const envelope = { v: '1', id: 'old', nested: { list: [1, 'two', null], flag: true }, text: 'ünïcödé "quoted"' };
    // A data directory as the first release left it: migration 1 only, envelopes in jsonb columns.
    const old = await PGlite.create(join(dataDir, 'pglite'));
    await old.exec(
      'CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    await old.exec(MIGRATIONS[0]!.sql);
    await old.query(`INSERT INTO schema_migrations (version, name) VALUES (1, 'initial')`);
    await old.query(
      `INSERT INTO events (id, correlation_id, type, received_at, ingested, ingress, outcome, finalized_at, final) VALUES ('old', 'old', 't', now(), true, $1::jsonb, 'completed', now(), $2::jsonb)`,
      [JSON.stringify({ envelope }), JSON.stringify(envelope)],
    );
    await old.close();

    const store = await open(dataDir);
    expect(await store.getEvent('old')).toMatchObject({ id: 'old', ingress: { envelope }, final: envelope, outcome: 'completed' });
    const fresh = { ...envelope, id: 'new' };
    await store.recordIngress([
      {
        id: 'new',
        correlationId: 'new',
        type: 't',
        receivedAt: '2030-01-01T00:00:00.000Z',
        ingress: { envelope: fresh as never, raw: { line: 'PRIVMSG' } },
      },
    ]);
    await store.recordFinal([
      { id: 'new', correlationId: 'new', type: 't', receivedAt: '2030-01-01T00:00:00.000Z', outcome: 'completed', final: fresh as never },
    ]);
    expect(await store.getEvent('new')).toMatchObject({ ingress: { envelope: fresh, raw: { line: 'PRIVMSG' } }, final: fresh });
    await store.close();

    const db = await PGlite.create(join(dataDir, 'pglite'));
    try {
      const { rows } = await db.query<{ final_type: string; final: string }>(
        `SELECT pg_typeof(final)::text AS final_type, final FROM events WHERE id = 'new'`,
      );
      expect(rows[0]).toEqual({ final_type: 'text', final: JSON.stringify(fresh) });
      const versions = await db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(versions.rows.map((row) => row.version)).toEqual(MIGRATIONS.map((migration) => migration.version));
    } finally {
      await db.close();
    }
  });

  it('uses TOKEN_ENCRYPTION_KEY when set and writes no key file', async () => {
    const dataDir = await tempDir();
    const hexKey = randomBytes(32).toString('hex');
    const store = await open(dataDir, { secrets: secrets({ TOKEN_ENCRYPTION_KEY: hexKey }) });
    await store.putToken({ id: 't', accessToken: 'a', scopes: [], obtainedAt: '2030-01-01T00:00:00.000Z' });
    await store.close();
    expect(existsSync(join(dataDir, 'token.key'))).toBe(false);

    // The same key in base64 opens the same data; a different key cannot decrypt it.
    const again = await open(dataDir, { secrets: secrets({ TOKEN_ENCRYPTION_KEY: Buffer.from(hexKey, 'hex').toString('base64') }) });
    expect((await again.getToken('t'))?.accessToken).toBe('a');
    await again.close();
    const wrong = await open(dataDir, { secrets: secrets({ TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64') }) });
    expect(await codeOf(wrong.getToken('t'))).toBe('CONFIG_INVALID');
    await wrong.close();
  });

  it('rejects a key that is not 32 bytes of base64 or hex', async () => {
    const store = await createStore({
      driver: 'pglite',
      dataDir: 'memory://',
      embedded: true,
      secrets: secrets({ TOKEN_ENCRYPTION_KEY: 'too-short' }),
    });
    const error = await store.init().then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(isBitBratError(error) && error.code).toBe('CONFIG_INVALID');
    expect(String((error as Error).message)).not.toContain('too-short');
    expect(
      await codeOf(
        createStore({
          driver: 'pglite',
          dataDir: 'memory://',
          secrets: secrets({ TOKEN_ENCRYPTION_KEY: randomBytes(16).toString('hex') }),
        }).then((s) => s.init()),
      ),
    ).toBe('CONFIG_INVALID');
  });

  it('fails init with SECRET_MISSING when not embedded and no key is set', async () => {
    const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: false, secrets: secrets() });
    expect(await codeOf(store.init())).toBe('SECRET_MISSING');
  });

  it('reports closed stores: ping false, writes STORE_UNAVAILABLE', async () => {
    const store = await open('memory://');
    expect(await store.ping()).toBe(true);
    await store.close();
    expect(await store.ping()).toBe(false);
    expect(await codeOf(store.incrementCounter('x', 1))).toBe('STORE_UNAVAILABLE');
  });
});

describe('pglite worker thread', () => {
  it('runs statements beside the event loop: timers keep firing during a slow statement', async () => {
    const db = await openPgliteWorker(undefined);
    try {
      let ticks = 0;
      const ticker = setInterval(() => (ticks += 1), 10);
      await db.query('SELECT pg_sleep(0.5)');
      clearInterval(ticker);
      // In the same thread the WASM call would block the loop for the whole half second: no ticks at all.
      expect(ticks).toBeGreaterThanOrEqual(10);
    } finally {
      await db.close();
    }
  });

  it('keeps a transaction to itself: a statement issued meanwhile runs after it, and a rollback undoes only its own work', async () => {
    const db = await openPgliteWorker(undefined);
    try {
      await db.exec('CREATE TABLE t (id int PRIMARY KEY, who text)');
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const transaction = db.transaction(async (tx) => {
        await tx.query("INSERT INTO t VALUES (1, 'tx')");
        await held;
        throw new Error('roll back');
      });
      // Issued while the transaction is open: it must neither run inside it nor be rolled back with it.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const outside = db.query("INSERT INTO t VALUES (2, 'outside') RETURNING id");
      release();
      await expect(transaction).rejects.toThrow('roll back');
      expect((await outside).rows).toEqual([{ id: 2 }]);
      expect((await db.query('SELECT id, who FROM t ORDER BY id')).rows).toEqual([{ id: 2, who: 'outside' }]);
      const committed = await db.transaction(async (tx) => (await tx.query("INSERT INTO t VALUES (3, 'tx') RETURNING id")).rows[0]);
      expect(committed).toEqual({ id: 3 });
    } finally {
      await db.close();
    }
  });

  it('hands PostgreSQL errors across with their SQLSTATE, types (dates, JSON) with the rows, and refuses work once closed', async () => {
    const db = await openPgliteWorker(undefined);
    await db.exec('CREATE TABLE u (id int PRIMARY KEY, at timestamptz, doc jsonb)');
    await db.query('INSERT INTO u VALUES ($1, $2, $3)', [1, '2030-01-01T00:00:00.000Z', JSON.stringify({ a: [1, 2] })]);
    const { rows } = await db.query('SELECT * FROM u');
    expect(rows[0]!.at).toBeInstanceOf(Date);
    expect(rows[0]!.doc).toEqual({ a: [1, 2] });
    const duplicate = await db.query('INSERT INTO u VALUES (1, now(), null)').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(duplicate).toMatchObject({ code: '23505', constraint: 'u_pkey' });
    const mapped = mapSqlError(duplicate);
    expect(isBitBratError(mapped) && mapped.code).toBe('STORE_CONSTRAINT');
    await db.close();
    expect(await codeOf(db.query('SELECT 1'))).toBe('STORE_UNAVAILABLE');
  });

  it('after the worker dies: waiting calls fail with STORE_UNAVAILABLE, and a database on disk comes back in a new worker with its data', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bitbrat-pglite-crash-'));
    const workers: Worker[] = [];
    const db = await openPgliteWorker(join(dir, 'pglite'), { onWorker: (worker) => workers.push(worker) });
    try {
      await db.exec('CREATE TABLE t (id int PRIMARY KEY)');
      await db.query('INSERT INTO t VALUES (1)');
      const waiting = db.query('SELECT pg_sleep(2)').then(
        () => 'finished',
        (error: unknown) => (isBitBratError(error) ? error.code : String(error)),
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      await workers[0]!.terminate();
      expect(await waiting).toBe('STORE_UNAVAILABLE');
      expect((await db.query('SELECT id FROM t')).rows).toEqual([{ id: 1 }]);
      await db.query('INSERT INTO t VALUES (2)');
      expect(workers).toHaveLength(2);
      expect((await db.query('SELECT count(*)::int AS n FROM t')).rows).toEqual([{ n: 2 }]);
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps an in-memory database unavailable after its worker dies: there is no data to come back to', async () => {
    const workers: Worker[] = [];
    const db = await openPgliteWorker(undefined, { onWorker: (worker) => workers.push(worker) });
    await db.exec('CREATE TABLE t (id int)');
    await workers[0]!.terminate();
    expect(await codeOf(db.query('SELECT 1'))).toBe('STORE_UNAVAILABLE');
    expect(workers).toHaveLength(1);
    await db.close();
  });

  it('settles a call whose reply is too deeply nested to read, and answers the calls after it', async () => {
    const db = await openPgliteWorker(undefined);
    try {
      const deep = codeOf(db.query(`SELECT (repeat('[', 5000) || repeat(']', 5000))::jsonb AS j`));
      const after = db.query('SELECT 42 AS n');
      expect(await deep).toBe('STORE_CONSTRAINT');
      expect((await after).rows).toEqual([{ n: 42 }]);
      expect((await db.query('SELECT 7 AS n')).rows).toEqual([{ n: 7 }]);
    } finally {
      await db.close();
    }
  });

  it('fails a call the worker does not answer in time, and close() stops a stuck worker instead of waiting for it', async () => {
    const workers: Worker[] = [];
    const db = await openPgliteWorker(undefined, { callTimeoutMs: 200, closeTimeoutMs: 200, onWorker: (worker) => workers.push(worker) });
    const exited = new Promise<number>((resolve) => workers[0]!.once('exit', resolve));
    const stuck = db.query('SELECT pg_sleep(3600)').then(
      () => 'answered',
      (error: unknown) => (isBitBratError(error) ? `${error.code}: ${error.message}` : String(error)),
    );
    expect(await stuck).toBe('STORE_UNAVAILABLE: the embedded database did not answer within 200 ms');
    // Without a bound this waits out the hour-long statement (and the test times out).
    await db.close();
    expect(typeof (await exited)).toBe('number');
  });

  it('does not keep the process alive once nothing is pending', async () => {
    // A child opens a store, writes, and never closes it: it must still exit on its own.
    const dir = await mkdtemp(join(tmpdir(), 'bitbrat-pglite-child-'));
    try {
      const script = join(dir, 'child.mjs');
      await writeFile(
        script,
        [
          `import { createStore } from ${JSON.stringify(pathToFileURL(join(process.cwd(), 'src/store/index.ts')).href)};`,
          "const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: { get: async () => undefined } });",
          'await store.init();',
          "await store.recordIngress([{ id: 'e1', correlationId: 'e1', type: 'x', receivedAt: new Date().toISOString() }]);",
          "console.log('written');",
        ].join('\n'),
      );
      // Generous: a hang is what this looks for, and on two busy cores the child's start alone took 30 s.
      const child = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 100_000 });
      expect(child.error).toBeUndefined();
      expect(child.stdout, child.stderr).toContain('written');
      expect(child.status).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('sql store queries', () => {
  it('answers times PostgreSQL cannot hold with BAD_REQUEST instead of a database error', async () => {
    const store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true, secrets: secrets() });
    await store.init();
    try {
      expect(await codeOf(store.listEvents({ since: '-271821-04-20T00:00:00Z' }))).toBe('BAD_REQUEST');
      expect(await codeOf(store.listEvents({ until: '+275760-09-13T00:00:00Z' }))).toBe('BAD_REQUEST');
      expect(await codeOf(store.pruneEvents('-000100-01-01T00:00:00Z'))).toBe('BAD_REQUEST');
      expect((await store.listEvents({ since: '0001-01-01T00:00:00Z' })).items).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe('createStore', () => {
  it('rejects unknown drivers and missing connection settings with CONFIG_INVALID', async () => {
    expect(await codeOf(createStore({ driver: 'mongodb' as never }))).toBe('CONFIG_INVALID');
    expect(await codeOf(createStore({ driver: 'postgres' }))).toBe('CONFIG_INVALID');
    expect(await codeOf(createStore({ driver: 'firestore' }))).toBe('CONFIG_INVALID');
    expect(await codeOf(createStore({ driver: 'postgres', databaseUrl: 'postgres://x@127.0.0.1/db', schema: 'bad; drop' }))).toBe(
      'CONFIG_INVALID',
    );
  });
});
