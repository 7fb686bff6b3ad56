/**
 * A `bitbrat start` (or other command) in a child process, as a user runs it: its output collected, and a
 * wait for its `/readyz` to answer 200 that names the output when it times out.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { waitFor } from './wait.js';

export interface BitbratProcess {
  child: ChildProcessWithoutNullStreams;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the `/readyz` body once it answers 200. */
  ready(port: number, what?: string): Promise<{ components: Record<string, { ready: boolean }> }>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function spawnBitbrat(bin: string, args: string[], env: Record<string, string>, nodeArgs: string[] = []): BitbratProcess {
  const child = spawn(process.execPath, [...nodeArgs, bin, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end();
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => output,
    ready: (port, what = 'bitbrat start') =>
      waitFor(
        async () => {
          const response = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
          return response?.status === 200 ? ((await response.json()) as { components: Record<string, { ready: boolean }> }) : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 250, message: `${what} to be ready; output: ${output.slice(-2000)}` },
      ),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return await exited;
    },
  };
}
