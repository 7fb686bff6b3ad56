import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const BIN = path.resolve('bin/bitbrat.js');

function run(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bitbrat ${args.join(' ')} timed out; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('bitbrat CLI', () => {
  it('prints help and exits 0', async () => {
    const result = await run(['help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('service <name>');
    expect(result.stdout).toContain('dlq replay <id>');
  });

  it('rejects an unknown command with a clear message and a non-zero exit', async () => {
    const result = await run(['frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('unknown command "frobnicate"');
  });

  it('rejects an unknown service name, listing the known ones', async () => {
    const result = await run(['service', 'no-such-service']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('unknown service "no-such-service"');
    expect(result.stderr).toContain('api-gateway');
  });

  it('rejects bad flags', async () => {
    const result = await run(['start', '--colour', 'blue']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--colour/);
  });

  it('fails at start-up with every config problem listed', async () => {
    const result = await run(['service', 'auth'], { PORT: 'abc', MESSAGE_BUS_DRIVER: 'carrier-pigeon' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('PORT');
    expect(result.stderr).toContain('MESSAGE_BUS_DRIVER');
  });

  it('the generated JSON Schemas are in sync with the zod schemas', async () => {
    const result = await run(['schema', 'write', '--check']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('bitbrat start runs every service in one process, ready on one port, and stops on SIGTERM', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-start-'));
    const port = await freePort();
    const child = spawn(process.execPath, [BIN, 'start'], { env: { ...process.env, LOG_LEVEL: 'info', PORT: String(port), DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    try {
      const ready = await waitFor(async () => {
        const response = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return response?.status === 200 ? ((await response.json()) as { components: Record<string, { ready: boolean }> }) : undefined;
      }, { timeoutMs: 90_000, intervalMs: 250, message: `bitbrat start to be ready; output: ${output.slice(-2000)}` });
      for (const service of ['auth', 'event-router', 'query-analyzer', 'commands', 'llm-bot', 'persistence', 'finalizer', 'api-gateway', 'ingress-egress']) {
        expect(Object.keys(ready.components).some((key) => key.startsWith(`${service}.`)), service).toBe(true);
      }
      const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { services: string[] };
      expect(health.services).toHaveLength(10);
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(output).toContain('stopped');
    } finally {
      child.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 150_000);
});

describe('bitbrat commands and dlq against a running platform (embedded store, through the API)', () => {
  it('adds, lists and deletes a custom command, lists dead letters, and sends a chat message', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-ops-'));
    const port = await freePort();
    const env = { PORT: String(port), DATA_DIR: dataDir };
    const child = spawn(process.execPath, [BIN, 'start'], { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200, { timeoutMs: 90_000, intervalMs: 250, message: `ready; output: ${output.slice(-1500)}` });
      const add = await run(['commands', 'add', '!discord', '-cd=0', 'Join', 'us', 'at', 'example.org/{user}'], env);
      expect(add.stderr).toBe('');
      expect(add.code).toBe(0);
      const list = await run(['commands', 'list'], env);
      expect(list.stdout).toContain('!discord');
      expect(list.stdout).toContain('Join us at example.org/{user}');
      const reply = await run(['send', '!discord', '--user', 'carol'], env);
      expect(reply.stdout.trim()).toBe('Join us at example.org/carol');
      const pong = await run(['send', '!ping'], env);
      expect(pong.stdout.trim()).toBe('pong');
      const removed = await run(['commands', 'delete', '!discord'], env);
      expect(removed.code).toBe(0);
      expect((await run(['commands', 'list'], env)).stdout).not.toContain('!discord');
      const letters = await run(['dlq', 'list'], env);
      expect(letters.code).toBe(0);
      expect(letters.stdout).toContain('no dead letters');
      const missing = await run(['dlq', 'replay', 'dl-nope'], env);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('404');
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.on('exit', resolve));
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('bitbrat infra generate', () => {
  it('writes compose and Terraform into --out, and --check reports the repository copy in sync', async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'bitbrat-infra-'));
    try {
      const generated = await run(['infra', 'generate', '--out', out]);
      expect(generated.code).toBe(0);
      expect(generated.stdout).toContain('compose.yaml');
      expect(generated.stdout).toMatch(/terraform\//);
      const inRepo = await run(['infra', 'generate', '--check']);
      expect(inRepo.stderr).toBe('');
      expect(inRepo.code).toBe(0);
      const bad = await run(['infra', 'deploy']);
      expect(bad.code).toBe(2);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
