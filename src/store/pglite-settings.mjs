// How the embedded database is opened, shared by its worker (pglite-worker.mjs) and the one-off process
// that creates a new data directory (pglite-init.mjs). Plain JavaScript for the same reason as the worker.
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

/** Opens PGlite on `dataDir` (in memory when undefined) with the settings above. */
export async function openPglite(dataDir) {
  return await PGlite.create(dataDir, { startParams: pgliteStartParams() });
}
