/** A server binary a test starts, waits for, signals and restarts: nats-server and the Google emulators. */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The first candidate that is an executable file; `name` on PATH is tried after them. */
export function findExecutable(name: string, candidates: Array<string | undefined> = []): string | undefined {
  for (const candidate of [...candidates, ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, name))]) {
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

/** The java binary: $JAVA_HOME/bin/java or `java` on PATH. */
export function javaBinary(): string | undefined {
  return findExecutable('java', [process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : undefined]);
}

export interface ServerProcessOptions {
  /** For messages: "nats-server", "the Pub/Sub emulator". */
  name: string;
  command: string;
  args: string[];
  /** Run it as the leader of its own process group and signal the group (a JVM that starts children). */
  group?: boolean;
  /** True once the server serves; gets what it printed since this launch. */
  ready: (output: string) => boolean | Promise<boolean>;
  startTimeoutMs: number;
  /** After the graceful signal, how long until SIGKILL. */
  stopGraceMs: number;
  /** The signal `stop()` sends by default; SIGTERM unless set (PostgreSQL's fast shutdown is SIGINT). */
  stopSignal?: NodeJS.Signals;
  /** Run it as this OS user and group (only root can; PostgreSQL refuses to run as root). */
  uid?: number;
  gid?: number;
  /** Its working directory (one the `uid` can enter). */
  cwd?: string;
  /**
   * Its output goes straight to this file (appended) instead of a pipe, so the file holds every line by
   * the time the server acts on it (a test that reads a statement log right after the statement).
   */
  logFile?: string;
  pollMs?: number;
}

export interface ServerProcess {
  /** Launches it and waits until `ready`; on exit or timeout during start-up, throws with its output. */
  start(): Promise<void>;
  /**
   * Sends `signal` (by default the graceful `stopSignal`, followed by SIGKILL after the grace time) and
   * waits for the exit.
   */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Its recent output, for failure messages. */
  output(): string;
}

export function serverProcess(options: ServerProcessOptions): ServerProcess {
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';
  /** What the current launch printed: `log` also holds the previous launch's, "ready" lines included. */
  let launchLog = '';

  const send = (proc: ChildProcess, signal: NodeJS.Signals) => {
    if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
    try {
      if (options.group) process.kill(-proc.pid, signal);
      else proc.kill(signal);
    } catch {
      proc.kill(signal);
    }
  };

  const stop = async (signal: NodeJS.Signals = options.stopSignal ?? 'SIGTERM') => {
    const proc = child;
    if (!proc) return;
    const gone = exited;
    send(proc, signal);
    const timer = signal !== 'SIGKILL' ? setTimeout(() => send(proc, 'SIGKILL'), options.stopGraceMs) : undefined;
    await gone;
    clearTimeout(timer);
  };

  /** The log file's tail from `offset` on, as the launch log and the recent output. */
  const readLogFile = (offset: number) => {
    if (!options.logFile) return;
    const size = statSync(options.logFile).size;
    const from = Math.max(offset, size - 20_000);
    const buffer = Buffer.alloc(size - from);
    const fd = openSync(options.logFile, 'r');
    try {
      readSync(fd, buffer, 0, buffer.length, from);
    } finally {
      closeSync(fd);
    }
    launchLog = buffer.toString();
    log = launchLog;
  };

  const start = async () => {
    const logFd = options.logFile ? openSync(options.logFile, 'a') : undefined;
    const logOffset = options.logFile ? statSync(options.logFile).size : 0;
    const proc = spawn(options.command, options.args, {
      stdio: ['ignore', logFd ?? 'pipe', logFd ?? 'pipe'],
      detached: options.group ?? false,
      uid: options.uid,
      gid: options.gid,
      cwd: options.cwd,
    });
    child = proc;
    launchLog = '';
    const append = (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-20_000);
      launchLog = (launchLog + chunk.toString()).slice(-20_000);
    };
    if (logFd === undefined) {
      proc.stdout!.on('data', append);
      proc.stderr!.on('data', append);
    } else closeSync(logFd);
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
    const started = Date.now();
    for (;;) {
      readLogFile(logOffset);
      if (early) throw early;
      if (gone) {
        readLogFile(logOffset);
        throw new Error(`${options.name} exited during start-up:\n${log}`);
      }
      if (await options.ready(launchLog)) return;
      if (Date.now() - started > options.startTimeoutMs) {
        await stop('SIGKILL');
        throw new Error(`${options.name} did not start within ${options.startTimeoutMs} ms:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 20));
    }
  };

  return {
    start,
    stop,
    output: () => {
      if (options.logFile) readLogFile(0);
      return log;
    },
  };
}
