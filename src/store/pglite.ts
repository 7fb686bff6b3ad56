/**
 * Embedded PostgreSQL (PGlite, WASM) for single-process deployments and tests. The database runs in its
 * own worker thread (`pglite-worker.mjs`): its CPU work — parsing, indexes, writing pages — then uses a
 * core of its own instead of sharing the event loop with every service in the process.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { BitBratError } from '../core/errors.js';
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
      if (dataDir === MEMORY_DATA_DIR) return await openPgliteWorker(undefined);
      const path = join(dataDir, 'pglite');
      await mkdir(path, { recursive: true });
      return await openPgliteWorker(path);
    },
  });
}

interface WorkerError {
  name: string;
  message: string;
  [field: string]: unknown;
}

type Reply = { id: number; ok: true; rows?: Record<string, any>[] } | { id: number; ok: false; error: WorkerError };

/** An error from the worker with PostgreSQL's fields (code, constraint, …) where mapSqlError reads them. */
function revive(error: WorkerError): Error {
  const { name, message, ...fields } = error;
  return Object.assign(new Error(message), { name }, fields);
}

/**
 * Opens PGlite in a worker thread and speaks to it by messages. Statements are sent as soon as they are
 * issued and run in order, so the services' writes queue in the worker rather than behind each other's
 * round trips. A transaction holds back everything issued after it until it commits or rolls back, so
 * no other statement lands inside it. The worker keeps the process alive only while a call is pending.
 */
export async function openPgliteWorker(path: string | undefined): Promise<SqlExecutor> {
  const worker = new Worker(new URL('./pglite-worker.mjs', import.meta.url), { workerData: { dataDir: path } });
  const pending = new Map<number, { resolve: (rows: Record<string, any>[]) => void; reject: (error: unknown) => void }>();
  let nextId = 1;
  let stopped: BitBratError | undefined;

  const fail = (reason: string) => {
    stopped ??= new BitBratError('STORE_UNAVAILABLE', `the embedded database stopped: ${reason}`, { retryable: true });
    for (const call of pending.values()) call.reject(stopped);
    pending.clear();
    worker.unref();
  };

  await new Promise<void>((resolve, reject) => {
    const onExit = (code: number) => reject(new BitBratError('STORE_UNAVAILABLE', `the embedded database worker exited (code ${code}) while opening`));
    worker.once('error', reject);
    worker.once('exit', onExit);
    worker.once('message', (message: { ready: boolean; error?: WorkerError }) => {
      worker.off('error', reject);
      worker.off('exit', onExit);
      if (message.ready) resolve();
      else reject(new BitBratError('STORE_UNAVAILABLE', `could not open the embedded database${path ? ` at ${path}` : ''}: ${message.error?.message}`, { cause: message.error && revive(message.error) }));
    });
  });
  worker.unref();
  worker.on('message', (reply: Reply) => {
    const call = pending.get(reply.id);
    if (!call) return;
    pending.delete(reply.id);
    if (pending.size === 0) worker.unref();
    if (reply.ok) call.resolve(reply.rows ?? []);
    else call.reject(revive(reply.error));
  });
  worker.on('error', (error) => fail(error.message));
  worker.on('exit', (code) => fail(`worker exited with code ${code}`));

  const call = (op: 'query' | 'exec' | 'close', sql?: string, params?: unknown[]) =>
    new Promise<Record<string, any>[]>((resolve, reject) => {
      if (stopped) return reject(stopped);
      const id = nextId++;
      if (pending.size === 0) worker.ref();
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, op, sql, params });
    });
  const direct: SqlQueryable = {
    query: async (sql, params) => ({ rows: await call('query', sql, (params ?? []).map((value) => (value === undefined ? null : value))) }),
    exec: async (sql) => {
      await call('exec', sql);
    },
  };

  // While a transaction runs, statements from outside it wait here.
  let gate: Promise<void> | undefined;
  const outside = async <T>(fn: () => Promise<T>): Promise<T> => {
    while (gate) await gate;
    return await fn();
  };

  return {
    query: (sql, params) => outside(() => direct.query(sql, params)),
    exec: (sql) => outside(() => direct.exec(sql)),
    transaction: (fn) =>
      outside(async () => {
        let open!: () => void;
        gate = new Promise<void>((resolve) => (open = resolve));
        try {
          await direct.exec('BEGIN');
          try {
            const result = await fn(direct);
            await direct.exec('COMMIT');
            return result;
          } catch (error) {
            await direct.exec('ROLLBACK').catch(() => undefined);
            throw error;
          }
        } finally {
          gate = undefined;
          open();
        }
      }),
    close: () =>
      outside(async () => {
        if (!stopped) await call('close');
        stopped ??= new BitBratError('STORE_UNAVAILABLE', 'PGlite is closed');
        await worker.terminate();
      }),
  };
}
