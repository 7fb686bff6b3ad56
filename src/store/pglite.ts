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
    throw new BitBratError(
      'STORE_UNAVAILABLE',
      `could not start the process that creates the embedded database at ${path}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  });
  if (code !== 0)
    throw new BitBratError(
      'STORE_UNAVAILABLE',
      `could not create the embedded database at ${path}: ${stderr.trim().split('\n')[0] || `exit code ${code}`}`,
    );
}

interface WorkerError {
  name: string;
  message: string;
  [field: string]: unknown;
}

type Reply = { id: number; ok: true; rows?: Record<string, any>[] } | { id: number; ok: false; error: WorkerError };

/** How long a statement may take before its call fails (the worker itself may still be busy with it). */
export const DEFAULT_PGLITE_CALL_TIMEOUT_MS = 60_000;
/** How long `close()` waits for the database to shut down cleanly before the worker is stopped. */
export const DEFAULT_PGLITE_CLOSE_TIMEOUT_MS = 5_000;

/** Options for {@link openPgliteWorker}. */
export interface PgliteWorkerOptions {
  /** Sees every worker started (tests use it to stop one). */
  onWorker?: (worker: Worker) => void;
  /** A call not answered in this time fails with STORE_UNAVAILABLE. Default {@link DEFAULT_PGLITE_CALL_TIMEOUT_MS}. */
  callTimeoutMs?: number;
  /** Bound on a clean shutdown in `close()`. Default {@link DEFAULT_PGLITE_CLOSE_TIMEOUT_MS}. */
  closeTimeoutMs?: number;
}

/** An error from the worker with PostgreSQL's fields (code, constraint, …) where mapSqlError reads them. */
function revive(error: WorkerError): Error {
  const { name, message, ...fields } = error;
  return Object.assign(new Error(message), { name }, fields);
}

/** One worker and the calls waiting on it; `down` is set once it has stopped. */
interface WorkerLink {
  readonly worker: Worker;
  /** Calls waiting for a reply, in the order they were sent (a Map keeps insertion order). */
  readonly pending: Map<number, { resolve: (rows: Record<string, any>[]) => void; reject: (error: unknown) => void }>;
  /** Ids sent and not yet answered, oldest first, including calls that already timed out. */
  readonly unanswered: number[];
  down?: BitBratError;
}

/** Starts a worker on `path` (in memory when undefined) and resolves once its database is open. */
async function startWorker(path: string | undefined, onWorker?: (worker: Worker) => void): Promise<WorkerLink> {
  const worker = new Worker(new URL('./pglite-worker.mjs', import.meta.url), { workerData: { dataDir: path } });
  onWorker?.(worker);
  const link: WorkerLink = { worker, pending: new Map(), unanswered: [] };
  await new Promise<void>((resolve, reject) => {
    const onExit = (code: number) =>
      reject(
        new BitBratError('STORE_UNAVAILABLE', `the embedded database worker exited (code ${code}) while opening`, { retryable: true }),
      );
    worker.once('error', reject);
    worker.once('exit', onExit);
    worker.once('message', (message: { ready: boolean; error?: WorkerError }) => {
      worker.off('error', reject);
      worker.off('exit', onExit);
      if (message.ready) resolve();
      else
        reject(
          new BitBratError(
            'STORE_UNAVAILABLE',
            `could not open the embedded database${path ? ` at ${path}` : ''}: ${message.error?.message}`,
            { cause: message.error && revive(message.error) },
          ),
        );
    });
  });
  worker.unref();
  const fail = (reason: string) => {
    link.down ??= new BitBratError('STORE_UNAVAILABLE', `the embedded database stopped: ${reason}`, { retryable: true });
    for (const call of link.pending.values()) call.reject(link.down);
    link.pending.clear();
    link.unanswered.length = 0;
    worker.unref();
  };
  const settle = (
    id: number,
    outcome: (call: { resolve: (rows: Record<string, any>[]) => void; reject: (error: unknown) => void }) => void,
  ) => {
    const call = link.pending.get(id);
    if (!call) return;
    link.pending.delete(id);
    if (link.pending.size === 0) worker.unref();
    outcome(call);
  };
  worker.on('message', (reply: Reply) => {
    // The worker answers strictly in the order it was asked: everything before this id was answered too.
    const at = link.unanswered.indexOf(reply.id);
    if (at >= 0) link.unanswered.splice(0, at + 1);
    settle(reply.id, (call) => (reply.ok ? call.resolve(reply.rows ?? []) : call.reject(revive(reply.error))));
  });
  // A reply that cannot be deserialized here (rows nested deeper than this thread's decoder goes) arrives
  // as 'messageerror' without its id; by that order it answers the oldest call not yet answered.
  worker.on('messageerror', (error) => {
    const oldest = link.unanswered.shift();
    if (oldest === undefined) return;
    settle(oldest, (call) =>
      call.reject(
        new BitBratError(
          'STORE_CONSTRAINT',
          `the embedded database's reply could not be read (${error.message}); the rows are probably nested too deeply`,
          { cause: error },
        ),
      ),
    );
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
export async function openPgliteWorker(path: string | undefined, options: PgliteWorkerOptions = {}): Promise<SqlExecutor> {
  const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_PGLITE_CALL_TIMEOUT_MS;
  const closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_PGLITE_CLOSE_TIMEOUT_MS;
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
        throw new BitBratError(
          'STORE_UNAVAILABLE',
          `could not restart the embedded database: ${error instanceof Error ? error.message : String(error)}`,
          { retryable: true, cause: error },
        );
      })
      .finally(() => (restarting = undefined));
    return await restarting;
  };

  /** Every call settles: with the reply, the worker's failure, or after `timeoutMs` with STORE_UNAVAILABLE. */
  const send = (target: WorkerLink, op: 'query' | 'exec' | 'close', sql?: string, params?: unknown[], timeoutMs = callTimeoutMs) =>
    new Promise<Record<string, any>[]>((resolve, reject) => {
      if (target.down) return reject(target.down);
      const id = nextId++;
      const timer = setTimeout(() => {
        if (!target.pending.delete(id)) return;
        if (target.pending.size === 0) target.worker.unref();
        reject(new BitBratError('STORE_UNAVAILABLE', `the embedded database did not answer within ${timeoutMs} ms`, { retryable: true }));
      }, timeoutMs);
      timer.unref();
      const done = {
        resolve: (rows: Record<string, any>[]) => (clearTimeout(timer), resolve(rows)),
        reject: (error: unknown) => (clearTimeout(timer), reject(error)),
      };
      if (target.pending.size === 0) target.worker.ref();
      target.pending.set(id, done);
      try {
        target.worker.postMessage({ id, op, sql, params });
        target.unanswered.push(id);
      } catch (error) {
        // Parameters that cannot be cloned never reach the worker.
        target.pending.delete(id);
        if (target.pending.size === 0) target.worker.unref();
        done.reject(
          new BitBratError(
            'STORE_CONSTRAINT',
            `a statement's parameters could not be sent to the embedded database: ${(error as Error).message}`,
            { cause: error },
          ),
        );
      }
    });
  const queryable = (run: (op: 'query' | 'exec', sql: string, params?: unknown[]) => Promise<Record<string, any>[]>): SqlQueryable => ({
    query: async (sql, params) => ({
      rows: await run(
        'query',
        sql,
        (params ?? []).map((value) => (value === undefined ? null : value)),
      ),
    }),
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
        // Bounded: a worker stuck in a statement must not hold up the process's shutdown.
        if (!link.down) await send(link, 'close', undefined, undefined, closeTimeoutMs).catch(() => undefined);
        await link.worker.terminate();
      }),
  };
}
