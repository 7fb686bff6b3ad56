/** Google's Cloud Firestore emulator (Java) on a free loopback port, for store tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

export const FIRESTORE_EMULATOR_DIR = '/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator';
const JAR = join(FIRESTORE_EMULATOR_DIR, 'cloud-firestore-emulator.jar');
const MAIN_CLASS = 'com.google.cloud.datastore.emulator.firestore.CloudFirestore';

export interface FirestoreEmulator {
  /** `127.0.0.1:<port>` for the Firestore client's `host` setting. */
  host: string;
  stop(): Promise<void>;
}

export function firestoreEmulatorInstalled(): boolean {
  return existsSync(JAR);
}

/** Starts the emulator JVM directly (not the launcher script) so that stopping it stops Java itself. */
export async function startFirestoreEmulator(options: { timeoutMs?: number } = {}): Promise<FirestoreEmulator> {
  if (!firestoreEmulatorInstalled()) throw new Error(`Firestore emulator not found at ${JAR}`);
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const child: ChildProcess = spawn('java', ['-Duser.language=en', '-Xss2m', '-cp', JAR, MAIN_CLASS, 'start', '--host', '127.0.0.1', '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );

  const stop = async () => {
    if (exited || child.pid === undefined) return;
    const signal = (name: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, name);
      } catch {
        // already gone
      }
    };
    signal('SIGTERM');
    const timer = setTimeout(() => signal('SIGKILL'), 5_000);
    await exit;
    clearTimeout(timer);
  };

  try {
    await Promise.race([
      waitFor(
        async () => {
          const response = await fetch(`http://${host}/`).catch(() => undefined);
          return response?.ok ?? false;
        },
        { timeoutMs: options.timeoutMs ?? 60_000, intervalMs: 200, message: `the Firestore emulator on ${host}` },
      ),
      exit.then(() => {
        throw new Error('the Firestore emulator exited during start-up');
      }),
    ]);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${output}`);
  }
  return { host, stop };
}
