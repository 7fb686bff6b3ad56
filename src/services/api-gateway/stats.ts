/**
 * Per-minute series for the dashboard's charts: chat messages, all events and reply latency over the
 * last hours, aggregated from the `events` store (the same records every topology writes), so the charts
 * need no metrics backend. Reads at most `STATS_LIMITS.maxEvents` of the newest events; a busier window
 * is reported as `truncated` from the oldest minute that was read.
 */
import type { Store } from '../../store/index.js';

export const STATS_LIMITS = {
  maxHours: 24,
  /** Events read per request (in pages of 200). */
  maxEvents: 20_000,
  pageSize: 200,
} as const;

/** One bucket of the series. */
export interface StatsBucket {
  /** Start of the bucket (ISO). */
  at: string;
  chat: number;
  events: number;
  /** Replies finalized in the bucket. */
  replies: number;
  /** Median reply latency of the bucket (ms); absent without replies. */
  latencyMs?: number;
}

export interface StatsSeries {
  since: string;
  until: string;
  bucketMs: number;
  buckets: StatsBucket[];
  totals: { chat: number; events: number; replies: number };
  /** True when the window held more events than were read. */
  truncated: boolean;
}

const CHAT_TYPE = 'external.chat.message.v1';

/** Minute buckets up to 3 hours, then 5-minute buckets so a chart keeps under ~300 points. */
export function bucketSize(hours: number): number {
  return hours <= 3 ? 60_000 : 5 * 60_000;
}

/** Aggregates the events received since `hours` ago into fixed buckets (oldest first). */
export async function aggregateStats(store: Pick<Store, 'listEvents'>, options: { hours: number; now?: number }): Promise<StatsSeries> {
  const now = options.now ?? Date.now();
  const bucketMs = bucketSize(options.hours);
  const end = Math.floor(now / bucketMs) * bucketMs + bucketMs;
  const start = end - Math.ceil((options.hours * 3_600_000) / bucketMs) * bucketMs;
  const count = (end - start) / bucketMs;
  const buckets = Array.from({ length: count }, (_, index) => ({
    at: start + index * bucketMs,
    chat: 0,
    events: 0,
    latencies: [] as number[],
  }));
  let cursor: string | undefined;
  let read = 0;
  let truncated = false;
  do {
    const page = await store.listEvents({
      since: new Date(start).toISOString(),
      limit: STATS_LIMITS.pageSize,
      ...(cursor ? { cursor } : {}),
    });
    for (const record of page.items) {
      const index = Math.floor((Date.parse(record.receivedAt) - start) / bucketMs);
      const bucket = buckets[index];
      if (!bucket) continue;
      bucket.events += 1;
      if (record.type === CHAT_TYPE) bucket.chat += 1;
      if (record.replyText !== undefined && typeof record.latencyMs === 'number') bucket.latencies.push(record.latencyMs);
    }
    read += page.items.length;
    cursor = page.nextCursor;
    if (cursor && read >= STATS_LIMITS.maxEvents) truncated = true;
  } while (cursor && !truncated);
  const out = buckets.map((bucket): StatsBucket => {
    const sorted = bucket.latencies.sort((a, b) => a - b);
    const median = sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : undefined;
    return {
      at: new Date(bucket.at).toISOString(),
      chat: bucket.chat,
      events: bucket.events,
      replies: sorted.length,
      ...(median !== undefined ? { latencyMs: Math.round(median) } : {}),
    };
  });
  return {
    since: new Date(start).toISOString(),
    until: new Date(end).toISOString(),
    bucketMs,
    buckets: out,
    totals: out.reduce(
      (sum, bucket) => ({ chat: sum.chat + bucket.chat, events: sum.events + bucket.events, replies: sum.replies + bucket.replies }),
      { chat: 0, events: 0, replies: 0 },
    ),
    truncated,
  };
}
