import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canConnect, freePort } from './ports.js';
import { findExecutable, serverProcess } from './server-process.js';

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
  return findExecutable('nats-server', [process.env.NATS_SERVER_BIN, DEFAULT_BINARY]);
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
  const server = serverProcess({
    name: 'nats-server',
    command: binary,
    args: ['-js', '-sd', storeDir, '-a', '127.0.0.1', '-p', String(port)],
    // JetStream is enabled before the client listener opens, so accepting connections means ready.
    ready: async (output) => /Server is ready/.test(output) && (await canConnect(port)),
    startTimeoutMs: options.startTimeoutMs ?? 10_000,
    stopGraceMs: 10_000,
  });
  try {
    await server.start();
  } catch (error) {
    rmSync(storeDir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async stop() {
      await server.stop('SIGTERM');
      rmSync(storeDir, { recursive: true, force: true });
    },
    kill: () => server.stop('SIGKILL'),
    async restart() {
      await server.stop('SIGTERM');
      await server.start();
    },
    output: server.output,
  };
}
