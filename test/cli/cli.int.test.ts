import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadArchitecture } from '../../src/runtime/manifest.js';
import { SERVICE_NODE_FLAGS } from '../../src/runtime/node-flags.js';
import { startNatsServer } from '../support/nats-server.js';
import { sql } from '../support/pg-server.js';
import { runPostgresUrl } from '../support/run-postgres.js';
import { freePort, freePortBlock } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { spawnBitbrat } from '../support/bitbrat-process.js';

const BIN = path.resolve('bin/bitbrat.js');

function run(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
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

  it('dlq and commands say how to start the platform when nothing answers at its API', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-noapi-'));
    try {
      const env = { PORT: String(await freePort()), DATA_DIR: dataDir };
      for (const args of [
        ['dlq', 'list'],
        ['commands', 'list'],
      ]) {
        const result = await run(args, env);
        expect(result.code, args.join(' ')).toBe(1);
        expect(result.stderr).toContain(`bitbrat ${args[0]}: nothing answers at http://127.0.0.1:${env.PORT}`);
        expect(result.stderr).toContain('npm start');
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
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
    // Every npm package the process loads is written to a file: with nothing configured, no platform or cloud SDK may be among them.
    const traceFile = path.join(dataDir, 'packages.txt');
    const register = path.join(import.meta.dirname, '..', 'support', 'module-trace', 'register.mjs');
    const platform = spawnBitbrat(
      BIN,
      ['start'],
      { LOG_LEVEL: 'info', PORT: String(port), DATA_DIR: dataDir, MODULE_TRACE_FILE: traceFile },
      ['--import', register],
    );
    try {
      const ready = await platform.ready(port);
      const services = Object.keys(loadArchitecture().services);
      expect(services).toEqual(
        expect.arrayContaining([
          'auth',
          'event-router',
          'query-analyzer',
          'commands',
          'llm-bot',
          'persistence',
          'finalizer',
          'api-gateway',
          'ingress-egress',
        ]),
      );
      for (const service of services) {
        expect(
          Object.keys(ready.components).some((key) => key.startsWith(`${service}.`)),
          service,
        ).toBe(true);
      }
      const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { services: string[] };
      expect([...health.services].sort()).toEqual([...services].sort());
      const loaded = readFileSync(traceFile, 'utf8').split('\n').filter(Boolean);
      expect(loaded).toEqual(expect.arrayContaining(['fastify', '@electric-sql/pglite']));
      const sdks =
        /^(@twurple\/|@google-cloud\/|@ai-sdk\/|ai$|@modelcontextprotocol\/|discord\.js$|@discordjs\/|obs-websocket-js$|@opentelemetry\/sdk|@opentelemetry\/exporter|pg$|@nats-io\/|pino-pretty$)/;
      expect(loaded.filter((name) => sdks.test(name))).toEqual([]);
      expect(await platform.stop()).toBe(0);
      expect(platform.output()).toContain('stopped');
    } finally {
      await platform.stop('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 150_000);
});

describe('bitbrat commands and dlq against a running platform (embedded store, through the API)', () => {
  it('adds, lists and deletes a custom command, switches off and rewords a reaction, lists dead letters, and sends a chat message', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-ops-'));
    const port = await freePort();
    const env = { PORT: String(port), DATA_DIR: dataDir };
    const platform = spawnBitbrat(BIN, ['start'], { LOG_LEVEL: 'warn', ...env });
    try {
      await platform.ready(port);
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
      const off = await run(['reactions', 'set', 'follow', '--off', '--template', 'Welcome {user}!'], env);
      expect(off.code).toBe(0);
      expect(off.stdout).toMatch(/^follow +off +Welcome \{user\}!/);
      const reactions = await run(['reactions', 'list'], env);
      expect(reactions.stdout).toMatch(/^raid +on +\{raider\} is raiding with \{viewers\} viewers!/m);
      const bad = await run(['reactions', 'set', 'cheer', '--template', 'thanks {nobody}'], env);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('unknown variable {nobody}');
      const letters = await run(['dlq', 'list'], env);
      expect(letters.code).toBe(0);
      expect(letters.stdout).toContain('no dead letters');
      const missing = await run(['dlq', 'replay', 'dl-nope'], env);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('404');
    } finally {
      await platform.stop();
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

/** The live child processes of `pid`, with their command lines (Linux /proc). */
function childProcesses(pid: number): Array<{ pid: number; argv: string[] }> {
  const children: Array<{ pid: number; argv: string[] }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may contain spaces and parentheses, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== pid) continue;
      children.push({ pid: Number(entry), argv: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean) });
    } catch {
      // exited while we looked
    }
  }
  return children;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('bitbrat up and down (a process per service over NATS and PostgreSQL)', () => {
  it('runs every service in its own process, answers chat through them, restarts a killed one, and stops with bitbrat down', async () => {
    const nats = await startNatsServer();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-up-'));
    const database = `bitbrat_up_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;
    const services = Object.keys(loadArchitecture().services);
    const basePort = await freePortBlock(services.length);
    const env = {
      DATA_DIR: dataDir,
      PORT: String(basePort),
      NATS_URL: nats.url,
      DATABASE_URL: runPostgresUrl(database),
      LOG_LEVEL: 'info',
    };
    const logFile = path.join(dataDir, 'up.log');
    const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
    let upPid: number | undefined;
    try {
      const up = await run(['up', '--detach'], env);
      expect(up.stderr).toBe('');
      expect(up.code).toBe(0);
      expect(up.stdout).toContain('running in the background');
      upPid = (JSON.parse(await readFile(path.join(dataDir, 'up.json'), 'utf8')) as { pid: number }).pid;

      // api-gateway on PORT, the other services on the ports after it: every one answers /readyz.
      for (let port = basePort; port < basePort + services.length; port += 1) {
        await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200, {
          timeoutMs: 120_000,
          intervalMs: 250,
          message: `the service on port ${port} to be ready; log: ${log().slice(-3000)}`,
        });
      }
      const children = childProcesses(upPid);
      const byService = new Map(children.map((child) => [child.argv.at(-1)!, child]));
      expect([...byService.keys()].sort()).toEqual([...services].sort());
      for (const child of children) {
        expect(child.argv.slice(1, 1 + SERVICE_NODE_FLAGS.length), child.argv.join(' ')).toEqual(SERVICE_NODE_FLAGS);
        expect(child.argv.at(-2)).toBe('service');
      }

      // A chat message goes api-gateway → auth → router → query-analyzer → router → commands → back.
      const pong = await run(['send', '!ping', '--user', 'dana', '--timeout', '30000'], env);
      expect(pong.stderr).toBe('');
      expect(pong.stdout.trim()).toBe('pong');
      // … and the finalizer recorded it in PostgreSQL.
      const recorded = await waitFor(
        async () =>
          (
            await sql(
              runPostgresUrl(database),
              "SELECT outcome, reply_text, reply_delivered FROM events WHERE user_name = 'dana' AND outcome IS NOT NULL",
            )
          ).rows[0],
        { timeoutMs: 15_000, intervalMs: 100, message: 'the final record of the !ping' },
      );
      expect(recorded).toEqual({ outcome: 'completed', reply_text: 'pong', reply_delivered: true });

      // A service that dies is started again, and the pipeline works through the new process.
      const killed = byService.get('commands')!.pid;
      process.kill(killed, 'SIGKILL');
      await waitFor(() => /commands\s+\| exited \(SIGKILL\); restarting in \d+ ms/.test(log()), {
        timeoutMs: 10_000,
        intervalMs: 100,
        message: 'up to report the crash',
      });
      const restarted = await waitFor(
        () => childProcesses(upPid!).find((child) => child.argv.at(-1) === 'commands' && child.pid !== killed),
        {
          timeoutMs: 10_000,
          intervalMs: 100,
          message: 'a new commands process',
        },
      );
      expect(restarted.argv.slice(1, 1 + SERVICE_NODE_FLAGS.length)).toEqual(SERVICE_NODE_FLAGS);
      const again = await run(['send', '!ping', '--user', 'erin', '--timeout', '60000'], env);
      expect(again.stdout.trim()).toBe('pong');

      const down = await run(['down'], env);
      expect(down.code).toBe(0);
      expect(down.stdout).toContain('bitbrat down: stopped');
      expect(alive(upPid)).toBe(false);
      const servicePids = [...children.map((child) => child.pid), restarted.pid];
      expect(servicePids.filter(alive)).toEqual([]);
      expect(existsSync(path.join(dataDir, 'up.json'))).toBe(false);
      expect(log()).toContain('bitbrat up: stopping every service');
    } finally {
      // The detached supervisor leads its own process group, with its services in it.
      if (upPid !== undefined && alive(upPid)) process.kill(-upPid, 'SIGKILL');
      await nats.stop();
      await sql(runPostgresUrl(), `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 300_000);
});
