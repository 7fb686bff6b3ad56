// Creates a new embedded database directory (initdb) in a process of its own, then exits. initdb runs
// a second WASM PostgreSQL beside the first and leaves ~190 MB the process never gives back to the
// system, even after the worker thread that ran it ends; a process that exits returns all of it.
//
// Usage: node pglite-init.mjs <dataDir>. Exits 0 once the directory holds a database; otherwise prints
// the error to stderr and exits 1.
import { openPglite } from './pglite-settings.mjs';

const dataDir = process.argv[2];
if (!dataDir) {
  process.stderr.write('usage: pglite-init.mjs <dataDir>\n');
  process.exit(2);
}
try {
  const db = await openPglite(dataDir);
  await db.close();
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
}
