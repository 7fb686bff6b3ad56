/** PostgreSQL server driver (node-postgres Pool). */
import pg from 'pg';
import { BitBratError } from '../core/errors.js';
import { loadTokenCipher } from './crypto.js';
import { createSqlStore, type SqlExecutor } from './sql.js';
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
  return {
    query: async (sql, params) => {
      const result = await pool.query(sql, params as unknown[] | undefined);
      return { rows: result.rows };
    },
    exec: async (sql) => {
      await pool.query(sql);
    },
    transaction: async (fn) => {
      const client = await pool.connect();
      // A checked-out client that loses its connection emits 'error' on itself; the failing query reports it.
      const onError = () => undefined;
      client.on('error', onError);
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn({
          query: async (sql, params) => ({ rows: (await client.query(sql, params as unknown[] | undefined)).rows }),
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
    },
    close: async () => {
      if (ended) return;
      ended = true;
      await pool.end();
    },
  };
}
