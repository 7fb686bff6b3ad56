import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { initializePgliteDir, openPgliteWorker } from '../../src/store/pglite.js';
import { PGLITE_SETTINGS } from '../../src/store/pglite-settings.mjs';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bitbrat-pglite-'));
  dirs.push(dir);
  return dir;
}

describe('embedded database settings and first start', () => {
  it('creates a new data directory in a child process, which the worker then opens with the embedded settings', async () => {
    const path = join(await tempDir(), 'pglite');
    await initializePgliteDir(path);
    expect(existsSync(join(path, 'PG_VERSION'))).toBe(true);
    const db = await openPgliteWorker(path);
    try {
      const { rows } = await db.query(
        "select name, current_setting(name) as value from unnest(array['shared_buffers', 'max_connections', 'temp_buffers']) as name",
      );
      expect(Object.fromEntries(rows.map((row) => [row.name, row.value]))).toEqual({
        shared_buffers: PGLITE_SETTINGS.shared_buffers,
        max_connections: PGLITE_SETTINGS.max_connections,
        temp_buffers: PGLITE_SETTINGS.temp_buffers,
      });
    } finally {
      await db.close();
    }
  });

  it('fails with STORE_UNAVAILABLE naming the directory when the database cannot be created there', async () => {
    const file = join(await tempDir(), 'not-a-dir');
    await writeFile(file, 'x');
    const path = join(file, 'pglite');
    await expect(initializePgliteDir(path)).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
      message: expect.stringContaining(`could not create the embedded database at ${path}`),
    });
  });
});
