import { z } from 'zod';
import { Topic } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { continueWith, defineService, type ServiceContext } from '../../runtime/service.js';
import type { EventRecord } from '../../store/index.js';
import { finalRecord } from '../persistence/records.js';
import { RECORD_BATCH_DELAY_MS, createServiceBatcher, isBadRecord } from '../../runtime/store-batcher.js';
import { toDeadLetter } from './dead-letter.js';
import { pruneOlderThan } from './retention.js';

export { toDeadLetter } from './dead-letter.js';
export { pruneOlderThan } from './retention.js';

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
  setup(ctx) {
    const finals = createServiceBatcher<EventRecord, boolean>(
      ctx,
      { size: ctx.config.FINALIZER_BATCH_SIZE, delayMs: ctx.config.FINALIZER_BATCH_DELAY_MS },
      async (batch) => {
        const fresh = new Set(await ctx.store.recordFinal(batch));
        return batch.map((record) => fresh.has(record.id));
      },
    );
    let retention: NodeJS.Timeout | undefined;
    return {
      consumers: {
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
              const inserted = await ctx.store.insertDeadLetter({
                id: letter.id,
                receivedAt: new Date().toISOString(),
                deadLetter: letter,
              });
              handlerCtx.logger.warn(
                { deadLetterId: letter.id, code: letter.reason.code, topic: letter.topic, inserted },
                'dead letter stored',
              );
            } catch (error) {
              if (!isBadRecord(error)) throw error;
              // Keep the reason and a truncated payload rather than losing the letter or blocking the queue.
              const truncated = {
                ...letter,
                raw: letter.raw.slice(0, 64 * 1024),
                envelope: undefined,
                reason: { ...letter.reason, details: { ...letter.reason.details, truncated: true, storeError: error.message } },
              };
              await ctx.store.insertDeadLetter({ id: letter.id, receivedAt: new Date().toISOString(), deadLetter: truncated });
            }
          },
        },
      },
      async start() {
        retention = startRetention(ctx);
      },
      async stop() {
        clearInterval(retention);
      },
    };
  },
});

/** Prunes on start and then every RETENTION_INTERVAL_MS; one instance at a time does it. */
function startRetention(ctx: ServiceContext<Config>): NodeJS.Timeout {
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
  return timer;
}

export default service;
