import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { generatedSchemaFiles } from '../core/index.js';
import { PROJECT_ROOT } from '../runtime/manifest.js';

/** Writes schemas/*.json from the zod schemas, or with `check` reports which files are stale. */
export async function writeSchemaFiles(check: boolean): Promise<number> {
  const stale: string[] = [];
  for (const [name, content] of Object.entries(generatedSchemaFiles())) {
    const file = path.join(PROJECT_ROOT, 'schemas', name);
    const current = await readFile(file, 'utf8').catch(() => undefined);
    if (current === content) continue;
    if (check) stale.push(name);
    else {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, content);
      process.stdout.write(`wrote schemas/${name}\n`);
    }
  }
  if (check && stale.length) {
    process.stderr.write(`stale schema files: ${stale.join(', ')}; run "npm run schemas"\n`);
    return 1;
  }
  return 0;
}
