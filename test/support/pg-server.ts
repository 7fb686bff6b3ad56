/**
 * PostgreSQL for tests and benchmarks: a private throw-away server (initdb into a temp dir, `postgres` on
 * a free loopback port, its unix socket in the same temp dir), never a server someone else started. The
 * test run shares one (see `run-postgres.ts`); outage tests start their own to stop and start.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { canConnect, freePort } from './ports.js';
import { findExecutable, serverProcess } from './server-process.js';

const run = promisify(execFile);
/** Where distributions install each major version (`/usr/lib/postgresql/<major>/bin`). */
const VERSIONED_ROOT = '/usr/lib/postgresql';

export interface PostgresInstance {
  url: string;
  port: number;
  /** The server's log (statements too when started with `log_statement=all`). */
  logFile: string;
  /** Fast shutdown (the database goes away; the data stays). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and deletes its data. */
  dispose(): Promise<void>;
}

/**
 * The directory holding `initdb` and `postgres`: the one of `initdb` on PATH, else the newest
 * `/usr/lib/postgresql/<major>/bin`; any major version will do.
 */
export function postgresBinDir(): string | undefined {
  const onPath = findExecutable('initdb');
  if (onPath && existsSync(join(dirname(onPath), 'postgres'))) return dirname(onPath);
  const majors = existsSync(VERSIONED_ROOT) ? readdirSync(VERSIONED_ROOT).filter((name) => /^\d+(\.\d+)?$/.test(name)) : [];
  majors.sort((a, b) => Number(b) - Number(a));
  for (const major of majors) {
    const bin = join(VERSIONED_ROOT, major, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  return undefined;
}

/**
 * Whom PostgreSQL runs as: nobody else when we are not root; as root (which initdb and postgres refuse)
 * the `postgres` OS user, or `nobody` where there is none.
 */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
      if (uid !== 0) return { uid, gid };
    } catch {
      // no such user: try the next one
    }
  }
  throw new Error('running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as');
}

export interface StartPostgresOptions {
  /** Extra server settings (`name=value`), e.g. `log_statement=all`. */
  settings?: string[];
  /** Keep fsync and synchronous commit on (benchmarks that should measure a real server's writes). */
  durable?: boolean;
}

/** Starts a private PostgreSQL on a free loopback port with trust auth; by default fsync is off. */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresInstance> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(`PostgreSQL server binaries not found: no initdb on PATH nor in ${VERSIONED_ROOT}/*/bin (install postgresql)`);
  const user = serverUser();
  const root = await mkdtemp(join(tmpdir(), 'bitbrat-pg-'));
  try {
    if (user) await chown(root, user.uid, user.gid);
    const dataDir = join(root, 'data');
    const initdbArgs = ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'];
    await run(join(bin, 'initdb'), initdbArgs, { timeout: 120_000, cwd: root, uid: user?.uid, gid: user?.gid }).catch(
      (error: Error & { stdout?: string; stderr?: string }) => {
        throw new Error(`initdb failed: ${error.message}\n${error.stdout ?? ''}${error.stderr ?? ''}`);
      },
    );
    const port = await freePort();
    const logFile = join(root, 'postgres.log');
    const fast = options.durable ? [] : ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off'];
    const settings = ['listen_addresses=127.0.0.1', `unix_socket_directories=${root}`, ...fast, ...(options.settings ?? [])];
    const server = serverProcess({
      name: 'PostgreSQL',
      command: join(bin, 'postgres'),
      args: ['-D', dataDir, '-p', String(port), ...settings.flatMap((setting) => ['-c', setting])],
      uid: user?.uid,
      gid: user?.gid,
      cwd: root,
      logFile,
      ready: async (output) => /ready to accept connections/.test(output) && (await canConnect(port)),
      startTimeoutMs: 60_000,
      // SIGINT is PostgreSQL's fast shutdown: SIGTERM would wait for every client to disconnect.
      stopSignal: 'SIGINT',
      stopGraceMs: 30_000,
    });
    let running = false;
    const start = async () => {
      if (running) return;
      await server.start();
      running = true;
    };
    const stop = async () => {
      if (!running) return;
      await server.stop();
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
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    throw error;
  }
}

/** True when `url` accepts a connection and answers. */
export async function postgresAvailable(url: string): Promise<boolean> {
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

/** `url` with another database name. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
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
