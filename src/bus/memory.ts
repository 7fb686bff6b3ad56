import { BitBratError } from '../core/index.js';
import { createDedupWindow, createStatusEmitter } from './common.js';
import { nextSubscriber } from './round-robin.js';
import {
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_DEDUP_WINDOW_MS,
  DEFAULT_MAX_IN_FLIGHT,
  EMPTY_HEADERS,
  type BusHeaders,
  type BusLogger,
  type BusMessage,
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
  /** Where a status listener that throws is reported. */
  logger?: BusLogger;
}

/** The in-memory bus also lets tests and the all-in-one mode simulate an outage. */
export interface MemoryBus extends MessageBus {
  /** Simulate losing (false) or regaining (true) the connection. */
  setConnected(connected: boolean): void;
  /** Messages waiting or in flight for a group (for tests and metrics). */
  depth(topic: string, group: string): number;
}

const encoder = new TextEncoder();

/** A published message: its bytes, or the value given to publishJson (encoded when somebody reads `data`). */
class StoredMessage {
  readonly topic: string;
  readonly json: unknown;
  readonly headers: BusHeaders;
  readonly msgId: string | undefined;
  #data: Uint8Array | undefined;

  constructor(topic: string, data: Uint8Array | undefined, json: unknown, options: PublishOptions) {
    this.topic = topic;
    this.#data = data;
    this.json = json;
    this.headers = options.headers ?? EMPTY_HEADERS;
    this.msgId = options.msgId;
  }

  get data(): Uint8Array {
    if (this.#data === undefined) {
      let text: string | undefined;
      try {
        text = JSON.stringify(this.json);
      } catch (error) {
        // Not JSON after all (a cycle, a BigInt): the consumer sees text that does not parse, with the reason.
        text = `unserializable value: ${(error as Error).message}`;
      }
      this.#data = encoder.encode(text ?? 'undefined');
    }
    return this.#data;
  }
}

interface Delivery {
  readonly stored: StoredMessage;
  deliveryCount: number;
}

/** A FIFO with O(1) shift (an array with a moving head, compacted now and then). */
class Queue<T> {
  #items: Array<T | undefined> = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T) {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head += 1;
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

interface Subscriber {
  readonly handler: MessageHandler;
  readonly maxInFlight: number;
  readonly ackWaitMs: number;
  inFlight: number;
  draining: boolean;
  idle?: () => void;
  /**
   * Unsettled deliveries in ack-deadline order. Every deadline is `now + ackWaitMs` (working() moves a
   * delivery to the end), so one timer for the oldest covers them all.
   */
  readonly unacked: Set<MemoryMessage>;
  ackTimer?: NodeJS.Timeout;
  readonly group: Group;
}

interface Group {
  readonly name: string;
  readonly ready: Queue<Delivery>;
  readonly subscribers: Subscriber[];
  /** Every subscriber that ever joined (their ack timers are cleared on close). */
  readonly members: Set<Subscriber>;
  /** Deliveries handed out and not yet settled. */
  outstanding: number;
  cursor: number;
  scheduled: boolean;
  /** Dispatches the group; made once per group so scheduling allocates nothing. */
  readonly run: () => void;
  readonly timers: Set<NodeJS.Timeout>;
}

interface TopicState {
  readonly groups: Map<string, Group>;
  retained: StoredMessage[];
}

const RESOLVED: Promise<void> = Promise.resolve();

/** One delivery of a message to one subscriber; settling is once-only. */
class MemoryMessage implements BusMessage {
  readonly topic: string;
  readonly json: unknown;
  readonly headers: BusHeaders;
  readonly msgId: string | undefined;
  readonly deliveryCount: number;
  readonly delivery: Delivery;
  readonly subscriber: Subscriber;
  readonly requeue: (group: Group, delivery: Delivery, delayMs: number) => void;
  settled = false;
  /** When the ack deadline passes (Date.now() ms). */
  deadline: number;

