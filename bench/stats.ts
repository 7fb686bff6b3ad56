/** Percentile of a numeric sample (nearest rank). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Drives `send(i)` either as fast as possible (keeping at most `window` events outstanding) or at a
 * fixed offered rate; `done` resolves when every event has come out the other end.
 */
export async function drive(options: {
  events: number;
  offeredPerSec: number;
  window?: number;
  send: (index: number) => Promise<void>;
  completed: () => number;
  timeoutMs?: number;
}): Promise<{ elapsedMs: number }> {
  const started = performance.now();
  const deadline = started + (options.timeoutMs ?? 120_000);
  const window = options.window ?? 1_000;
  let sent = 0;
  const waitUntil = async (condition: () => boolean) => {
    while (!condition()) {
      if (performance.now() > deadline) throw new Error(`benchmark timed out: ${options.completed()} of ${options.events} completed`);
      // A timer, not setImmediate: a setImmediate loop would spin on the very thread being measured.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  };
  if (options.offeredPerSec === 0) {
    while (sent < options.events) {
      await waitUntil(() => sent - options.completed() < window);
      const batch = Math.min(options.events - sent, window - (sent - options.completed()));
      const pending: Promise<void>[] = [];
      for (let i = 0; i < batch; i += 1) pending.push(options.send(sent++));
      await Promise.all(pending);
    }
  } else {
    const interval = 1_000 / options.offeredPerSec;
    const pending: Promise<void>[] = [];
    while (sent < options.events) {
      const due = started + sent * interval;
      const now = performance.now();
      if (due > now) await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - now)));
      while (sent < options.events && started + sent * interval <= performance.now()) pending.push(options.send(sent++));
    }
    await Promise.all(pending);
  }
  await waitUntil(() => options.completed() >= options.events);
  return { elapsedMs: performance.now() - started };
}
