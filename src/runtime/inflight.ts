/**
 * Where each envelope was last sent, per process: the topic and the time of the last publish the slip
 * engines of this process made for it. An envelope that is finalized (or dead-lettered) is forgotten. A
 * stalled event (received, not finalized) is found in the store; this tells at which step it waits.
 *
 * Cheap on the hot path: one Map delete + set per publish. Bounded: past `max` entries the oldest go, and
 * entries older than `ttlMs` are dropped as new ones arrive (the map is in publish order).
 */

/** Where one envelope was last sent. */
export interface InflightEntry {
  id: string;
  correlationId: string;
  /** The logical topic (without BUS_PREFIX), e.g. `internal.llm-bot.v1`. */
  topic: string;
  /** The service whose engine published it. */
  by: string;
  /** Epoch ms of the publish. */
  at: number;
}

/** The read side, for the API and `/_debug/inflight`. */
export interface InflightView {
  get(id: string): InflightEntry | undefined;
  /** Newest last; at most `limit`. */
  list(limit?: number): InflightEntry[];
  readonly size: number;
}

export interface InflightTracker extends InflightView {
  /** Records a publish; publishing to a final topic forgets the envelope. */
  published(id: string, correlationId: string, topic: string, by: string, now?: number): void;
}

export interface InflightOptions {
  /** Most envelopes remembered. Default 20 000. */
  max?: number;
  /** Entries older than this are dropped. Default 1 hour. */
  ttlMs?: number;
  /** Topics that end an envelope's journey (finalizer, dead-letter). */
  finalTopics: readonly string[];
}

/** Creates a bounded, expiring tracker (see the file comment). */
export function createInflightTracker(options: InflightOptions): InflightTracker {
  const max = options.max ?? 20_000;
  const ttlMs = options.ttlMs ?? 3_600_000;
  const finals = new Set(options.finalTopics);
  const entries = new Map<string, InflightEntry>();

  const trim = (now: number) => {
    for (const [id, entry] of entries) {
      if (entries.size <= max && now - entry.at < ttlMs) return;
      entries.delete(id);
    }
  };

  return {
    published(id, correlationId, topic, by, now = Date.now()) {
      entries.delete(id);
      if (finals.has(topic)) return;
      entries.set(id, { id, correlationId, topic, by, at: now });
      trim(now);
    },
    get(id) {
      const entry = entries.get(id);
      return entry && Date.now() - entry.at < ttlMs ? entry : undefined;
    },
    list(limit = 1_000) {
      const all = [...entries.values()];
      return all.slice(Math.max(0, all.length - limit));
    },
    get size() {
      return entries.size;
    },
  };
}