  constructor(delivery: Delivery, subscriber: Subscriber, requeue: MemoryMessage['requeue']) {
    const { stored } = delivery;
    this.topic = stored.topic;
    this.json = stored.json;
    this.headers = stored.headers;
    this.msgId = stored.msgId;
    this.deliveryCount = delivery.deliveryCount;
    this.delivery = delivery;
    this.subscriber = subscriber;
    this.requeue = requeue;
    this.deadline = Date.now() + subscriber.ackWaitMs;
  }

  get data(): Uint8Array {
    return this.delivery.stored.data;
  }

  /** True for the first settle only. */
  settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    const { subscriber } = this;
    subscriber.group.outstanding -= 1;
    subscriber.unacked.delete(this);
    // Nothing left to time out: no timer keeps the process alive for nothing.
    if (subscriber.unacked.size === 0 && subscriber.ackTimer) {
      clearTimeout(subscriber.ackTimer);
      subscriber.ackTimer = undefined;
    }
    return true;
  }

  ack(): Promise<void> {
    this.settle();
    return RESOLVED;
  }

  nak(delayMs = 0): Promise<void> {
    if (this.settle()) this.requeue(this.subscriber.group, this.delivery, delayMs);
    return RESOLVED;
  }

  working(): Promise<void> {
    if (!this.settled) {
      const { unacked } = this.subscriber;
      unacked.delete(this);
      this.deadline = Date.now() + this.subscriber.ackWaitMs;
      unacked.add(this);
    }
    return RESOLVED;
  }

  term(): Promise<void> {
    this.settle();
    return RESOLVED;
  }
}

/** Runs a handler; a throw gives the message back. Settles the subscriber's in-flight slot after. */
async function runHandler(message: MemoryMessage, after: (subscriber: Subscriber) => void): Promise<void> {
  try {
    await message.subscriber.handler(message);
  } catch {
    await message.nak(0);
  }
  after(message.subscriber);
}

