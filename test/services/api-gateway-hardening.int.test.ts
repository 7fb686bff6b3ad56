import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryBus } from '../../src/bus/index.js';
import { loadArchitecture, type Host } from '../../src/runtime/index.js';
import { newToken, service as gateway } from '../../src/services/api-gateway/index.js';
import { service as persistence } from '../../src/services/persistence/index.js';
import { service as finalizer } from '../../src/services/finalizer/index.js';
import { startTestHost } from '../support/harness.js';

let dataDir: string;
let host: Host;
let base: string;
let token: string;

beforeAll(async () => {
  dataDir = path.join(await mkdtemp(path.join(tmpdir(), 'bitbrat-hardening-')), 'data');
  // The embedded topology: PGlite in DATA_DIR, no configured tokens, so the gateway makes its own.
  host = await startTestHost({
    services: [persistence, finalizer, gateway],
    bus: createMemoryBus(),
    listen: true,
    architecture: loadArchitecture(),
    env: { HOST: '127.0.0.1', STORE_DRIVER: 'pglite', DATA_DIR: dataDir },
  });
  base = `http://127.0.0.1:${host.port}`;
  token = (await readFile(path.join(dataDir, 'gateway-token'), 'utf8')).trim();
});

afterAll(async () => {
  await host?.stop();
  await rm(path.dirname(dataDir), { recursive: true, force: true });
});

describe('files under DATA_DIR', () => {
  it('are readable by their owner only: the directory, the database directory and the gateway token', async () => {
    const modes: Record<string, string> = {};
    for (const name of ['.', ...(await readdir(dataDir))]) modes[name] = ((await stat(path.join(dataDir, name))).mode & 0o777).toString(8);
    expect(modes).toMatchObject({ '.': '700', pglite: '700', 'gateway-token': '600' });
    expect(Object.entries(modes).filter(([, mode]) => (Number.parseInt(mode, 8) & 0o077) !== 0)).toEqual([]);
  });
});

describe('generated tokens', () => {
  it('never start with a dash or an underscore, which a command line would read as an option', () => {
    // One base64url character in 32 is '-' or '_': 2,000 draws find one at the start almost surely.
    const firsts = new Set(Array.from({ length: 2_000 }, () => newToken()[0]));
    expect([...firsts].filter((first) => !/[A-Za-z0-9]/.test(first!))).toEqual([]);
    expect(newToken()).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]{31}$/);
  });
});

describe('API response headers', () => {
  it('mark API answers no-store and nosniff, for errors as well as successes', async () => {
    for (const headers of [{ authorization: `Bearer ${token}` }, {}] as Array<Record<string, string>>) {
      const response = await fetch(`${base}/api/me`, { headers });
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    }
  });

  it('accept a token in the URL only for GET requests, never for a change', async () => {
    expect((await fetch(`${base}/api/me?token=${token}`)).status).toBe(200);
    const change = await fetch(`${base}/api/commands?token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'hi', response: 'hello' }),
    });
    expect(change.status).toBe(400);
    expect(((await change.json()) as { message: string }).message).toMatch(/GET requests only/);
    const withHeader = await fetch(`${base}/api/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'hi', response: 'hello' }),
    });
    expect(withHeader.status).toBe(201);
  });

  it('let the dashboard connect to its own origin only', async () => {
    const response = await fetch(`${base}/`);
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("connect-src 'self';");
    expect(csp).not.toMatch(/connect-src[^;]*ws:/);
  });
});
