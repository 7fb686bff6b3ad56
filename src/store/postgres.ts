/** PostgreSQL server driver (node-postgres Pool). */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { BitBratError } from '../core/errors.js';
import { loadTokenCipher } from './crypto.js';
import { createSqlStore, type SqlExecutor, type SqlQueryable, type SqlQueryOptions } from './sql.js';
import type { CreateStoreOptions, Store } from './types.js';

const DEFAULT_POOL_SIZE = 10;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** PostgreSQL store; `options.schema` is created if missing and is the search_path of every connection. */
export function createPostgresStore(options: CreateStoreOptions): Store {
  const databaseUrl = options.databaseUrl;
  if (!databaseUrl) throw new BitBratError('CONFIG_INVALID', 'the postgres store driver needs DATABASE_URL');
  const schema = options.schema;
  if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
    throw new BitBratError('CONFIG_INVALID', `postgres schema name "${schema}" must be a plain identifier (letters, digits, underscore)`);
  }
  return createSqlStore({
    driver: 'postgres',
    schema,
    options,
    loadCipher: () => loadTokenCipher(options),
    open: async () => postgresExecutor(databaseUrl, schema, options.logger),
  });
}

/** At most this many distinct statement texts are prepared; more would only be a mistake in the caller. */
const MAX_PREPARED_TEXTS = 200;

/**
 * Names for prepared statements (`query(…, { prepare: true })`): one per statement text, so node-postgres
 * parses it once per connection and PostgreSQL keeps its plan. A text whose prepared plan no longer fits
 * the table (its row type changed under it, e.g. a newer version migrated the schema while this process
 * runs) is run unprepared from then on.
 */
function createStatementNames() {
  const names = new Map<string, string>();
  const unprepared = new Set<string>();
  return {
    nameFor(text: string): string | undefined {
      let name = names.get(text);
      if (name === undefined && !unprepared.has(text) && names.size < MAX_PREPARED_TEXTS) {
        name = `bitbrat_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
        names.set(text, name);
      }
      return name;
    },
    /** True (and the text is unprepared from now on) when `error` says the prepared plan went stale. */
    stale(text: string, error: unknown): boolean {
      if (!isStalePlan(error)) return false;
      names.delete(text);
      unprepared.add(text);
      return true;
    },
  };
}

/** PostgreSQL refusing a prepared statement whose result columns changed since it was prepared. */
function isStalePlan(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && message.includes('cached plan must not change result type');
}

type PgRunner = { query(config: pg.QueryConfig): Promise<pg.QueryResult> };

/**
 * Runs a statement on a pool or client, prepared when asked. A stale prepared plan is run again unprepared
 * here, except inside a transaction (`retry` false), which the failed statement has aborted: the
 * transaction is then run again as a whole.
 */
async function runStatement(
  runner: PgRunner,
  statements: ReturnType<typeof createStatementNames>,
  text: string,
  params: unknown[] | undefined,
  options: SqlQueryOptions | undefined,
  retry: boolean,
) {
  const name = options?.prepare ? statements.nameFor(text) : undefined;
  if (name === undefined) return (await runner.query({ text, values: params })).rows;
  try {
    return (await runner.query({ name, text, values: params })).rows;
  } catch (error) {
    if (!statements.stale(text, error) || !retry) throw error;
    return (await runner.query({ text, values: params })).rows;
  }
}

function postgresExecutor(connectionString: string, schema: string | undefined, logger: CreateStoreOptions['logger']): SqlExecutor {
  const pool = new pg.Pool({
    connectionString,
    max: DEFAULT_POOL_SIZE,
    connectionTimeoutMillis: DEFAULT_CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: DEFAULT_IDLE_TIMEOUT_MS,
    keepAlive: true,
    // A startup parameter, so the search_path holds from the first statement on every connection.
    ...(schema ? { options: `-c search_path=${schema}` } : {}),
  });
  // Idle clients report a lost server here; without a listener the process would crash. The pool drops
  // the broken client and opens a new one on the next query, so the store comes back with the database.
  pool.on('error', (error) => logger?.warn({ err: error.message }, 'postgres idle connection lost'));
  let ended = false;
  const statements = createStatementNames();
  /** One transaction on one checked-out client: BEGIN, fn, COMMIT (ROLLBACK when fn throws). */
  const runTransaction = async <T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    // A checked-out client that loses its connection emits 'error' on itself; the failing query reports it.
    const onError = () => undefined;
    client.on('error', onError);
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await fn({
        query: async (sql, params, options) => ({ rows: await runStatement(client, statements, sql, params, options, false) }),
        exec: async (sql) => {
          await client.query(sql);
        },
      });
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: Error) => {
        broken = rollbackError;
      });
      throw error;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  };
  return {
    query: async (sql, params, options) => ({ rows: await runStatement(pool, statements, sql, params, options, true) }),
    exec: async (sql) => {
      await pool.query(sql);
    },
    transaction: async (fn) => {
      try {
        return await runTransaction(fn);
      } catch (error) {
        // A prepared statement went stale and aborted it: it runs unprepared now, so run it all again.
        if (!isStalePlan(error)) throw error;
        return await runTransaction(fn);
      }
    },
    close: async () => {
      if (ended) return;
      ended = true;
      await pool.end();
    },
  };
}
