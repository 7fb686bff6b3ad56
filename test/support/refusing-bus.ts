/**
 * A bus that refuses publishes to one topic while `down` (what a NATS outage looks like to a publisher),
 * delegating everything else to the real bus, so a connector's ingress buffer can be seen holding messages.
 */
import type { MessageBus } from '../../src/bus/index.js';

export interface RefusingBus extends MessageBus {
  /** While true, publishes to the topic reject. */
  down: boolean;
  /** Publishes refused so far. */
  readonly refused: number;
}

/** Wraps `bus`; publishes to a topic ending in `topic` reject while `down` is true. */
export function createRefusingBus(bus: MessageBus, topic: string): RefusingBus {
  let refused = 0;
  const check = (target: string) => {
    if (wrapper.down && target.endsWith(topic)) {
      refused += 1;
      throw new Error(`PUBLISH_FAILED: the bus refuses ${target} (test outage)`);
    }
  };
  const wrapper: RefusingBus = {
    down: false,
    get refused() {
      return refused;
    },
    get driver() {
      return bus.driver;
    },
    connect: () => bus.connect(),
    async publish(target, data, options) {
      check(target);
      return bus.publish(target, data, options);
    },
    ...(bus.publishJson
      ? {
          async publishJson(target: string, value: unknown, options?: Parameters<NonNullable<MessageBus['publishJson']>>[2]) {
            check(target);
            return bus.publishJson!(target, value, options);
          },
        }
      : {}),
    subscribe: (target, group, handler, options) => bus.subscribe(target, group, handler, options),
    isConnected: () => bus.isConnected(),
    onStatus: (listener) => bus.onStatus(listener),
    close: () => bus.close(),
  };
  return wrapper;
}
