/**
 * `bitbrat up`: every service of the manifest as its own OS process over NATS and PostgreSQL, with
 * prefixed logs, restart of crashed services with backoff, and a graceful stop on Ctrl-C. `--detach`
 * keeps running in the background (state in DATA_DIR/up.json); `bitbrat down` stops it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { BitBratError } from '../core/index.js';
import { loadArchitecture, PROJECT_ROOT } from '../runtime/manifest.js';
import { SERVICE_NODE_FLAGS } from '../runtime/node-flags.js';
import { newToken } from '../services/api-gateway/auth.js';
import { parseFlags } from './flags.js';

const BIN = path.join(PROJECT_ROOT, 'bin', 'bitbrat.js');

export interface UpOptions {
  services: string[];
  natsUrl: string;
  databaseUrl: string;
  basePort: number;
  dataDir: string;
  prefix: string;
  env: Record<string, string | undefined>;
  /** Where prefixed log lines go (default stdout). */
  output?: (line: string) => void;
  restartInitialMs?: number;
  restartMaxMs?: number;
}

export interface ServiceProcess {
  name: string;
  port: number;
  child?: ChildProcess;
  restarts: number;
  startedAt?: number;
}

export interface UpHandle {
  processes: Map<string, ServiceProcess>;
  /** Resolves once every service answers /readyz. */
  ready(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
  apiUrl: string;
  token: string;
}

/** Secrets `up` generates once and keeps in DATA_DIR (the services run with a non-embedded store). */
async function upSecrets(dataDir: string) {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'up-secrets.json');
  let secrets = await readFile(file, 'utf8')
    .then((text) => JSON.parse(text) as Record<string, string>)
    .catch(() => undefined);
  if (!secrets) {
    secrets = {
      TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      OAUTH_STATE_SECRET: randomBytes(32).toString('hex'),
      API_GATEWAY_TOKENS: `${newToken()}:owner`,
    };
    await writeFile(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  }
  const token = secrets.API_GATEWAY_TOKENS!.split(',')[0]!.split(':')[0]!;
  await writeFile(path.join(dataDir, 'gateway-token'), token + '\n', { mode: 0o600 });
  return { secrets, token };
}

/** Creates the database named in the URL when the server does not have it yet. */
export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1)) || 'postgres';
  const admin = new URL(databaseUrl);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    throw new BitBratError('STORE_UNAVAILABLE', `cannot reach PostgreSQL at ${url.host}: ${(error as Error).message}`);
  }
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount)
      await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`).catch((error: { code?: string }) => {
        if (error.code !== '42P04') throw error; // created meanwhile
      });
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Starts the services; each crash is restarted with capped exponential backoff. */
export async function startUp(options: UpOptions): Promise<UpHandle> {
  const architecture = loadArchitecture();
  for (const name of options.services)
    if (!architecture.services[name])
      throw new BitBratError('UNKNOWN_SERVICE', `unknown service "${name}"; known: ${Object.keys(architecture.services).join(', ')}`);
  await ensureDatabase(options.databaseUrl);
  const { secrets, token } = await upSecrets(options.dataDir);
  const output = options.output ?? ((line: string) => process.stdout.write(line + '\n'));
  const width = Math.max(...options.services.map((name) => name.length));
  const processes = new Map<string, ServiceProcess>();
  let stopping = false;
  let nextPort = options.basePort + 1;
  for (const name of options.services)
    processes.set(name, { name, port: name === 'api-gateway' ? options.basePort : nextPort++, restarts: 0 });

  const launch = (entry: ServiceProcess) => {
    const env = {
      ...options.env,
      ...secrets,
      MESSAGE_BUS_DRIVER: 'nats',
      NATS_URL: options.natsUrl,
      BUS_PREFIX: options.prefix,
      STORE_DRIVER: 'postgres',
      DATABASE_URL: options.databaseUrl,
      DATA_DIR: options.dataDir,
      PORT: String(entry.port),
      INSTANCE_ID: `${entry.name}-1`,
      LOG_PRETTY: 'false',
    };
    const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, BIN, 'service', entry.name], {
      cwd: PROJECT_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    entry.child = child;
    entry.startedAt = Date.now();
    const label = `${entry.name.padEnd(width)} |`;
    const pipe = (stream: NodeJS.ReadableStream | null) => {
      let buffer = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        buffer += chunk;
        const lines = buffer.split('\n');
        buffer = lines.pop() ?? '';
        for (const line of lines) if (line) output(`${label} ${line}`);
      });
    };
    pipe(child.stdout);
    pipe(child.stderr);
    child.on('exit', (code, signal) => {
      if (entry.child === child) entry.child = undefined;
      if (stopping) return;
      // A service that ran a while before crashing starts again from the initial delay.
      if (entry.startedAt && Date.now() - entry.startedAt > 60_000) entry.restarts = 0;
      const delay = Math.min(options.restartMaxMs ?? 30_000, (options.restartInitialMs ?? 500) * 2 ** entry.restarts);
      entry.restarts += 1;
      output(`${label} exited (${signal ?? `code ${code}`}); restarting in ${delay} ms`);
      setTimeout(() => {
        if (!stopping) launch(entry);
      }, delay).unref();
    });
  };
  for (const entry of processes.values()) launch(entry);

  return {
    processes,
    apiUrl: `http://127.0.0.1:${options.basePort}`,
    token,
    async ready(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (const entry of processes.values()) {
        for (;;) {
          const ok = await fetch(`http://127.0.0.1:${entry.port}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
            (response) => response.ok,
            () => false,
          );
          if (ok) break;
          if (Date.now() > deadline)
            throw new BitBratError('NOT_CONFIGURED', `${entry.name} did not become ready on port ${entry.port} within ${timeoutMs} ms`);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    },
    async stop() {
      stopping = true;
      const exits = [...processes.values()].map((entry) => {
        const child = entry.child;
        if (!child || child.exitCode !== null) return Promise.resolve();
        return new Promise<void>((resolve) => {
          const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
          child.once('exit', () => {
            clearTimeout(force);
            resolve();
          });
          child.kill('SIGTERM');
        });
      });
      await Promise.all(exits);
    },
  };
}

function optionsFrom(values: Record<string, string | boolean | undefined>, env: Record<string, string | undefined>): UpOptions {
  const architecture = loadArchitecture();
  const services =
    typeof values.services === 'string'
      ? values.services
          .split(',')
          .map((name) => name.trim())
          .filter(Boolean)
      : Object.keys(architecture.services);
  const basePort = Number(values.port ?? env.PORT ?? 8080);
  if (!Number.isInteger(basePort) || basePort < 1 || basePort > 65_000)
    throw new BitBratError('BAD_REQUEST', 'bitbrat up: --port must be a port number');
  return {
    services,
    natsUrl: String(values['nats-url'] ?? env.NATS_URL ?? 'nats://127.0.0.1:4222'),
    databaseUrl: String(values['database-url'] ?? env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/bitbrat'),
    basePort,
    dataDir: path.resolve(env.DATA_DIR ?? './data'),
    prefix: env.BUS_PREFIX ?? '',
    env,
  };
}

const upFlags = {
  services: { type: 'string' },
  port: { type: 'string' },
  'nats-url': { type: 'string' },
  'database-url': { type: 'string' },
  detach: { type: 'boolean' },
} as const;

export async function upCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  const { values, positionals } = parseFlags('up', args, upFlags, false);
  void positionals;
  const options = optionsFrom(values, env);
  const stateFile = path.join(options.dataDir, 'up.json');
  if (values.detach) {
    mkdirSync(options.dataDir, { recursive: true });
    const logFile = path.join(options.dataDir, 'up.log');
    const out = openSync(logFile, 'a');
    const child = spawn(process.execPath, [BIN, 'up', ...args.filter((arg) => arg !== '--detach')], {
      cwd: process.cwd(),
      env: { ...process.env },
      detached: true,
      stdio: ['ignore', out, out],
    });
    child.unref();
    closeSync(out);
    await writeFile(stateFile, JSON.stringify({ pid: child.pid, startedAt: new Date().toISOString(), logFile }, null, 2));
    process.stdout.write(`bitbrat up is running in the background (pid ${child.pid}); logs in ${logFile}; stop it with "bitbrat down"\n`);
    return 0;
  }
  const handle = await startUp(options);
  process.stdout.write(
    `bitbrat up: ${options.services.length} services over NATS (${options.natsUrl}) and PostgreSQL; API and dashboard on ${handle.apiUrl}\n`,
  );
  await new Promise<void>((resolve) => {
    const onSignal = () => resolve();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  process.stdout.write('bitbrat up: stopping every service\n');
  await handle.stop();
  await rm(stateFile, { force: true });
  return 0;
}

export async function downCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  parseFlags('down', args, {}, false);
  const stateFile = path.join(path.resolve(env.DATA_DIR ?? './data'), 'up.json');
  const state = await readFile(stateFile, 'utf8')
    .then((text) => JSON.parse(text) as { pid: number })
    .catch(() => undefined);
  if (!state) {
    process.stderr.write(`bitbrat down: no detached "bitbrat up" found (${stateFile} is missing)\n`);
    return 1;
  }
  try {
    process.kill(state.pid, 'SIGTERM');
  } catch {
    await rm(stateFile, { force: true });
    process.stdout.write(`bitbrat down: process ${state.pid} was not running\n`);
    return 0;
  }
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      process.kill(state.pid, 0);
    } catch {
      await rm(stateFile, { force: true });
      process.stdout.write('bitbrat down: stopped\n');
      return 0;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  process.stderr.write(`bitbrat down: process ${state.pid} did not stop within 30 s\n`);
  return 1;
}
