import { BitBratError } from '../core/index.js';
import {
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_DEDUP_WINDOW_MS,
  DEFAULT_MAX_IN_FLIGHT,
  type BusHeaders,
  type BusMessage,
  type BusStatusEvent,
  type MessageBus,
  type MessageHandler,
  type PublishOptions,
  type SubscribeOptions,
  type Subscription,
} from './types.js';

export interface MemoryBusOptions {
  prefix?: string;
  /** Publishes with a msgId seen within this window are dropped. Default 120 000 ms. */
  duplicateWindowMs?: number;
  /** Messages kept for a topic nobody has subscribed to yet; past it publish fails. Default 100 000. */
  maxRetainedPerTopic?: number;
}

/** The in-memory bus also lets tests and the all-in-one mode simulate an outage. */
export interface MemoryBus extends MessageBus {
  /** Simulate losing (false) or regaining (true) the connection. */
  setConnected(connected: boolean): void;
  /** Messages waiting or in flight for a group (for tests and metrics). */
  depth(topic: string, group: string): number;
}

interface StoredMessage {
  readonly topic: string;
  readonly data: Uint8Array;
  readonly headers: BusHeaders;
  readonly msgId?: string;
}

interface Delivery {
  readonly stored: StoredMessage;
  deliveryCount: number;
}

interface Subscriber {
  readonly handler: MessageHandler;
  readonly maxInFlight: number;
  readonly ackWaitMs: number;
  inFlight: number;
  draining: boolean;
  readonly running: Set<Promise<void>>;
  idle?: () => void;
}

interface Group {
  readonly name: string;
  readonly ready: Delivery[];
  readonly subscribers: Subscriber[];
  /** Deliveries handed out and not yet settled. */
  outstanding: number;
  cursor: number;
  scheduled: boolean;
  readonly timers: Set<NodeJS.Timeout>;
}

interface TopicState {
  readonly groups: Map<string, Group>;
  retained: StoredMessage[];
}

const EMPTY_HEADERS: BusHeaders = Object.freeze({}) as BusHeaders;

