/**
 * The message-bus contract every driver implements (memory, nats, pubsub).
 *
 * Topics are logical names such as `internal.ingress.v1`; each driver prepends its `prefix` itself.
 * Consumers are grouped: every group gets every message of a topic (fan-out across groups), and the
 * subscribers inside one group share the load. Delivery is at-least-once: a message stays on the bus
 * until it is acked, terminated, or its ack deadline passes (then it is redelivered).
 */

/** Headers travel with a message; keys are lower-case. */
export type BusHeaders = Record<string, string>;

/** No headers (shared, frozen). */
export const EMPTY_HEADERS: BusHeaders = Object.freeze({}) as BusHeaders;

/** What a driver logs through; the runtime passes its pino child logger. */
export interface BusLogger {
  info: (...args: any[]) => void;
  warn: (...args: any[]) => void;
  error: (...args: any[]) => void;
  debug?: (...args: any[]) => void;
}

/** The logger of a driver given none. */
export const NO_BUS_LOGGER: BusLogger = { info() {}, warn() {}, error() {} };

/** A delivered message. Exactly one of ack / nak / term settles it; later calls are ignored. */
export interface BusMessage {
  readonly topic: string;
  readonly data: Uint8Array;
  /**
   * The published value itself, when it came through `publishJson` on a driver that keeps it (the
   * memory bus); `data` is then its JSON text, encoded on first read. Shared by every consumer and
   * every redelivery: read it or copy it (`cloneJson`), never change it.
   */
  readonly json?: unknown;
  readonly headers: BusHeaders;
  /** The publisher's message id, when it gave one. */
  readonly msgId?: string;
  /** 1 on first delivery, incremented on every redelivery. */
  readonly deliveryCount: number;
  /** Done: never deliver again to this group. */
  ack(): Promise<void>;
  /** Not done: redeliver to this group after `delayMs` (0 = as soon as possible). */
  nak(delayMs?: number): Promise<void>;
  /** Still working: push the ack deadline out. */
  working(): Promise<void>;
  /** Never deliver again to this group (poison message). */
  term(reason?: string): Promise<void>;
}

export interface PublishOptions {
  headers?: BusHeaders;
  /** Idempotency key: a second publish with the same id inside the driver's dedup window is dropped. */
  msgId?: string;
}

export interface SubscribeOptions {
  /** At most this many messages of this subscription are handled at once. Default 64. */
  maxInFlight?: number;
  /** Unacked messages are redelivered after this long. Default 30 000 ms. */
  ackWaitMs?: number;
  /**
   * The group belongs to one process (a per-instance topic): once nothing has consumed it for this long,
   * the broker may delete it, so instances that are gone leave nothing behind. NATS deletes the consumer
   * after exactly this long; Pub/Sub expires the subscription after at least a day (its minimum). The
   * memory bus forgets everything with the process anyway.
   */
  expireAfterIdleMs?: number;
}

export type MessageHandler = (msg: BusMessage) => Promise<void>;

export interface Subscription {
  readonly topic: string;
  readonly group: string;
  /** Stop taking new messages and wait for the in-flight ones to finish. */
  drain(): Promise<void>;
}

export type BusStatus = 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface BusStatusEvent {
  status: BusStatus;
  error?: Error;
}

/** What a bus that keeps messages on its server holds now (the NATS stream). */
export interface BusStorage {
  /** The stream (or equivalent) name. */
  name: string;
  messages: number;
  bytes: number;
  /** Its size limit; undefined when it has none. */
  maxBytes?: number;
}

/** The one interface services and the runtime see; drivers stay behind `createBus`. */
export interface MessageBus {
  readonly driver: string;
  connect(): Promise<void>;
  /** Resolves once the bus has durably accepted the message; rejects when it could not. */
  publish(topic: string, data: Uint8Array, options?: PublishOptions): Promise<void>;
  /**
   * Publishes a JSON value: what `publish` does with its UTF-8 JSON text, except that an in-process
   * driver (memory) keeps the value and hands it to consumers as `BusMessage.json`, with no text in
   * between. The caller gives the value up: it must not change it afterwards. Drivers that cross a
   * process boundary do not have this; callers publish the text instead.
   */
  publishJson?(topic: string, value: unknown, options?: PublishOptions): Promise<void>;
  subscribe(topic: string, group: string, handler: MessageHandler, options?: SubscribeOptions): Promise<Subscription>;
  isConnected(): boolean;
  /** Status changes (disconnect, reconnect); returns an unsubscribe function. */
  onStatus(listener: (event: BusStatusEvent) => void): () => void;
  /** How much the server keeps for this bus, where a driver can tell (NATS); rejects when it cannot ask now. */
  storage?(): Promise<BusStorage>;
  /** Drain every subscription, then close the connection. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_IN_FLIGHT = 64;
export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_DEDUP_WINDOW_MS = 120_000;
/** How long the JetStream stream keeps messages unless NATS_STREAM_MAX_AGE_MS says otherwise. */
export const DEFAULT_NATS_MAX_AGE_MS = 24 * 60 * 60 * 1_000;
