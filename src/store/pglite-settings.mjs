// How the embedded database is opened, shared by its worker (pglite-worker.mjs) and the one-off process
// that creates a new data directory (pglite-init.mjs). Plain JavaScript for the same reason as the worker.
import { setFlagsFromString } from 'node:v8';
import { PGlite } from '@electric-sql/pglite';

/**
 * PostgreSQL settings for a single-user embedded database. PGlite's defaults are a server's: 128 MB of
 * shared buffers, which PostgreSQL touches while starting, so they cost 128 MB of resident memory before
 * the first query; and 100 connections' worth of lock and process tables for the one connection there
 * is. BitBrat's tables fit in a few MB, and the pages it reads again (recent events, tokens, commands)
 * fit in 16 MB.
 */
export const PGLITE_SETTINGS = Object.freeze({ shared_buffers: '16MB', max_connections: '4', temp_buffers: '1MB' });

/** PGlite's own start parameters plus PGLITE_SETTINGS as `-c name=value`. */
export function pgliteStartParams() {
  const defaults = PGlite.defaultStartParams ?? [];
  return [...defaults, ...Object.entries(PGLITE_SETTINGS).flatMap(([name, value]) => ['-c', `${name}=${value}`])];
}

/**
 * V8 compiles PostgreSQL's 9 MB of WebAssembly twice by default: at once with its baseline compiler
 * (Liftoff), then hot functions again with the optimizing one (TurboFan), keeping both. For the embedded
 * database's light load the second tier costs ~60 MB resident and seconds of CPU on a 2-core machine
 * while starting, and measured no faster over the first thousands of queries (on Node 24 the second tier
 * costs ~360 MB). The flag is process-wide (V8 has no per-isolate switch), and only PGlite uses
 * WebAssembly in a BitBrat process. It belongs on the command line (SERVICE_NODE_FLAGS): Node 24 freezes
 * V8's flags after start-up and ignores this call; on Node 20 it also covers processes started without
 * those flags (tests, `tsx`).
 */
export const PGLITE_V8_FLAGS = '--liftoff-only';

/** Opens PGlite on `dataDir` (in memory when undefined) with the settings above. */
export async function openPglite(dataDir) {
  setFlagsFromString(PGLITE_V8_FLAGS);
  return await PGlite.create(dataDir, { startParams: pgliteStartParams() });
}