/** Creates the in-process bus: real consumer-group semantics, no persistence across restarts. */
export function createMemoryBus(options: MemoryBusOptions = {}): MemoryBus {
  const prefix = options.prefix ?? '';
  const duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DEDUP_WINDOW_MS;
  const maxRetained = options.maxRetainedPerTopic ?? 100_000;
  const topics = new Map<string, TopicState>();
  const seenIds = new Map<string, number>();
  const listeners = new Set<(event: BusStatusEvent) => void>();
  const subscriptions = new Set<Subscription>();
  let connected = false;
  let closed = false;

  const topicState = (topic: string): TopicState => {
    let state = topics.get(topic);
    if (!state) {
      state = { groups: new Map(), retained: [] };
      topics.set(topic, state);
    }
    return state;
  };

  const emit = (event: BusStatusEvent) => {
    for (const listener of listeners) listener(event);
  };

  const isDuplicate = (msgId: string): boolean => {
    const now = Date.now();
    // Map keeps insertion order, so expired ids are always at the head.
    for (const [id, expiry] of seenIds) {
      if (expiry > now) break;
      seenIds.delete(id);
    }
    if (seenIds.has(msgId)) return true;
    seenIds.set(msgId, now + duplicateWindowMs);
    return false;
  };

  const schedule = (group: Group) => {
    if (group.scheduled) return;
    group.scheduled = true;
    queueMicrotask(() => {
      group.scheduled = false;
      dispatch(group);
    });
  };

  const requeue = (group: Group, delivery: Delivery, delayMs: number) => {
    if (delayMs <= 0) {
      group.ready.push(delivery);
      schedule(group);
      return;
    }
    const timer = setTimeout(() => {
      group.timers.delete(timer);
      group.ready.push(delivery);
      schedule(group);
    }, delayMs);
    group.timers.add(timer);
  };

  const nextSubscriber = (group: Group): Subscriber | undefined => {
    const count = group.subscribers.length;
    for (let i = 0; i < count; i += 1) {
      const subscriber = group.subscribers[(group.cursor + i) % count]!;
      if (!subscriber.draining && subscriber.inFlight < subscriber.maxInFlight) {
        group.cursor = (group.cursor + i + 1) % count;
        return subscriber;
      }
    }
    return undefined;
  };

  const deliver = (group: Group, subscriber: Subscriber, delivery: Delivery) => {
    delivery.deliveryCount += 1;
    group.outstanding += 1;
    let settled = false;
    let ackTimer: NodeJS.Timeout | undefined;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      group.outstanding -= 1;
      if (ackTimer) {
        clearTimeout(ackTimer);
        group.timers.delete(ackTimer);
      }
      return true;
    };
    const armAckTimer = () => {
      if (ackTimer) {
        clearTimeout(ackTimer);
        group.timers.delete(ackTimer);
      }
      ackTimer = setTimeout(() => {
        group.timers.delete(ackTimer!);
        // Ack deadline passed: this delivery is void, the message goes back for redelivery.
        if (settle()) requeue(group, delivery, 0);
      }, subscriber.ackWaitMs);
      group.timers.add(ackTimer);
    };
    armAckTimer();
    const { stored } = delivery;
    const message: BusMessage = {
      topic: stored.topic,
      data: stored.data,
      headers: stored.headers,
      msgId: stored.msgId,
      deliveryCount: delivery.deliveryCount,
      async ack() {
        settle();
      },
      async nak(delayMs = 0) {
        if (settle()) requeue(group, delivery, delayMs);
      },
      async working() {
        if (!settled) armAckTimer();
      },
      async term() {
        settle();
      },
    };
    subscriber.inFlight += 1;
    const run = (async () => {
      try {
        await subscriber.handler(message);
      } catch {
        await message.nak(0);
      }
    })();
    subscriber.running.add(run);
    void run.finally(() => {
      subscriber.running.delete(run);
      subscriber.inFlight -= 1;
      if (subscriber.draining && subscriber.inFlight === 0) subscriber.idle?.();
      if (group.ready.length > 0) schedule(group);
    });
  };

  const dispatch = (group: Group) => {
    if (!connected) return;
    while (group.ready.length > 0) {
      const subscriber = nextSubscriber(group);
      if (!subscriber) return;
      deliver(group, subscriber, group.ready.shift()!);
    }
  };

  const bus: MemoryBus = {
    driver: 'memory',

    async connect() {
      if (closed) throw new BitBratError('BUS_UNAVAILABLE', 'memory bus is closed');
      if (connected) return;
      connected = true;
      emit({ status: 'connected' });
    },

    async publish(topic: string, data: Uint8Array, publishOptions: PublishOptions = {}) {
      if (!connected) throw new BitBratError('BUS_UNAVAILABLE', `memory bus is not connected (publish to ${prefix}${topic})`, { retryable: true });
      if (publishOptions.msgId !== undefined && isDuplicate(publishOptions.msgId)) return;
      const stored: StoredMessage = { topic, data, headers: publishOptions.headers ?? EMPTY_HEADERS, msgId: publishOptions.msgId };
      const state = topicState(topic);
      if (state.groups.size === 0) {
        if (state.retained.length >= maxRetained) {
          throw new BitBratError('PUBLISH_FAILED', `topic ${prefix}${topic} has no consumer and already retains ${maxRetained} messages`, { retryable: true });
        }
        state.retained.push(stored);
        return;
      }
      for (const group of state.groups.values()) {
        group.ready.push({ stored, deliveryCount: 0 });
        schedule(group);
      }
    },

    async subscribe(topic: string, groupName: string, handler: MessageHandler, subscribeOptions: SubscribeOptions = {}) {
      const state = topicState(topic);
      let group = state.groups.get(groupName);
      if (!group) {
        group = { name: groupName, ready: [], subscribers: [], outstanding: 0, cursor: 0, scheduled: false, timers: new Set() };
        // The first group on a topic takes what was published before anyone listened.
        if (state.groups.size === 0) {
          for (const stored of state.retained) group.ready.push({ stored, deliveryCount: 0 });
          state.retained = [];
        }
        state.groups.set(groupName, group);
      }
      const subscriber: Subscriber = {
        handler,
        maxInFlight: subscribeOptions.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
        ackWaitMs: subscribeOptions.ackWaitMs ?? DEFAULT_ACK_WAIT_MS,
        inFlight: 0,
        draining: false,
        running: new Set(),
      };
      group.subscribers.push(subscriber);
      schedule(group);
      const owner = group;
      const subscription: Subscription = {
        topic,
        group: groupName,
        async drain() {
          if (subscriber.draining) return;
          subscriber.draining = true;
          const index = owner.subscribers.indexOf(subscriber);
          if (index >= 0) owner.subscribers.splice(index, 1);
          if (subscriber.inFlight > 0) await new Promise<void>((resolve) => (subscriber.idle = resolve));
          subscriptions.delete(subscription);
        },
      };
      subscriptions.add(subscription);
      return subscription;
    },

    isConnected: () => connected,

    onStatus(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async close() {
      if (closed) return;
      await Promise.all([...subscriptions].map((subscription) => subscription.drain()));
      closed = true;
      connected = false;
      for (const state of topics.values()) for (const group of state.groups.values()) for (const timer of group.timers) clearTimeout(timer);
      emit({ status: 'closed' });
    },

    setConnected(value: boolean) {
      if (closed || connected === value) return;
      connected = value;
      emit({ status: value ? 'connected' : 'disconnected' });
      if (value) for (const state of topics.values()) for (const group of state.groups.values()) schedule(group);
    },

    depth(topic: string, groupName: string) {
      const group = topics.get(topic)?.groups.get(groupName);
      return group ? group.ready.length + group.outstanding : 0;
    },
  };
  return bus;
}
