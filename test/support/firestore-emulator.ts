/** Google's Cloud Firestore emulator (Java) on a free loopback port, for store tests. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { javaBinary, serverProcess } from './server-process.js';

export const FIRESTORE_EMULATOR_DIR = '/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator';
const JAR = join(FIRESTORE_EMULATOR_DIR, 'cloud-firestore-emulator.jar');
const MAIN_CLASS = 'com.google.cloud.datastore.emulator.firestore.CloudFirestore';

export interface FirestoreEmulator {
  /** `127.0.0.1:<port>` for the Firestore client's `host` setting. */
  host: string;
  stop(): Promise<void>;
}

export function firestoreEmulatorInstalled(): boolean {
  return existsSync(JAR) && javaBinary() !== undefined;
}

/**
 * Starts the emulator JVM directly (not the launcher script) so that stopping it stops Java itself; it
 * runs in its own process group, so stopping it also takes down anything it spawned.
 */
export async function startFirestoreEmulator(options: { timeoutMs?: number } = {}): Promise<FirestoreEmulator> {
  const java = javaBinary();
  if (!existsSync(JAR) || !java)
    throw new Error(`Firestore emulator not available (java: ${java ?? 'missing'}, jar: ${existsSync(JAR) ? JAR : `missing at ${JAR}`})`);
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const emulator = serverProcess({
    name: `the Firestore emulator on ${host}`,
    command: java,
    args: ['-Duser.language=en', '-Xss2m', '-cp', JAR, MAIN_CLASS, 'start', '--host', '127.0.0.1', '--port', String(port)],
    group: true,
    ready: async () => (await fetch(`http://${host}/`).catch(() => undefined))?.ok ?? false,
    startTimeoutMs: options.timeoutMs ?? 60_000,
    stopGraceMs: 5_000,
    pollMs: 200,
  });
  await emulator.start();
  return { host, stop: () => emulator.stop() };
}
