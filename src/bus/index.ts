export * from './types.js';
export { createMemoryBus, type MemoryBus, type MemoryBusOptions } from './memory.js';
export { DEFAULT_PUBLISH_MAX_RETRIES, type PublishRetryOptions } from './retry.js';
import { BitBratError } from '../core/index.js';
import { createMemoryBus } from './memory.js';
import type { BusLogger, MessageBus } from './types.js';

export const BusDriver = { memory: 'memory', nats: 'nats', pubsub: 'pubsub' } as const;
export type BusDriver = (typeof BusDriver)[keyof typeof BusDriver];

export interface CreateBusOptions {
  driver: BusDriver;
  prefix?: string;
  natsUrl?: string;
  /** Connection name shown by the server (service and instance). */
  name?: string;
  pubsub?: { projectId: string; emulatorHost?: string; minAckDeadlineSec?: number };
  /** JetStream stream limits (see NatsBusOptions). */
  nats?: { maxAgeMs?: number; maxBytes?: number };
  logger?: BusLogger;
}

/** Builds the configured driver; drivers other than memory are loaded only when chosen. */
export async function createBus(options: CreateBusOptions): Promise<MessageBus> {
  switch (options.driver) {
    case 'memory':
      return createMemoryBus({ prefix: options.prefix, logger: options.logger });
    case 'nats': {
      const { createNatsBus } = await import('./nats.js');
      return createNatsBus({
        servers: options.natsUrl ?? 'nats://127.0.0.1:4222',
        prefix: options.prefix,
        name: options.name,
        logger: options.logger,
        ...options.nats,
      });
    }
    case 'pubsub': {
      if (!options.pubsub) throw new BitBratError('CONFIG_INVALID', 'pubsub driver needs a project id (GOOGLE_CLOUD_PROJECT)');
      const { createPubSubBus } = await import('./pubsub.js');
      return createPubSubBus({ ...options.pubsub, prefix: options.prefix, logger: options.logger });
    }
    default:
      throw new BitBratError('CONFIG_INVALID', `unknown MESSAGE_BUS_DRIVER ${String(options.driver)}`);
  }
}
