import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compiledEntry } from '../../bin/compiled.js';
import { build } from '../../scripts/build.mjs';
import { freePort } from '../support/ports.js';
import { spawnBitbrat } from '../support/bitbrat-process.js';

const ROOT = path.resolve('.');
const made: string[] = [];
afterAll(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true });
});

async function scratch(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

describe('the compiled build', () => {
  it('is used only while it matches the sources: an edited, added or deleted source file sends the start back to the sources', async () => {
    const root = await scratch('bitbrat-build-unit-');
    mkdirSync(path.join(root, 'src', 'cli'), { recursive: true });
    mkdirSync(path.join(root, 'src', 'assets'), { recursive: true });
    writeFileSync(path.join(root, 'src', 'cli', 'main.ts'), 'export const answer: number = 42;\n');
    writeFileSync(path.join(root, 'src', 'assets', 'page.html'), '<p>hi</p>\n');
    expect(compiledEntry(root)).toBeUndefined();

    const result = await build(root);
    expect(result.files).toBe(1);
    const entry = compiledEntry(root)!;
    expect(entry).toBe(path.join(root, 'dist', 'src', 'cli', 'main.js'));
    expect(readFileSync(entry, 'utf8')).toContain('answer = 42');
    expect(readFileSync(entry, 'utf8')).not.toContain(': number');
    expect(readFileSync(path.join(root, 'dist', 'src', 'assets', 'page.html'), 'utf8')).toBe('<p>hi</p>\n');
    expect(existsSync(path.join(root, 'dist', 'src', 'cli', 'main.ts'))).toBe(false);

    // Edited: the same size, only a later modification time.
    const main = path.join(root, 'src', 'cli', 'main.ts');
    const later = new Date(Date.now() + 5_000);
    utimesSync(main, later, later);
    expect(compiledEntry(root)).toBeUndefined();
    await build(root);
    expect(compiledEntry(root)).toBe(entry);

    // Added, then deleted.
    writeFileSync(path.join(root, 'src', 'cli', 'extra.ts'), 'export {};\n');
    expect(compiledEntry(root)).toBeUndefined();
    await build(root);
    expect(compiledEntry(root)).toBe(entry);
    rmSync(path.join(root, 'src', 'cli', 'extra.ts'));
    expect(compiledEntry(root)).toBeUndefined();

    // A build that never finished (no build-info.json) is not used.
    await build(root);
    rmSync(path.join(root, 'dist', 'build-info.json'));
    expect(compiledEntry(root)).toBeUndefined();
  });

  it('runs the whole embedded platform without the TypeScript loader: services, default rules, dashboard and the database worker', async () => {
    // A copy of the project (the real node_modules linked in), so the build under test is this one.
    const root = await scratch('bitbrat-build-copy-');
    for (const part of ['src', 'bin', 'config', 'scripts', 'architecture.yaml', 'package.json']) {
      cpSync(path.join(ROOT, part), path.join(root, part), { recursive: true });
    }
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'), 'dir');
    await build(root);
    expect(compiledEntry(root)).toBeDefined();

    const dataDir = await scratch('bitbrat-build-data-');
    const traceFile = path.join(dataDir, 'packages.txt');
    const port = await freePort();
    const register = path.join(ROOT, 'test', 'support', 'module-trace', 'register.mjs');
    const platform = spawnBitbrat(
      path.join(root, 'bin', 'bitbrat.js'),
      ['start'],
      { LOG_LEVEL: 'info', LOG_FORMAT: 'json', PORT: String(port), DATA_DIR: dataDir, MODULE_TRACE_FILE: traceFile },
      ['--import', register],
    );
    try {
      await platform.ready(port, 'the compiled platform');
      const output = platform.output();
      // The default rules came from config/ at the project root, not from a path inside dist/.
      expect(output).toContain(path.join(root, 'config', 'rules.default.json'));
      expect(output).toMatch(/"msg":"seeded routing rules"/);
      // The dashboard's static files are served from the build.
      const page = await fetch(`http://127.0.0.1:${port}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<html');
      const loaded = readFileSync(traceFile, 'utf8').split('\n').filter(Boolean);
      expect(loaded).toEqual(expect.arrayContaining(['fastify', '@electric-sql/pglite']));
      expect(loaded).not.toContain('tsx');
      expect(loaded).not.toContain('esbuild');
    } finally {
      expect(await platform.stop()).toBe(0);
    }
  }, 120_000);

  it('runs from the sources through tsx when BITBRAT_FROM_SOURCE=1', async () => {
    const traceFile = path.join(await scratch('bitbrat-build-source-'), 'packages.txt');
    const register = path.join(ROOT, 'test', 'support', 'module-trace', 'register.mjs');
    const child = spawn(process.execPath, ['--import', register, path.join(ROOT, 'bin', 'bitbrat.js'), 'help'], {
      env: { ...process.env, BITBRAT_FROM_SOURCE: '1', MODULE_TRACE_FILE: traceFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (exit) => resolve(exit)));
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: bitbrat');
    expect(readFileSync(traceFile, 'utf8').split('\n')).toContain('tsx');
  });
});
