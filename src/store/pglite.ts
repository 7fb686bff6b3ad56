/** Embedded PostgreSQL (PGlite, WASM) for single-process deployments and tests. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { loadTokenCipher } from './crypto.js';
import { createSqlStore, type SqlExecutor, type SqlQueryable } from './sql.js';
import type { CreateStoreOptions, Store } from './types.js';

export const MEMORY_DATA_DIR = 'memory://';

/** PGlite store at `${dataDir}/pglite`, or in memory when dataDir is `memory://`. */
export function createPgliteStore(options: CreateStoreOptions): Store {
  const dataDir = options.dataDir ?? MEMORY_DATA_DIR;
  return createSqlStore({
    driver: 'pglite',
    options: { ...options, dataDir },
    loadCipher: () => loadTokenCipher({ ...options, dataDir }),
    open: async () => {
      if (dataDir === MEMORY_DATA_DIR) return pgliteExecutor(await PGlite.create());
      const path = join(dataDir, 'pglite');
      await mkdir(path, { recursive: true });
      return pgliteExecutor(await PGlite.create(path));
    },
  });
}

/**
 * PGlite runs one statement at a time in one backend. Top-level calls are queued here so that a
 * statement never interleaves with someone else's open transaction.
 */
function pgliteExecutor(db: PGlite): SqlExecutor {
  let tail: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
  const wrap = (target: Pick<PGlite, 'query' | 'exec'>): SqlQueryable => ({
    query: async (sql, params) => {
      const result = await target.query(sql, (params ?? []).map((value) => (value === undefined ? null : value)));
      return { rows: result.rows as Record<string, any>[] };
    },
    exec: async (sql) => {
      await target.exec(sql);
    },
  });
  const direct = wrap(db);
  return {
    query: (sql, params) => exclusive(() => direct.query(sql, params)),
    exec: (sql) => exclusive(() => direct.exec(sql)),
    transaction: (fn) => exclusive(() => db.transaction((tx) => fn(wrap(tx)))),
    close: () => exclusive(async () => {
      if (!db.closed) await db.close();
    }),
  };
}
