import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { canConnect, freePort } from './ports.js';

/** A nats-server with JetStream that a test started on loopback; the store lives in a temp dir. */
export interface NatsServerHandle {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Graceful shutdown (SIGTERM) and removal of the store dir. The handle is done afterwards. */
  stop(): Promise<void>;
  /** SIGKILL, keeping the store dir so `restart()` brings the same streams back. */
  kill(): Promise<void>;
  /** Stops the server if it runs (gracefully) and starts it again on the same port and store dir. */
  restart(): Promise<void>;
  /** The server's recent output, for failure messages. */
  output(): string;
}

const DEFAULT_BINARY = '/usr/sbin/nats-server';

/** Where the nats-server binary is: NATS_SERVER_BIN, /usr/sbin/nats-server, or on PATH. */
export function natsServerBinary(): string | undefined {
  const candidates = [process.env.NATS_SERVER_BIN, DEFAULT_BINARY, ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'nats-server'))];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/** True when a nats-server can be started here (the binary exists). */
export async function natsAvailable(): Promise<boolean> {
  return natsServerBinary() !== undefined;
}

/** Starts `nats-server -js` on a free loopback port and waits until it accepts connections. */
export async function startNatsServer(options: { port?: number; startTimeoutMs?: number } = {}): Promise<NatsServerHandle> {
  const binary = natsServerBinary();
  if (!binary) throw new Error('nats-server binary not found (set NATS_SERVER_BIN or install nats-server)');
  const port = options.port ?? (await freePort());
  const storeDir = mkdtempSync(join(tmpdir(), 'bitbrat-nats-'));
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  const launch = async () => {
    const proc = spawn(binary, ['-js', '-sd', storeDir, '-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const append = (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-20_000);
    };
    proc.stdout!.on('data', append);
    proc.stderr!.on('data', append);
    exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    let early: Error | undefined;
    proc.once('error', (error) => (early = error));
    void exited.then(() => {
      if (child === proc) child = undefined;
    });
    const started = Date.now();
    for (;;) {
      if (early) throw early;
      if (child !== proc) throw new Error(`nats-server exited during start-up:\n${log}`);
      // JetStream is enabled before the client listener opens, so accepting connections means ready.
      if (/Server is ready/.test(log) && (await canConnect(port))) return;
      if (Date.now() - started > startTimeoutMs) {
        proc.kill('SIGKILL');
        throw new Error(`nats-server did not start within ${startTimeoutMs} ms:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  const signal = async (sig: NodeJS.Signals) => {
    const proc = child;
    if (!proc) return;
    const gone = exited;
    proc.kill(sig);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  };

  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async stop() {
      await signal('SIGTERM');
      rmSync(storeDir, { recursive: true, force: true });
    },
    async kill() {
      await signal('SIGKILL');
    },
    async restart() {
      await signal('SIGTERM');
      await launch();
    },
    output: () => log,
  };
}
