// The embedded database's own thread: one PGlite (WASM PostgreSQL) per worker, so the database's CPU
// work runs beside the services instead of between their messages. Plain JavaScript because a worker
// thread is a fresh module graph that the TypeScript loader does not always reach (tests, tsx).
//
// Protocol (see pglite.ts): the parent sends { id, op: 'query' | 'exec' | 'close', sql?, params? } and
// gets back { id, ok: true, rows? } or { id, ok: false, error }. The first message from here is
// { ready: true } once the database is open, or { ready: false, error } when it could not be opened.
// Requests run one at a time in the order they arrive; transactions are BEGIN/COMMIT statements the
// parent keeps together.
import { parentPort, workerData } from 'node:worker_threads';
import { openPglite } from './pglite-settings.mjs';

/** What crosses the thread boundary of an error: its message and PostgreSQL's fields. */
function serializeError(error) {
  const out = { name: error?.name ?? 'Error', message: error?.message ?? String(error) };
  for (const key of ['code', 'detail', 'hint', 'constraint', 'table', 'column', 'schema', 'severity', 'position']) {
    const value = error?.[key];
    if (typeof value === 'string' || typeof value === 'number') out[key] = value;
  }
  return out;
}

let db;
try {
  db = await openPglite(workerData?.dataDir || undefined);
} catch (error) {
  parentPort.postMessage({ ready: false, error: serializeError(error) });
  process.exit(1);
}

let tail = Promise.resolve();

/** Posts a reply; one that cannot be cloned (rows nested too deeply) becomes an error reply instead. */
function reply(message) {
  try {
    parentPort.postMessage(message);
  } catch (error) {
    parentPort.postMessage({ id: message.id, ok: false, error: serializeError(error) });
  }
}

async function handle({ id, op, sql, params }) {
  try {
    if (op === 'query') {
      const result = await db.query(sql, params);
      reply({ id, ok: true, rows: result.rows });
    } else if (op === 'exec') {
      await db.exec(sql);
      reply({ id, ok: true });
    } else if (op === 'close') {
      if (!db.closed) await db.close();
      reply({ id, ok: true });
    } else {
      reply({ id, ok: false, error: { name: 'Error', message: `unknown operation ${op}` } });
    }
  } catch (error) {
    reply({ id, ok: false, error: serializeError(error) });
  }
}

parentPort.on('message', (request) => {
  tail = tail.then(() => handle(request));
});
parentPort.postMessage({ ready: true });
