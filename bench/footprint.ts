/**
 * The embedded platform's footprint as a streamer meets it: `bin/bitbrat.js start` (memory bus, PGlite)
 * in a fresh data directory, started once (the first start initializes the database), stopped, started
 * again (the warm start), then left idle. Reports the time from spawn to a ready `/readyz` for both
 * starts and the resident set (VmRSS from /proc) once the warm process has settled, plus the peak.
 * Runs the process with the same Node flags as `npm start`, from the compiled build when dist/ matches src/
 * (as after `npm install`), and once more warm from the sources through tsx for comparison.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compiledEntry } from '../bin/compiled.js';
import { SERVICE_NODE_FLAGS } from '../src/runtime/node-flags.js';
import { round } from './stats.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/bitbrat.js', import.meta.url));
/** How long the warm process is left alone before its RSS is read: timers and lazy work settle by then. */
const IDLE_MS = 5_000;
const START_TIMEOUT_MS = 60_000;

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** VmRSS and VmHWM of a process in MB, from /proc (Linux). */
async function residentMb(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) =>
    Number(/^(\w+):\s+(\d+) kB$/m.exec(status.split('\n').find((line) => line.startsWith(`${name}:`)) ?? '')?.[2] ?? 0) / 1024;
  return { rss: round(field('VmRSS'), 1), peak: round(field('VmHWM'), 1) };
}

/** CPU time (user + system, all threads) a process has used so far, in ms; clock ticks are 10 ms. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at state; utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

interface Started {
  child: ChildProcess;
  readyMs: number;
  output: () => string;
}

/** Spawns the platform and resolves once `/readyz` answers 200. */
async function startPlatform(dataDir: string, port: number, node: string, fromSource = false): Promise<Started> {
  const began = performance.now();
  const child = spawn(node, [...SERVICE_NODE_FLAGS, BIN, 'start'], {
    env: {
      ...process.env,
      BITBRAT_FROM_SOURCE: fromSource ? '1' : '',
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      MESSAGE_BUS_DRIVER: 'memory',
      STORE_DRIVER: 'pglite',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = began + START_TIMEOUT_MS;
  while (performance.now() < deadline) {
    if (exited) throw new Error(`bitbrat start exited before it was ready:\n${output}`);
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (response) => response.ok,
      () => false,
    );
    if (ok) return { child, readyMs: round(performance.now() - began, 0), output: () => output };
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  child.kill('SIGKILL');
  throw new Error(`bitbrat start was not ready within ${START_TIMEOUT_MS} ms:\n${output}`);
}

async function stopPlatform(started: Started): Promise<void> {
  if (started.child.exitCode !== null) return;
  const exited = new Promise((resolve) => started.child.once('exit', resolve));
  started.child.kill('SIGTERM');
  await exited;
}

/** One footprint run; `node` is the Node binary to measure (BENCH_NODE, default this one). */
export async function benchFootprint(): Promise<Record<string, unknown>> {
  const node = process.env.BENCH_NODE || process.execPath;
  const version = await new Promise<string>((resolve) => {
    const probe = spawn(node, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    probe.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    probe.once('exit', () => resolve(out.trim()));
  });
  const dataDir = await mkdtemp(join(tmpdir(), 'bitbrat-footprint-'));
  try {
    const first = await startPlatform(dataDir, await freePort(), node);
    const firstRss = await residentMb(first.child.pid!);
    const firstCpu = await cpuMs(first.child.pid!);
    await stopPlatform(first);
    const warm = await startPlatform(dataDir, await freePort(), node);
    const readyRss = await residentMb(warm.child.pid!);
    const warmCpu = await cpuMs(warm.child.pid!);
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    const idle = await residentMb(warm.child.pid!);
    await stopPlatform(warm);
    // The same warm start from the TypeScript sources through tsx, as an edited checkout runs: the ratio
    // to the compiled start is what the build saves.
    const source = await startPlatform(dataDir, await freePort(), node, true);
    const sourceCpu = await cpuMs(source.child.pid!);
    const sourceRss = await residentMb(source.child.pid!);
    await stopPlatform(source);
    return {
      scenario: 'footprint',
      node: version,
      // `compiled` when dist/ matches src/ (npm install builds it), else `source`.
      runs: compiledEntry(ROOT) ? 'compiled' : 'source',
      firstStartMs: first.readyMs,
      warmStartMs: warm.readyMs,
      idleRssMb: idle.rss,
      // CPU used until ready: unlike the wall-clock times, barely moved by other load on the machine.
      firstStartCpuMs: firstCpu,
      warmStartCpuMs: warmCpu,
      firstStartRssMb: firstRss.rss,
      firstStartPeakRssMb: firstRss.peak,
      warmReadyRssMb: readyRss.rss,
      warmPeakRssMb: idle.peak,
      idleAfterMs: IDLE_MS,
      warmStartFromSourceMs: source.readyMs,
      warmStartFromSourceCpuMs: sourceCpu,
      warmReadyFromSourceRssMb: sourceRss.rss,
    };
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}
