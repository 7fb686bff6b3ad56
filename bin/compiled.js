// Whether the compiled build in dist/ was made from the sources in src/ as they are now. `npm install`
// compiles src/ into dist/ (scripts/build.mjs) so a start skips transpiling TypeScript; a checkout edited
// since then runs from its sources instead, so what runs is always what is in src/.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** The file in dist/ that records which sources the build was made from. */
export const BUILD_INFO = 'build-info.json';

/**
 * A digest of the source tree's entries: every file's path, size and modification time, and every folder's
 * path, so that an edited, added, deleted or renamed file changes it. Reads metadata only (a few ms).
 * @param {string} srcDir
 * @returns {string}
 */
export function sourceSignature(srcDir) {
  const rows = [];
  for (const entry of readdirSync(srcDir, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath ?? entry.path, entry.name);
    const relative = path.relative(srcDir, full);
    if (entry.isDirectory()) rows.push(`d ${relative}`);
    else {
      const stat = statSync(full);
      rows.push(`f ${relative} ${stat.size} ${Math.trunc(stat.mtimeMs)}`);
    }
  }
  return createHash('sha256').update(rows.sort().join('\n')).digest('hex');
}

/**
 * The compiled CLI's entry file when dist/ holds a complete build of src/ as it is now; otherwise undefined.
 * @param {string} root the project root (holding src/ and dist/)
 * @returns {string | undefined}
 */
export function compiledEntry(root) {
  const entry = path.join(root, 'dist', 'src', 'cli', 'main.js');
  const infoFile = path.join(root, 'dist', BUILD_INFO);
  if (!existsSync(entry) || !existsSync(infoFile)) return undefined;
  try {
    const info = JSON.parse(readFileSync(infoFile, 'utf8'));
    return info.sources === sourceSignature(path.join(root, 'src')) ? entry : undefined;
  } catch {
    return undefined;
  }
}
