import { isBitBratError, type BitBratError } from '../core/index.js';
import { createBatcher, type Batcher } from './batcher.js';
import type { PlatformConfig } from './config.js';

/**
 * Default wait for more records of services that record events (persistence, finalizer). They are not on
 * the reply's path: waiting up to 25 ms makes a few large writes instead of many small ones, which at a
 * few hundred events/s is most of what the store costs (queries and syscalls).
 */
export const RECORD_BATCH_DELAY_MS = 25;

/**
 * Batches a service's store writes: concurrent calls share one write (see createBatcher), a record the
 * store refuses fails alone (writeEach), and a batch never waits for more than the messages in flight
 * (batchSizeFor).
 */
export function createStoreBatcher<T, R>(
  write: (batch: T[]) => Promise<R[]>,
  options: { size: number; delayMs: number; maxInFlight?: number },
): Batcher<T, R> {
  return createBatcher<T, R>((items) => writeEach(items, write), {
    maxSize: batchSizeFor(options.size, options.maxInFlight),
    maxDelayMs: options.delayMs,
  });
}

/** How a service batches one kind of store write: at most `size` records, waiting at most `delayMs`. */
export interface BatchSettings {
  size: number;
  delayMs: number;
}

/**
 * A store batcher for a service, capped at the messages its consumers may hold in flight
 * (`MAX_IN_FLIGHT` of the platform config), since each message waits for its batch.
 */
export function createServiceBatcher<T, R>(
  ctx: { platform: Readonly<Pick<PlatformConfig, 'MAX_IN_FLIGHT'>> },
  settings: BatchSettings,
  write: (batch: T[]) => Promise<R[]>,
): Batcher<T, R> {
  return createStoreBatcher<T, R>(write, { size: settings.size, delayMs: settings.delayMs, maxInFlight: ctx.platform.MAX_IN_FLIGHT });
}

/**
 * Writes a batch in one call; when the batch is refused because of one bad record (a constraint, a
 * document too large), writes the records one by one so only the bad one fails and the rest are kept.
 * A store outage is thrown as is: the runtime holds every message of the batch.
 */
export async function writeEach<T, R>(items: T[], write: (batch: T[]) => Promise<R[]>): Promise<Array<R | Error>> {
  try {
    return await write(items);
  } catch (error) {
    if (items.length === 1 || !isBadRecord(error)) throw error;
    const results: Array<R | Error> = [];
    for (const item of items) {
      try {
        results.push((await write([item]))[0]!);
      } catch (itemError) {
        if (!isBadRecord(itemError)) throw itemError;
        results.push(itemError as Error);
      }
    }
    return results;
  }
}

/** The store refused this record itself (a constraint, a document too large), not because it is down. */
export function isBadRecord(error: unknown): error is BitBratError {
  return isBitBratError(error) && (error.code === 'STORE_CONSTRAINT' || error.code === 'DOCUMENT_TOO_LARGE');
}

/**
 * Batch size for a consumer that batches its writes: each message waits for its batch, so a batch never
 * holds more than the messages in flight (MAX_IN_FLIGHT). Capping it there flushes a batch as soon as it
 * can grow no further instead of waiting for the batch timer — which, under a sustained burst on the
 * in-process bus, fires late (promise jobs run back to back), so the writer fell behind the pipeline.
 */
export function batchSizeFor(configured: number, maxInFlight = configured): number {
  return Math.max(1, Math.min(configured, maxInFlight));
}
