/**
 * Timers: a message every N minutes, only while the channel is live and only after M chat lines since the
 * last one. The runner is ticked by the service (and directly by tests, with their own clock); a claim in
 * the store keeps two instances from posting the same timer twice.
 */
import type { Store } from '../../store/index.js';
import { MAX_REPLY_LENGTH } from '../commands/template.js';
import { linesKey, listTimers, readTemplateCounters, recordTimerRun, timerDue } from './records.js';

export interface TimerRunnerOptions {
  store: Store;
  now: () => number;
  /** Whether the channel (`twitch:login`) is live. */
  isLive(channel: string): Promise<boolean>;
  /** Posts the message in the channel. */
  send(channel: string, text: string): Promise<void>;
  logger: { warn: (obj: unknown, msg?: string) => void };
}

export interface TimerRunner {
  /** Posts every due timer; returns the names posted (`channel/name`). */
  tick(): Promise<string[]>;
}

/** Fills `{count:name}` and `{channel}` in a timer's message. */
export function renderTimerMessage(message: string, channel: string, counters: Record<string, number>): string {
  const out = message
    .replace(/\{count:([a-z0-9_]{1,32})\}/gi, (whole, name: string) =>
      counters[name.toLowerCase()] === undefined ? whole : String(counters[name.toLowerCase()]),
    )
    .replace(/\{channel\}/gi, channel.split(':')[1] ?? channel)
    .trim();
  return out.length > MAX_REPLY_LENGTH ? `${out.slice(0, MAX_REPLY_LENGTH - 1)}…` : out;
}

export function createTimerRunner(options: TimerRunnerOptions): TimerRunner {
  const { store, now } = options;
  // A timer that never ran waits one interval from when the runner started, not from the epoch.
  const since = now();
  return {
    async tick() {
      const posted: string[] = [];
      const liveByChannel = new Map<string, Promise<boolean>>();
      for (const timer of await listTimers(store)) {
        if (!timer.enabled) continue;
        const live = liveByChannel.get(timer.channel) ?? options.isLive(timer.channel);
        liveByChannel.set(timer.channel, live);
        const lines = await store.incrementCounter(linesKey(timer.channel), 0);
        const at = now();
        if (!timerDue(timer, { now: at, live: await live, lines, since })) continue;
        // Several instances tick; the first to claim this run posts it.
        if (!(await store.claimKey('toolkit-timer', `${timer.channel}:${timer.name}:${timer.lastRunAt ?? 0}`, timer.intervalMin * 60_000)))
          continue;
        try {
          const text = renderTimerMessage(timer.message, timer.channel, await readTemplateCounters(store, timer.channel, timer.message));
          await options.send(timer.channel, text);
          await recordTimerRun(store, timer, at, lines);
          posted.push(`${timer.channel}/${timer.name}`);
        } catch (error) {
          options.logger.warn({ timer: timer.name, channel: timer.channel, error: (error as Error).message }, 'timer message not sent');
        }
      }
      return posted;
    },
  };
}
