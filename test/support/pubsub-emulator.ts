import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { canConnect, freePort } from './ports.js';

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

/** The java binary: $JAVA_HOME/bin/java or `java` on PATH. */
export function javaBinary(): string | undefined {
  const candidates = [process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : undefined, ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'java'))];
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
  if (!java || !jar) throw new Error(`Pub/Sub emulator not available (java: ${java ?? 'missing'}, jar: ${jar ?? `missing under ${SDK_EMULATOR_DIR}/lib`})`);
  const port = await freePort();
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  let log = '';
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const killGroup = (proc: ChildProcess, signal: NodeJS.Signals) => {
    if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
    try {
      process.kill(-proc.pid, signal);
    } catch {
      proc.kill(signal);
    }
  };

  const launch = async () => {
    // A small heap and the quick JIT: the machine is shared and the emulator needs little.
    const proc = spawn(java, ['-Xmx512m', '-XX:TieredStopAtLevel=1', '-jar', jar, '--host=127.0.0.1', `--port=${port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    child = proc;
    const append = (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-20_000);
    };
    proc.stdout!.on('data', append);
    proc.stderr!.on('data', append);
    let gone = false;
    exited = new Promise<void>((resolve) =>
      proc.once('exit', () => {
        gone = true;
        if (child === proc) child = undefined;
        resolve();
      }),
    );
    let early: Error | undefined;
    proc.once('error', (error) => (early = error));
    const before = log.length;
    const started = Date.now();
    for (;;) {
      if (early) throw early;
      if (gone) throw new Error(`Pub/Sub emulator exited during start-up:\n${log}`);
      if (/Server started, listening on/.test(log.slice(before)) && (await canConnect(port))) return;
      if (Date.now() - started > startTimeoutMs) {
        killGroup(proc, 'SIGKILL');
        throw new Error(`Pub/Sub emulator did not start within ${startTimeoutMs} ms:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  const stop = async () => {
    const proc = child;
    if (!proc) return;
    const gone = exited;
    killGroup(proc, 'SIGTERM');
    const timer = setTimeout(() => killGroup(proc, 'SIGKILL'), 5_000);
    await gone;
    clearTimeout(timer);
  };

  await launch();
  return {
    host: `127.0.0.1:${port}`,
    port,
    stop,
    async restart() {
      await stop();
      await launch();
    },
    output: () => log,
  };
}
