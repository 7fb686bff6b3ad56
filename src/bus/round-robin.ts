/** A subscriber a driver can hand a message to. */
export interface LocalSubscriberSlot {
  draining: boolean;
  inFlight: number;
  maxInFlight: number;
}

/**
 * Load sharing inside one consumer group: the next subscriber after the last one used that is not
 * draining and has room, or undefined when every one is full.
 */
export function nextSubscriber<S extends LocalSubscriberSlot>(group: { subscribers: S[]; cursor: number }): S | undefined {
  const count = group.subscribers.length;
  for (let i = 0; i < count; i += 1) {
    const subscriber = group.subscribers[(group.cursor + i) % count]!;
    if (!subscriber.draining && subscriber.inFlight < subscriber.maxInFlight) {
      group.cursor = (group.cursor + i + 1) % count;
      return subscriber;
    }
  }
  return undefined;
}
