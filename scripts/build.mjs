// Compiles src/ into dist/src/ (one JavaScript file per TypeScript file, the same transform tsx applies at
// run time, so behaviour is the same) and copies the other files of src/ (dashboard assets, worker scripts)
// beside them. Run by `npm install` (the prepare script) and `npm run build`. The new build is written to a
// temporary folder and moved into place, so a process starting meanwhile sees the old build, or none and
// runs the sources; dist/build-info.json records which sources it was made from (bin/compiled.js).
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILD_INFO, sourceSignature } from '../bin/compiled.js';

/**
 * Builds `<root>/src` into `<root>/dist`; returns the number of compiled files and the time taken.
 * @param {string} root
 */
export async function build(root) {
  const began = performance.now();
  const srcDir = path.join(root, 'src');
  const sources = sourceSignature(srcDir);
  const files = readdirSync(srcDir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name));
  const typescript = files.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'));
  const staging = path.join(root, `dist.building-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  const { build: esbuild } = await import('esbuild');
  await esbuild({
    entryPoints: typescript,
    outdir: path.join(staging, 'src'),
    outbase: srcDir,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    bundle: false,
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'warning',
    absWorkingDir: root,
  });
  for (const file of files) {
    if (file.endsWith('.ts')) continue;
    const target = path.join(staging, 'src', path.relative(srcDir, file));
    mkdirSync(path.dirname(target), { recursive: true });
    cpSync(file, target);
  }
  writeFileSync(
    path.join(staging, BUILD_INFO),
    `${JSON.stringify({ sources, files: typescript.length, builtAt: new Date().toISOString() }, null, 2)}\n`,
  );
  const dist = path.join(root, 'dist');
  const old = path.join(root, `dist.old-${process.pid}`);
  if (existsSync(dist)) renameSync(dist, old);
  renameSync(staging, dist);
  rmSync(old, { recursive: true, force: true });
  return { files: typescript.length, ms: Math.round(performance.now() - began) };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  if (!existsSync(path.join(root, 'src'))) {
    // An image build installs dependencies before it copies the sources; it runs the build afterwards.
    process.stdout.write('build: no src/ yet, nothing to compile\n');
  } else {
    const { files, ms } = await build(root);
    process.stdout.write(`build: compiled ${files} files into dist/ in ${ms} ms\n`);
  }
}
