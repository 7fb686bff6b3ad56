/**
 * PostgreSQL for tests: a private throw-away instance (initdb + pg_ctl, stoppable for outage tests) and
 * the machine's shared server at 127.0.0.1:5432 (one schema per test run).
 */
import { execFile } from 'node:child_process';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports.js';

const run = promisify(execFile);
export const PG_BIN = '/usr/lib/postgresql/15/bin';
export const SHARED_POSTGRES_HOST = '127.0.0.1';
export const SHARED_POSTGRES_PORT = 5432;

export interface PostgresInstance {
  url: string;
  port: number;
  /** The server's log (statements too when started with `log_statement=all`). */
  logFile: string;
  /** pg_ctl stop -m fast (the database goes away; the data stays). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and deletes its data. */
  dispose(): Promise<void>;
}

async function postgresIds(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const { stdout: uid } = await run('id', ['-u', 'postgres']);
  const { stdout: gid } = await run('id', ['-g', 'postgres']);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

/** Runs a PostgreSQL binary, as the `postgres` OS user when we are root (initdb refuses root). */
async function pgBin(asPostgres: boolean, binary: string, args: string[]): Promise<void> {
  const path = join(PG_BIN, binary);
  const [command, argv] = asPostgres ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
  try {
    await run(command, argv, { timeout: 60_000 });
  } catch (error) {
    const failure = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`${binary} ${args.join(' ')} failed: ${failure.message}\n${failure.stdout ?? ''}${failure.stderr ?? ''}`);
  }
}

/**
 * Starts a private PostgreSQL 15 on a free loopback port with trust auth and fsync off; `settings` adds
 * server settings (`name=value`), e.g. `log_statement=all`.
 */
export async function startPostgres(options: { settings?: string[] } = {}): Promise<PostgresInstance> {
  if (!existsSync(join(PG_BIN, 'initdb'))) throw new Error(`PostgreSQL binaries not found in ${PG_BIN}`);
  const ids = await postgresIds();
  const root = await mkdtemp(join(tmpdir(), 'bitbrat-pg-'));
  const dataDir = join(root, 'data');
  const socketDir = root;
  if (ids) await chown(root, ids.uid, ids.gid);
  await pgBin(Boolean(ids), 'initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const logFile = join(root, 'postgres.log');
  let running = false;
  const start = async () => {
    if (running) return;
    const extra = (options.settings ?? []).map((setting) => ` -c ${setting}`).join('');
    const settings = `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off${extra}`;
    await pgBin(Boolean(ids), 'pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', settings, 'start']);
    running = true;
  };
  const stop = async () => {
    if (!running) return;
    await pgBin(Boolean(ids), 'pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    running = false;
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    logFile,
    start,
    stop,
    dispose: async () => {
      await stop().catch(() => undefined);
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** URL of the machine's shared server (user postgres, trust). */
export function sharedPostgresUrl(database = 'postgres'): string {
  return `postgres://postgres@${SHARED_POSTGRES_HOST}:${SHARED_POSTGRES_PORT}/${database}`;
}

/** True when `url` accepts a connection and answers. */
export async function postgresAvailable(url = sharedPostgresUrl()): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A schema name unique to this run, e.g. `t_k3j9x2_ab12`. */
export function uniqueSchema(prefix = 't'): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Runs SQL against `url` on a one-off connection. */
export async function sql(url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await client.query(text, params);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function dropSchema(url: string, schema: string): Promise<void> {
  await sql(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}
