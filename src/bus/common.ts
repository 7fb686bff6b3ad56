/** Pieces every bus driver needs the same way. */
import { NO_BUS_LOGGER, type BusLogger, type BusStatus, type BusStatusEvent } from './types.js';

/** Status listeners: `emit` calls each one, and a listener that throws is logged without stopping the rest. */
export function createStatusEmitter(logger: BusLogger = NO_BUS_LOGGER) {
  const listeners = new Set<(event: BusStatusEvent) => void>();
  return {
    emit(status: BusStatus, error?: Error) {
      for (const listener of listeners) {
        try {
          listener(error ? { status, error } : { status });
        } catch (listenerError) {
          logger.warn({ err: listenerError }, 'bus status listener threw');
        }
      }
    },
    /** The bus's `onStatus`. */
    onStatus(listener: (event: BusStatusEvent) => void): () => void {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}

/**
 * Publisher-side msgId dedup for drivers whose server has none: an id published again inside the window
 * is a duplicate. A publish that failed must `forget` its id, or its retry would be dropped as a duplicate.
 */
export function createDedupWindow(windowMs: number) {
  const expiries = new Map<string, number>();
  /** When the oldest remembered id expires (or earlier); nothing to sweep before then. */
  let oldestExpiry = Infinity;
  return {
    /** True when `msgId` was recorded inside the window; otherwise records it and returns false. */
    isDuplicate(msgId: string): boolean {
      const now = Date.now();
      if (now >= oldestExpiry) {
        // Map keeps insertion order and every id gets the same window, so expired ids are at the head.
        oldestExpiry = Infinity;
        for (const [id, expiry] of expiries) {
          if (expiry > now) {
            oldestExpiry = expiry;
            break;
          }
          expiries.delete(id);
        }
      }
      if (expiries.has(msgId)) return true;
      const expiry = now + windowMs;
      if (expiries.size === 0) oldestExpiry = expiry;
      expiries.set(msgId, expiry);
      return false;
    },
    forget(msgId: string): void {
      expiries.delete(msgId);
    },
  };
}
