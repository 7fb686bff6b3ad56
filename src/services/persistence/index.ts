import { z } from 'zod';
import { Topic } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { continueWith, defineService } from '../../runtime/service.js';
import type { EventRecord } from '../../store/index.js';
import { RECORD_BATCH_DELAY_MS, createServiceBatcher } from '../../runtime/store-batcher.js';
import { ingressRecord, sourcePatch } from './records.js';

const ConfigSchema = z.object({
  PERSISTENCE_BATCH_SIZE: env.int(200, { min: 1, max: 1000 }),
  PERSISTENCE_BATCH_DELAY_MS: env.int(RECORD_BATCH_DELAY_MS, { min: 0, max: 1000 }),
});

/**
 * Records every envelope received on ingress (raw and normalized) and folds `system.source.status` /
 * `system.stream.*` events into the `sources` documents. Writes are idempotent, so a redelivered message
 * never makes a second record; while the store is down the runtime holds messages on the bus.
 */
export const service = defineService({
  name: 'persistence',
  configSchema: ConfigSchema,
  needsStore: true,
  setup(ctx) {
    const records = createServiceBatcher<EventRecord, true>(
      ctx,
      { size: ctx.config.PERSISTENCE_BATCH_SIZE, delayMs: ctx.config.PERSISTENCE_BATCH_DELAY_MS },
      async (batch) => {
        await ctx.store.recordIngress(batch);
        return batch.map(() => true as const);
      },
    );
    return {
      consumers: {
        [Topic.ingress]: {
          mode: 'sink',
          async handle(envelope) {
            await records.add(ingressRecord(envelope));
            const patch = sourcePatch(envelope);
            if (patch) await ctx.store.mergeSource(patch);
            return continueWith();
          },
        },
      },
    };
  },
});

export default service;
