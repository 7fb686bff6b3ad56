import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { canConnect, freePort } from './ports.js';
import { javaBinary, serverProcess } from './server-process.js';

/** Google's Pub/Sub emulator (a JVM) that a test started on loopback. */
export interface PubSubEmulatorHandle {
  /** `127.0.0.1:<port>`: what PUBSUB_EMULATOR_HOST / the driver's emulatorHost expects. */
  readonly host: string;
  readonly port: number;
  /** Kills the JVM's whole process group and waits for it to exit. */
  stop(): Promise<void>;
  /** Stops it and starts a fresh one on the same port (the emulator keeps no state: everything is gone). */
  restart(): Promise<void>;
  /** The emulator's recent output, for failure messages. */
  output(): string;
}

const SDK_EMULATOR_DIR = '/usr/lib/google-cloud-sdk/platform/pubsub-emulator';

/** The emulator jar: PUBSUB_EMULATOR_JAR, or the newest `cloud-pubsub-emulator-*.jar` of the gcloud SDK. */
export function pubsubEmulatorJar(): string | undefined {
  if (process.env.PUBSUB_EMULATOR_JAR) return existsSync(process.env.PUBSUB_EMULATOR_JAR) ? process.env.PUBSUB_EMULATOR_JAR : undefined;
  const libDir = join(SDK_EMULATOR_DIR, 'lib');
  if (!existsSync(libDir)) return undefined;
  const jars = readdirSync(libDir)
    .filter((name) => /^cloud-pubsub-emulator-.*\.jar$/.test(name))
    .sort();
  return jars.length > 0 ? join(libDir, jars[jars.length - 1]!) : undefined;
}

/** True when the emulator can be started here (java and the emulator jar exist). */
export function pubsubEmulatorAvailable(): boolean {
  return javaBinary() !== undefined && pubsubEmulatorJar() !== undefined;
}

/**
 * Starts the emulator with the system java on a free loopback port and waits until it listens. The
 * JVM runs in its own process group so `stop()` takes down anything it spawned.
 */
export async function startPubSubEmulator(options: { startTimeoutMs?: number } = {}): Promise<PubSubEmulatorHandle> {
  const java = javaBinary();
  const jar = pubsubEmulatorJar();
  if (!java || !jar)
    throw new Error(`Pub/Sub emulator not available (java: ${java ?? 'missing'}, jar: ${jar ?? `missing under ${SDK_EMULATOR_DIR}/lib`})`);
  const port = await freePort();
  const emulator = serverProcess({
    name: 'the Pub/Sub emulator',
    command: java,
    // A small heap and the quick JIT: the machine is shared and the emulator needs little.
    args: ['-Xmx512m', '-XX:TieredStopAtLevel=1', '-jar', jar, '--host=127.0.0.1', `--port=${port}`],
    group: true,
    ready: async (output) => /Server started, listening on/.test(output) && (await canConnect(port)),
    startTimeoutMs: options.startTimeoutMs ?? 60_000,
    stopGraceMs: 5_000,
    pollMs: 50,
  });
  await emulator.start();
  return {
    host: `127.0.0.1:${port}`,
    port,
    stop: () => emulator.stop(),
    async restart() {
      await emulator.stop();
      await emulator.start();
    },
    output: emulator.output,
  };
}
