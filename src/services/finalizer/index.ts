import { z } from 'zod';
import { DeadLetterSchema, Topic, encodeRaw, type DeadLetter } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { continueWith, defineService, type ServiceContext } from '../../runtime/service.js';
import type { EventRecord } from '../../store/index.js';
import { finalRecord } from '../persistence/records.js';
import { RECORD_BATCH_DELAY_MS, createStoreBatcher, isBadRecord } from '../../runtime/store-batcher.js';
import { createHash } from 'node:crypto';

const ConfigSchema = z.object({
  EVENTS_RETENTION_DAYS: env.int(30, { min: 1, max: 3650 }),
  RETENTION_INTERVAL_MS: env.int(3_600_000, { min: 1_000 }),
  FINALIZER_BATCH_SIZE: env.int(200, { min: 1, max: 1000 }),
  FINALIZER_BATCH_DELAY_MS: env.int(RECORD_BATCH_DELAY_MS, { min: 0, max: 1000 }),
});
type Config = z.infer<typeof ConfigSchema>;

/**
 * Writes the final record of every envelope (outcome, whole slip history, errors, delivery, latency)
 * and, as the DLQ handler, stores every dead letter with its reason and raw payload. Both writes are
 * idempotent on the envelope / dead-letter id. Also prunes events and dead letters past retention.
 */
export const service = defineService<Config>({
  name: 'finalizer',
  configSchema: ConfigSchema,
  needsStore: true,
  consumers(ctx) {
    const finals = createStoreBatcher<EventRecord, boolean>(
      async (batch) => {
        const fresh = new Set(await ctx.store.recordFinal(batch));
        return batch.map((record) => fresh.has(record.id));
      },
      { size: ctx.config.FINALIZER_BATCH_SIZE, delayMs: ctx.config.FINALIZER_BATCH_DELAY_MS, maxInFlight: ctx.platform?.MAX_IN_FLIGHT },
    );
    return {
      [Topic.finalizer]: {
        mode: 'sink',
        async handle(envelope, handlerCtx) {
          const fresh = await finals.add(finalRecord(envelope));
          if (!fresh) handlerCtx.logger.debug('final record already written (redelivery)');
          return continueWith();
        },
      },
      [Topic.deadletter]: {
        mode: 'raw',
        async handleRaw(message, handlerCtx) {
          const letter = toDeadLetter(message.data, message.topic);
          try {
            const inserted = await ctx.store.insertDeadLetter({ id: letter.id, receivedAt: new Date().toISOString(), deadLetter: letter });
            handlerCtx.logger.warn({ deadLetterId: letter.id, code: letter.reason.code, topic: letter.topic, inserted }, 'dead letter stored');
          } catch (error) {
            if (isBadRecord(error)) {
              // Keep the reason and a truncated payload rather than losing the letter or blocking the queue.
              const truncated = { ...letter, raw: letter.raw.slice(0, 64 * 1024), envelope: undefined, reason: { ...letter.reason, details: { ...letter.reason.details, truncated: true, storeError: error.message } } };
              await ctx.store.insertDeadLetter({ id: letter.id, receivedAt: new Date().toISOString(), deadLetter: truncated });
              return;
            }
            throw error;
          }
        },
      },
    };
  },
  async start(ctx) {
    startRetention(ctx);
  },
  async stop(ctx) {
    stopRetention(ctx);
  },
});

const retentionTimers = new Map<object, NodeJS.Timeout>();

/** Prunes on start and then every RETENTION_INTERVAL_MS; one instance at a time does it. */
function startRetention(ctx: ServiceContext<Config>) {
  const run = async () => {
    try {
      if (!(await ctx.store.claimKey('retention', 'prune', Math.max(1_000, ctx.config.RETENTION_INTERVAL_MS - 500)))) return;
      const result = await pruneOlderThan(ctx, ctx.config.EVENTS_RETENTION_DAYS);
      if (result.events || result.deadLetters) ctx.logger.info(result, 'retention: pruned old records');
    } catch (error) {
      ctx.logger.warn({ err: error }, 'retention run failed; will try again');
    }
  };
  void run();
  const timer = setInterval(() => void run(), ctx.config.RETENTION_INTERVAL_MS);
  timer.unref();
  retentionTimers.set(ctx, timer);
}

function stopRetention(ctx: object) {
  clearInterval(retentionTimers.get(ctx));
  retentionTimers.delete(ctx);
}

export async function pruneOlderThan(ctx: { store: ServiceContext['store'] }, days: number, now = Date.now()) {
  const before = new Date(now - days * 86_400_000).toISOString();
  const events = await ctx.store.pruneEvents(before);
  const deadLetters = await ctx.store.pruneDeadLetters(before);
  return { before, events, deadLetters };
}

/** A dead letter as published by the runtime, or one made up for bytes someone else put on the DLQ. */
export function toDeadLetter(data: Uint8Array, topic: string): DeadLetter {
  try {
    const parsed = DeadLetterSchema.safeParse(JSON.parse(new TextDecoder().decode(data)));
    if (parsed.success) return parsed.data;
  } catch {
    // fall through: not JSON
  }
  const encoded = encodeRaw(data);
  return {
    kind: 'bitbrat.deadletter.v1',
    id: 'dl-' + createHash('sha256').update(encoded.raw).digest('hex').slice(0, 32),
    at: new Date().toISOString(),
    reason: { code: 'DECODE_FAILED', message: `a message on ${topic} was not a dead-letter record` },
    topic,
    service: 'unknown',
    ...encoded,
  };
}

export default service;
