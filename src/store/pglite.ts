/**
 * Embedded PostgreSQL (PGlite, WASM) for single-process deployments and tests. The database runs in its
 * own worker thread (`pglite-worker.mjs`): its CPU work — parsing, indexes, writing pages — then uses a
 * core of its own instead of sharing the event loop with every service in the process.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ensurePrivateDir } from './common.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
      await ensurePrivateDir(dataDir);
      await ensurePrivateDir(path);
      if (!existsSync(join(path, 'PG_VERSION'))) await initializePgliteDir(path);
      return await openPgliteWorker(path);
    },
  });
}

/**
 * Creates the database in a new data directory in a child process that exits when done
 * (`pglite-init.mjs`), so the memory initdb takes is returned to the system instead of staying with
 * the platform for as long as it runs.
 */
export async function initializePgliteDir(path: string): Promise<void> {
  const script = fileURLToPath(new URL('./pglite-init.mjs', import.meta.url));
  // --liftoff-only as in SERVICE_NODE_FLAGS (see pglite-settings.mjs): initdb's WebAssembly compiled once.
  const child = spawn(process.execPath, ['--liftoff-only', script, path], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (exitCode) => resolve(exitCode));
  }).catch((error: unknown) => {
    throw new BitBratError('STORE_UNAVAILABLE', `could not start the process that creates the embedded database at ${path}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  });
  if (code !== 0) throw new BitBratError('STORE_UNAVAILABLE', `could not create the embedded database at ${path}: ${stderr.trim().split('\n')[0] || `exit code ${code}`}`);
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

/** One worker and the calls waiting on it; `down` is set once it has stopped. */
interface WorkerLink {
  readonly worker: Worker;
  readonly pending: Map<number, { resolve: (rows: Record<string, any>[]) => void; reject: (error: unknown) => void }>;
  down?: BitBratError;
}

/** Starts a worker on `path` (in memory when undefined) and resolves once its database is open. */
async function startWorker(path: string | undefined, onWorker?: (worker: Worker) => void): Promise<WorkerLink> {
  const worker = new Worker(new URL('./pglite-worker.mjs', import.meta.url), { workerData: { dataDir: path } });
  onWorker?.(worker);
  const link: WorkerLink = { worker, pending: new Map() };
  await new Promise<void>((resolve, reject) => {
    const onExit = (code: number) => reject(new BitBratError('STORE_UNAVAILABLE', `the embedded database worker exited (code ${code}) while opening`, { retryable: true }));
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
  const fail = (reason: string) => {
    link.down ??= new BitBratError('STORE_UNAVAILABLE', `the embedded database stopped: ${reason}`, { retryable: true });
    for (const call of link.pending.values()) call.reject(link.down);
    link.pending.clear();
    worker.unref();
  };
  worker.on('message', (reply: Reply) => {
    const call = link.pending.get(reply.id);
    if (!call) return;
    link.pending.delete(reply.id);
    if (link.pending.size === 0) worker.unref();
    if (reply.ok) call.resolve(reply.rows ?? []);
    else call.reject(revive(reply.error));
  });
  worker.on('error', (error) => fail(error.message));
  worker.on('exit', (code) => fail(`worker exited with code ${code}`));
  return link;
}

/**
 * Opens PGlite in a worker thread and speaks to it by messages. Statements are sent as soon as they are
 * issued and run in order, so the services' writes queue in the worker rather than behind each other's
 * round trips. A transaction holds back everything issued after it until it commits or rolls back, so
 * no other statement lands inside it. The worker keeps the process alive only while a call is pending.
 *
 * If the worker dies, the calls waiting on it fail with STORE_UNAVAILABLE (the runtime holds their
 * messages) and, for a database on disk, the next call starts a new worker on the same data, which
 * PostgreSQL recovers from its write-ahead log. An in-memory database has nothing to come back to and
 * stays unavailable. `onWorker` sees every worker started (tests use it to stop one).
 */
export async function openPgliteWorker(path: string | undefined, options: { onWorker?: (worker: Worker) => void } = {}): Promise<SqlExecutor> {
  let link = await startWorker(path, options.onWorker);
  let closed: BitBratError | undefined;
  let restarting: Promise<WorkerLink> | undefined;
  let nextId = 1;

  /** The worker to use: the current one, or after a crash a new one on the same data. */
  const live = async (): Promise<WorkerLink> => {
    if (closed) throw closed;
    if (!link.down || path === undefined) return link;
    restarting ??= startWorker(path, options.onWorker)
      .then((fresh) => {
        if (closed) {
          void fresh.worker.terminate();
          throw closed;
        }
        return (link = fresh);
      })
      .catch((error: unknown) => {
        if (error instanceof BitBratError) throw error;
        throw new BitBratError('STORE_UNAVAILABLE', `could not restart the embedded database: ${error instanceof Error ? error.message : String(error)}`, { retryable: true, cause: error });
      })
      .finally(() => (restarting = undefined));
    return await restarting;
  };

  const send = (target: WorkerLink, op: 'query' | 'exec' | 'close', sql?: string, params?: unknown[]) =>
    new Promise<Record<string, any>[]>((resolve, reject) => {
      if (target.down) return reject(target.down);
      const id = nextId++;
      if (target.pending.size === 0) target.worker.ref();
      target.pending.set(id, { resolve, reject });
      target.worker.postMessage({ id, op, sql, params });
    });
  const queryable = (run: (op: 'query' | 'exec', sql: string, params?: unknown[]) => Promise<Record<string, any>[]>): SqlQueryable => ({
    query: async (sql, params) => ({ rows: await run('query', sql, (params ?? []).map((value) => (value === undefined ? null : value))) }),
    exec: async (sql) => {
      await run('exec', sql);
    },
  });
  const direct = queryable(async (op, sql, params) => send(await live(), op, sql, params));

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
          // Every statement of the transaction goes to the worker that began it: if that one dies, the
          // rest fail instead of running outside the transaction on its successor.
          const target = await live();
          const tx = queryable((op, sql, params) => send(target, op, sql, params));
          await tx.exec('BEGIN');
          try {
            const result = await fn(tx);
            await tx.exec('COMMIT');
            return result;
          } catch (error) {
            await tx.exec('ROLLBACK').catch(() => undefined);
            throw error;
          }
        } finally {
          gate = undefined;
          open();
        }
      }),
    close: () =>
      outside(async () => {
        if (closed) return;
        closed = new BitBratError('STORE_UNAVAILABLE', 'PGlite is closed');
        await restarting?.catch(() => undefined);
        if (!link.down) await send(link, 'close').catch(() => undefined);
        await link.worker.terminate();
      }),
  };
}