/** Creates the in-process bus: real consumer-group semantics, no persistence across restarts. */
export function createMemoryBus(options: MemoryBusOptions = {}): MemoryBus {
  const prefix = options.prefix ?? '';
  const duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DEDUP_WINDOW_MS;
  const maxRetained = options.maxRetainedPerTopic ?? 100_000;
  const topics = new Map<string, TopicState>();
  const dedup = createDedupWindow(duplicateWindowMs);
  const status = createStatusEmitter(options.logger);
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

  const schedule = (group: Group) => {
    if (group.scheduled) return;
    group.scheduled = true;
    queueMicrotask(group.run);
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

  /** Ack deadline passed: those deliveries are void, their messages go back for redelivery. */
  const expireUnacked = (subscriber: Subscriber) => {
    subscriber.ackTimer = undefined;
    const now = Date.now();
    for (const message of subscriber.unacked) {
      if (message.deadline > now) break;
      if (message.settle()) requeue(subscriber.group, message.delivery, 0);
    }
    armAckTimer(subscriber);
  };

  const armAckTimer = (subscriber: Subscriber) => {
    if (subscriber.ackTimer || closed) return;
    const oldest = subscriber.unacked.values().next();
    if (oldest.done) return;
    subscriber.ackTimer = setTimeout(expireUnacked, Math.max(0, oldest.value.deadline - Date.now()), subscriber);
  };

  const afterHandler = (subscriber: Subscriber) => {
    subscriber.inFlight -= 1;
    if (subscriber.draining && subscriber.inFlight === 0) subscriber.idle?.();
    if (subscriber.group.ready.length > 0) schedule(subscriber.group);
  };

  const deliver = (group: Group, subscriber: Subscriber, delivery: Delivery) => {
    delivery.deliveryCount += 1;
    group.outstanding += 1;
    const message = new MemoryMessage(delivery, subscriber, requeue);
    subscriber.unacked.add(message);
    armAckTimer(subscriber);
    subscriber.inFlight += 1;
    void runHandler(message, afterHandler);
  };

  const dispatch = (group: Group) => {
    if (!connected) return;
    while (group.ready.length > 0) {
      const subscriber = nextSubscriber(group);
      if (!subscriber) return;
      deliver(group, subscriber, group.ready.shift()!);
    }
  };

  const createGroup = (name: string): Group => {
    const group: Group = {
      name,
      ready: new Queue(),
      subscribers: [],
      members: new Set(),
      outstanding: 0,
      cursor: 0,
      scheduled: false,
      run: () => {
        group.scheduled = false;
        dispatch(group);
      },
      timers: new Set(),
    };
    return group;
  };

  /** Publishes a message (bytes, or a value for publishJson). Not `async`: one shared resolved promise per publish. */
  const store = (topic: string, data: Uint8Array | undefined, json: unknown, publishOptions: PublishOptions): Promise<void> => {
    if (!connected)
      return Promise.reject(
        new BitBratError('BUS_UNAVAILABLE', `memory bus is not connected (publish to ${prefix}${topic})`, { retryable: true }),
      );
    if (publishOptions.msgId !== undefined && dedup.isDuplicate(publishOptions.msgId)) return RESOLVED;
    const stored = new StoredMessage(topic, data, json, publishOptions);
    const state = topicState(topic);
    if (state.groups.size === 0) {
      if (state.retained.length >= maxRetained) {
        // Not published, so its retry must not count as a duplicate.
        if (publishOptions.msgId !== undefined) dedup.forget(publishOptions.msgId);
        return Promise.reject(
          new BitBratError('PUBLISH_FAILED', `topic ${prefix}${topic} has no consumer and already retains ${maxRetained} messages`, {
            retryable: true,
          }),
        );
      }
      state.retained.push(stored);
      return RESOLVED;
    }
    for (const group of state.groups.values()) {
      group.ready.push({ stored, deliveryCount: 0 });
      schedule(group);
    }
    return RESOLVED;
  };

  const bus: MemoryBus = {
    driver: 'memory',

    async connect() {
      if (closed) throw new BitBratError('BUS_UNAVAILABLE', 'memory bus is closed');
      if (connected) return;
      connected = true;
      status.emit('connected');
    },

    publish(topic: string, data: Uint8Array, publishOptions: PublishOptions = {}): Promise<void> {
      return store(topic, data, undefined, publishOptions);
    },

    publishJson(topic: string, value: unknown, publishOptions: PublishOptions = {}): Promise<void> {
      return store(topic, undefined, value, publishOptions);
    },

    async subscribe(topic: string, groupName: string, handler: MessageHandler, subscribeOptions: SubscribeOptions = {}) {
      const state = topicState(topic);
      let group = state.groups.get(groupName);
      if (!group) {
        group = createGroup(groupName);
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
        unacked: new Set(),
        group,
      };
      group.subscribers.push(subscriber);
      group.members.add(subscriber);
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

    onStatus: status.onStatus,

    async close() {
      if (closed) return;
      await Promise.all([...subscriptions].map((subscription) => subscription.drain()));
      closed = true;
      connected = false;
      for (const state of topics.values()) {
        for (const group of state.groups.values()) {
          for (const timer of group.timers) clearTimeout(timer);
          for (const member of group.members) if (member.ackTimer) clearTimeout(member.ackTimer);
        }
      }
      status.emit('closed');
    },

    setConnected(value: boolean) {
      if (closed || connected === value) return;
      connected = value;
      status.emit(value ? 'connected' : 'disconnected');
      if (value) for (const state of topics.values()) for (const group of state.groups.values()) schedule(group);
    },

    depth(topic: string, groupName: string) {
      const group = topics.get(topic)?.groups.get(groupName);
      return group ? group.ready.length + group.outstanding : 0;
    },
  };
  return bus;
}
