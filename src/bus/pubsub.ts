import { createHash } from 'node:crypto';
import { createDedupWindow, createStatusEmitter } from './common.js';
import { nextSubscriber } from './round-robin.js';
import {
  Duration,
  PubSub,
  type Message,
  type Subscription as PsSubscription,
  type SubscriptionOptions,
  type Topic,
} from '@google-cloud/pubsub';
import { BitBratError } from '../core/index.js';
import {
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_DEDUP_WINDOW_MS,
  DEFAULT_MAX_IN_FLIGHT,
  EMPTY_HEADERS,
  NO_BUS_LOGGER,
  type BusHeaders,
  type BusLogger,
  type BusMessage,
  type MessageBus,
  type MessageHandler,
  type PublishOptions,
  type SubscribeOptions,
  type Subscription,
} from './types.js';

/**
 * The Google Cloud Pub/Sub driver.
 *
 * Mapping of the bus contract onto Pub/Sub:
 * - topic `t` → Pub/Sub topic `pubsubTopicId(prefix, t)`; group `g` on it → subscription `${topicId}--${g}`.
 *   Topics and subscriptions are created on demand (connect/publish/subscribe). Where IaC owns them and
 *   the service account may not create them (PERMISSION_DENIED), the driver assumes they exist.
 * - every subscription the driver creates has a dead-letter policy to `${prefix}internal.pubsub-deadletter`
 *   (kept by the `--retained` subscription on it) and a retry policy (exponential backoff).
 * - ack deadline: `ackWaitMs` rounded up to whole seconds and clamped to Pub/Sub's 10–600 s. While a
 *   handler runs, the client library's lease manager keeps extending the deadline (up to
 *   `maxExtensionMinutes`), so slow handlers are not redelivered; `working()` sends an explicit modAck.
 * - `nak(delayMs)` → modifyAckDeadline(ceil(delayMs / 1000)) and the message leaves lease management, so
 *   Pub/Sub redelivers it once that deadline passes. A handler that returns without settling gets the rest
 *   of its `ackWaitMs` the same way. `term()` acks (Pub/Sub has no "never again" other than ack) and logs.
 * - `deliveryCount` is Pub/Sub's `deliveryAttempt` (set when a dead-letter policy exists); without one
 *   the driver counts deliveries per message id in memory (per process, best effort).
 * - `msgId` travels as the `bitbrat-msg-id` attribute. Pub/Sub has no server-side dedup by a
 *   publisher-chosen id, so dedup is in memory only: the publisher drops a repeat id inside the window,
 *   and each consumer group drops a second *different* Pub/Sub message carrying an id it already took
 *   inside the window. Both are per process: duplicates across processes still reach consumers, which
 *   is why consumers stay idempotent (R8, docs/slip-rules.md).
 * - headers travel as attributes (keys lower-case; `bitbrat-*` keys are reserved by the driver).
 * - several subscribers of one (topic, group) in this process share one streaming pull and are served
 *   round-robin; subscribers in other processes share the subscription through Pub/Sub itself.
 *
 * Part of this driver reaches into two private members of @google-cloud/pubsub 6.3.0 (pinned): the
 * lease inventory (to release a message with a chosen deadline, which the public API cannot do) and
 * the modAck queue (to send that deadline after the library's receipt modAck, never before it). Both
 * are feature-detected; without them a nak is held in process and nacked when its delay has passed.
 */

export interface PubSubBusOptions {
  /** Google Cloud project (`GOOGLE_CLOUD_PROJECT`). */
  projectId: string;
  /** `host:port` of the Pub/Sub emulator (`PUBSUB_EMULATOR_HOST`); unset talks to Google. */
  emulatorHost?: string;
  /** Prepended to every topic (`BUS_PREFIX`). Default ''. */
  prefix?: string;
  logger?: BusLogger;
  /** Lower bound of the ack deadline in seconds (Pub/Sub allows 10–600). Default 10. */
  minAckDeadlineSec?: number;
  /** How long the lease manager keeps extending a message whose handler still runs. Default 60 minutes. */
  maxExtensionMinutes?: number;
  /** Publisher- and consumer-side msgId dedup window. Default 120 000 ms. */
  duplicateWindowMs?: number;
  /** Dead-letter policy of created subscriptions; `false` creates none. Default 20 attempts (Pub/Sub: 5–100). */
  deadLetter?: { maxDeliveryAttempts: number } | false;
  /** Retry policy of created subscriptions; `false` creates none. Default 1 s to 60 s. */
  retryPolicy?: { minBackoffSec: number; maxBackoffSec: number } | false;
  /** Create topics and subscriptions that do not exist. Default true. */
  autoCreate?: boolean;
  /** Deadline of one publish (including the client's own retries). Default 10 000 ms. */
  publishTimeoutMs?: number;
  /** Deadline of admin calls (create topic / subscription). Default 10 000 ms. */
  adminTimeoutMs?: number;
  /** Publisher batching delay. Default 5 ms. */
  publishBatchMs?: number;
  /** Ack/modAck batching delay. Default 10 ms. */
  ackBatchMs?: number;
  /** Streaming pulls per (topic, group) in this process. Default 1. */
  streamsPerSubscription?: number;
}

export const DEFAULT_PUBSUB_MIN_ACK_DEADLINE_SEC = 10;
export const PUBSUB_MAX_ACK_DEADLINE_SEC = 600;
/** Pub/Sub refuses a subscription expiration shorter than a day. */
export const PUBSUB_MIN_EXPIRATION_SEC = 86_400;
export const DEFAULT_PUBSUB_MAX_EXTENSION_MINUTES = 60;
export const DEFAULT_PUBSUB_MAX_DELIVERY_ATTEMPTS = 20;
export const DEFAULT_PUBSUB_RETRY_POLICY = { minBackoffSec: 1, maxBackoffSec: 60 } as const;
export const DEFAULT_PUBSUB_PUBLISH_TIMEOUT_MS = 10_000;
export const DEFAULT_PUBSUB_ADMIN_TIMEOUT_MS = 10_000;
/** The attribute carrying the publisher's msgId. */
export const PUBSUB_MSG_ID_ATTRIBUTE = 'bitbrat-msg-id';
/** Set on a message with neither data nor headers: Pub/Sub rejects a message with neither. */
const EMPTY_ATTRIBUTE = 'bitbrat-empty';
/** The logical topic dead-lettered messages go to (before the prefix). */
export const PUBSUB_DEADLETTER_TOPIC = 'internal.pubsub-deadletter';
/** Suffix of the subscription that retains dead-lettered messages for inspection. */
export const PUBSUB_DEADLETTER_RETAINED_GROUP = 'retained';

/** gRPC status codes the driver reacts to. */
const Grpc = {
  DEADLINE_EXCEEDED: 4,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  UNIMPLEMENTED: 12,
  UNAVAILABLE: 14,
} as const;
/** How often a disconnected bus checks whether Pub/Sub answers again. */
const PROBE_INTERVAL_MS = 1_000;

const RESOLVED: Promise<void> = Promise.resolve();
const DELIVERY_COUNT_TTL_MS = 60 * 60 * 1_000;
const MAX_ID_LENGTH = 255;

/** Percent-encodes every character Pub/Sub ids do not allow (and `%` itself, so the mapping is one-to-one). */
function encodeIdChars(value: string): string {
  let out = '';
  for (const char of value) {
    if (/^[A-Za-z0-9\-_.~+]$/.test(char)) out += char;
    else for (const byte of Buffer.from(char, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Long ids keep a readable head and a hash of the whole id. */
function fitLength(id: string): string {
  if (id.length <= MAX_ID_LENGTH) return id;
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 12);
  return `${id.slice(0, MAX_ID_LENGTH - hash.length - 1)}_${hash}`;
}

/**
 * A valid Pub/Sub resource id for a name: 3–255 characters of `[A-Za-z0-9-_.~+%]`, starting with a
 * letter and not with `goog`. Valid names (e.g. `internal.ingress.v1`) come back unchanged.
 */
export function pubsubResourceId(name: string): string {
  let id = encodeIdChars(name);
  if (!/^[A-Za-z]/.test(id) || /^goog/i.test(id)) id = `x-${id}`;
  while (id.length < 3) id += '_';
  return fitLength(id);
}

/** The Pub/Sub topic id of a logical topic under a bus prefix. */
export function pubsubTopicId(prefix: string, topic: string): string {
  return pubsubResourceId(`${prefix}${topic}`);
}

/** The subscription id of a consumer group on a topic: `${topicId}--${group}`. */
export function pubsubSubscriptionId(prefix: string, topic: string, group: string): string {
  return fitLength(`${pubsubTopicId(prefix, topic)}--${encodeIdChars(group)}`);
}

/** The dead-letter topic id under a bus prefix. */
export function pubsubDeadLetterTopicId(prefix: string): string {
  return pubsubTopicId(prefix, PUBSUB_DEADLETTER_TOPIC);
}

function grpcCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The private parts of @google-cloud/pubsub 6.3.0 the driver uses; every member is optional. */
interface LibraryInternals {
  modAck?: (message: Message, deadlineSec: number) => Promise<void>;
  _inventory?: { remove?: (message: Message) => void };
  _modAcks?: { numInFlightRequests?: number; onDrain?: () => Promise<void> };
}

function internalsOf(message: Message): LibraryInternals | undefined {
  const sub = (message as unknown as { _subscriber?: LibraryInternals })._subscriber;
  return sub && typeof sub === 'object' ? sub : undefined;
}

interface LocalSubscriber {
  readonly handler: MessageHandler;
  readonly maxInFlight: number;
  readonly ackWaitMs: number;
  inFlight: number;
  draining: boolean;
  idle?: () => void;
}

/** One streaming pull per (topic, group) in this process, shared round-robin by its local subscribers. */
interface Consumer {
  readonly key: string;
  readonly topic: string;
  readonly group: string;
  readonly subscriptionId: string;
  readonly subscription: PsSubscription;
  readonly subscribers: LocalSubscriber[];
  readonly waiting: Message[];
  /** Deliveries per Pub/Sub message id, when the server does not count them (no dead-letter policy). */
  readonly counts: Map<string, { count: number; expires: number }>;
  /** msgId → the Pub/Sub message id that carried it first, for consumer-side dedup. */
  readonly seen: Map<string, { messageId: string; expires: number }>;
  cursor: number;
  leaseSec: number;
  /** The last local subscriber is draining: new messages wait (leased) and go back on close. */
  closing: boolean;
  /** The stream is being closed: anything still arriving goes straight back to Pub/Sub. */
  closed: boolean;
  reopenTimer?: NodeJS.Timeout;
  reopenDelayMs: number;
}

/** Creates the Pub/Sub bus. Nothing talks to Pub/Sub until `connect()`. */
export async function createPubSubBus(options: PubSubBusOptions): Promise<MessageBus> {
  if (!options.projectId) throw new BitBratError('CONFIG_INVALID', 'the pubsub bus needs a project id (GOOGLE_CLOUD_PROJECT)');
  const prefix = options.prefix ?? '';
  const logger = options.logger ?? NO_BUS_LOGGER;
  const minAckDeadlineSec = Math.min(
    PUBSUB_MAX_ACK_DEADLINE_SEC,
    Math.max(DEFAULT_PUBSUB_MIN_ACK_DEADLINE_SEC, options.minAckDeadlineSec ?? DEFAULT_PUBSUB_MIN_ACK_DEADLINE_SEC),
  );
  const maxExtensionMinutes = options.maxExtensionMinutes ?? DEFAULT_PUBSUB_MAX_EXTENSION_MINUTES;
  const duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DEDUP_WINDOW_MS;
  const deadLetter =
    options.deadLetter === false ? undefined : (options.deadLetter ?? { maxDeliveryAttempts: DEFAULT_PUBSUB_MAX_DELIVERY_ATTEMPTS });
  const retryPolicy = options.retryPolicy === false ? undefined : (options.retryPolicy ?? DEFAULT_PUBSUB_RETRY_POLICY);
  const autoCreate = options.autoCreate ?? true;
  const publishTimeoutMs = options.publishTimeoutMs ?? DEFAULT_PUBSUB_PUBLISH_TIMEOUT_MS;
  const adminTimeoutMs = options.adminTimeoutMs ?? DEFAULT_PUBSUB_ADMIN_TIMEOUT_MS;
  const publishBatchMs = options.publishBatchMs ?? 5;
  const ackBatchMs = options.ackBatchMs ?? 10;
  const streams = Math.max(1, options.streamsPerSubscription ?? 1);
  /** Pub/Sub topic id per bus topic: encoding the name per publish would run its regexes every time. */
  const topicIds = new Map<string, string>();
  const topicIdOf = (topic: string): string => {
    let id = topicIds.get(topic);
    if (id === undefined) topicIds.set(topic, (id = pubsubTopicId(prefix, topic)));
    return id;
  };
  if (deadLetter && (deadLetter.maxDeliveryAttempts < 5 || deadLetter.maxDeliveryAttempts > 100)) {
    throw new BitBratError('CONFIG_INVALID', `pubsub deadLetter.maxDeliveryAttempts must be 5–100, got ${deadLetter.maxDeliveryAttempts}`);
  }

  // With the emulator, naming the universe domain keeps the auth library from probing for a metadata
  // server (the emulator needs no credentials).
  const client = new PubSub({
    projectId: options.projectId,
    ...(options.emulatorHost ? { apiEndpoint: options.emulatorHost, emulatorMode: true, universeDomain: 'googleapis.com' } : {}),
  });
  const deadLetterTopicId = pubsubDeadLetterTopicId(prefix);
  const status = createStatusEmitter(logger);
  const emit = status.emit;
  const consumers = new Map<string, Consumer>();
  const handles = new Set<Subscription>();
  const topics = new Map<string, Topic>();
  const ensuredTopics = new Map<string, Promise<void>>();
  const ensuredSubscriptions = new Map<string, Promise<void>>();
  const publishedIds = createDedupWindow(duplicateWindowMs);
  let connected = false;
  /** connect() succeeded once: publishing is allowed from then on (a stream error does not stop it). */
  let started = false;
  let closing = false;
  let closed = false;

  const setConnected = (value: boolean, error?: Error) => {
    if (connected === value || closed) return;
    connected = value;
    emit(value ? 'connected' : 'disconnected', error);
  };

  const unavailable = (what: string, error: unknown) =>
    new BitBratError(
      'BUS_UNAVAILABLE',
      `Pub/Sub ${what} failed (project ${options.projectId}${options.emulatorHost ? `, emulator ${options.emulatorHost}` : ''}): ${describe(error)}`,
      {
        retryable: true,
        cause: error,
      },
    );

  const topicHandle = (topicId: string): Topic => {
    let topic = topics.get(topicId);
    if (!topic) {
      topic = client.topic(topicId, {
        batching: { maxMilliseconds: publishBatchMs, maxMessages: 100 },
        gaxOpts: { timeout: publishTimeoutMs },
      });
      topics.set(topicId, topic);
    }
    return topic;
  };

  /** Creates the topic once per process; an existing or IaC-owned (no permission) topic is fine. */
  const ensureTopic = (topicId: string): Promise<void> => {
    let pending = ensuredTopics.get(topicId);
    if (!pending) {
      pending = (async () => {
        if (!autoCreate) return;
        try {
          await client.createTopic({ name: topicId }, { timeout: adminTimeoutMs });
          logger.info({ topic: topicId }, 'pubsub topic created');
        } catch (error) {
          const code = grpcCode(error);
          if (code === Grpc.ALREADY_EXISTS) return;
          if (code === Grpc.PERMISSION_DENIED) {
            logger.debug?.({ topic: topicId }, 'no permission to create the topic; assuming it is managed by IaC');
            return;
          }
          throw error;
        }
      })();
      ensuredTopics.set(topicId, pending);
      pending.catch(() => ensuredTopics.delete(topicId));
    }
    return pending;
  };

  /** Subscriptions of one process (per-instance topics) and their expiration when idle, in seconds. */
  const expiringSubscriptions = new Map<string, number>();

  /** Creates the subscription with dead-letter and retry policies; falls back to none where unsupported. */
  const ensureSubscription = (topicId: string, subscriptionId: string, ackDeadlineSeconds: number, withPolicies = true): Promise<void> => {
    let pending = ensuredSubscriptions.get(subscriptionId);
    if (!pending) {
      pending = (async () => {
        await ensureTopic(topicId);
        if (!autoCreate) return;
        const expireSec = expiringSubscriptions.get(subscriptionId);
        const base = {
          ackDeadlineSeconds,
          gaxOpts: { timeout: adminTimeoutMs },
          // Without a policy Pub/Sub expires an idle subscription after 31 days; a service's group must
          // not vanish because the service was quiet for a month, so only per-instance groups expire.
          expirationPolicy: expireSec ? { ttl: { seconds: expireSec } } : {},
        };
        const policies = {
          ...(deadLetter && withPolicies
            ? {
                deadLetterPolicy: {
                  deadLetterTopic: `projects/${options.projectId}/topics/${deadLetterTopicId}`,
                  maxDeliveryAttempts: deadLetter.maxDeliveryAttempts,
                },
              }
            : {}),
          ...(retryPolicy && withPolicies
            ? {
                retryPolicy: {
                  minimumBackoff: { seconds: retryPolicy.minBackoffSec },
                  maximumBackoff: { seconds: retryPolicy.maxBackoffSec },
                },
              }
            : {}),
        };
        const create = async (settings: Record<string, unknown>) => {
          await topicHandle(topicId).createSubscription(subscriptionId, settings as never);
          logger.info(
            { topic: topicId, subscription: subscriptionId, policies: Object.keys(settings).filter((key) => key.endsWith('Policy')) },
            'pubsub subscription created',
          );
        };
        try {
          await create({ ...base, ...policies });
        } catch (error) {
          const code = grpcCode(error);
          if (code === Grpc.ALREADY_EXISTS) return;
          if (code === Grpc.PERMISSION_DENIED) {
            logger.debug?.({ subscription: subscriptionId }, 'no permission to create the subscription; assuming it is managed by IaC');
            return;
          }
          if ((code === Grpc.INVALID_ARGUMENT || code === Grpc.UNIMPLEMENTED) && Object.keys(policies).length > 0) {
            logger.warn(
              { err: error, subscription: subscriptionId },
              'subscription policies not supported here; creating it without dead-letter/retry policies',
            );
            try {
              await create(base);
            } catch (retryError) {
              if (grpcCode(retryError) !== Grpc.ALREADY_EXISTS) throw retryError;
            }
            return;
          }
          throw error;
        }
      })();
      ensuredSubscriptions.set(subscriptionId, pending);
      pending.catch(() => ensuredSubscriptions.delete(subscriptionId));
    }
    return pending;
  };

  /** The dead-letter topic plus a subscription on it, so dead-lettered messages are kept, not dropped. */
  const ensureDeadLetter = async () => {
    await ensureTopic(deadLetterTopicId);
    await ensureSubscription(
      deadLetterTopicId,
      pubsubSubscriptionId(prefix, PUBSUB_DEADLETTER_TOPIC, PUBSUB_DEADLETTER_RETAINED_GROUP),
      60,
      false,
    );
  };

  const pruneByExpiry = <V extends { expires: number }>(map: Map<string, V>, now: number) => {
    for (const [key, value] of map) {
      if (value.expires > now) break;
      map.delete(key);
    }
  };

  /**
   * Takes the message out of lease management and sets its deadline to `seconds`, so Pub/Sub redelivers
   * it then. The library's own receipt modAck for a just-received message may still be in flight; the
   * release waits for it (briefly) so that it cannot overwrite the shorter deadline.
   */
  const releaseLease = async (message: Message, seconds: number): Promise<void> => {
    const internals = internalsOf(message);
    if (!internals?.modAck || !internals._inventory?.remove) {
      setTimeout(() => message.nack(), seconds * 1_000).unref?.();
      return;
    }
    internals._inventory.remove(message);
    const queue = internals._modAcks;
    if (queue?.onDrain && (queue.numInFlightRequests ?? 0) > 0 && Date.now() - message.received < 5_000) {
      await Promise.race([queue.onDrain(), sleep(500)]);
    }
    try {
      await internals.modAck(message, seconds);
    } catch (error) {
      logger.warn({ err: error, messageId: message.id }, 'modifyAckDeadline failed; the message is redelivered when its lease runs out');
    }
  };

  const leaseSecondsFor = (ackWaitMs: number) =>
    Math.min(PUBSUB_MAX_ACK_DEADLINE_SEC, Math.max(minAckDeadlineSec, Math.ceil(ackWaitMs / 1_000)));

  const subscriberOptions = (consumer: { subscribers: LocalSubscriber[]; leaseSec: number }): SubscriptionOptions => {
    const maxMessages = Math.max(
      1,
      consumer.subscribers.filter((subscriber) => !subscriber.draining).reduce((sum, subscriber) => sum + subscriber.maxInFlight, 0),
    );
    return {
      flowControl: { maxMessages, allowExcessMessages: false },
      minAckDeadline: Duration.from({ seconds: consumer.leaseSec }),
      maxAckDeadline: Duration.from({ seconds: consumer.leaseSec }),
      maxExtensionTime: Duration.from({ minutes: maxExtensionMinutes }),
      batching: { maxMilliseconds: ackBatchMs },
      streamingOptions: { maxStreams: streams },
      closeOptions: { behavior: 'NACK', timeout: Duration.from({ seconds: 10 }) },
    };
  };

  const deliveryCountOf = (consumer: Consumer, message: Message): number => {
    if (message.deliveryAttempt > 0) return message.deliveryAttempt;
    const now = Date.now();
    pruneByExpiry(consumer.counts, now);
    const previous = consumer.counts.get(message.id);
    const count = (previous?.count ?? 0) + 1;
    consumer.counts.delete(message.id);
    consumer.counts.set(message.id, { count, expires: now + DELIVERY_COUNT_TTL_MS });
    return count;
  };

  /** True when another Pub/Sub message with the same msgId already reached this group inside the window. */
  const isDuplicateDelivery = (consumer: Consumer, message: Message, msgId: string | undefined): boolean => {
    if (msgId === undefined) return false;
    const now = Date.now();
    pruneByExpiry(consumer.seen, now);
    const first = consumer.seen.get(msgId);
    if (first) return first.messageId !== message.id;
    consumer.seen.set(msgId, { messageId: message.id, expires: now + duplicateWindowMs });
    return false;
  };

  const run = (consumer: Consumer, subscriber: LocalSubscriber, message: Message, deliveryCount: number) => {
    subscriber.inFlight += 1;
    const deliveredAt = Date.now();
    let settled = false;
    const attributes = message.attributes ?? {};
    const msgId = attributes[PUBSUB_MSG_ID_ATTRIBUTE];
    let headers: BusHeaders | undefined;
    const settle = (action: () => void | Promise<void>): Promise<void> => {
      if (settled) return RESOLVED;
      settled = true;
      return Promise.resolve(action());
    };
    const busMessage: BusMessage = {
      topic: consumer.topic,
      data: message.data,
      get headers() {
        if (headers) return headers;
        const out: BusHeaders = {};
        for (const [key, value] of Object.entries(attributes))
          if (key !== PUBSUB_MSG_ID_ATTRIBUTE && key !== EMPTY_ATTRIBUTE) out[key] = value;
        headers = Object.keys(out).length === 0 ? EMPTY_HEADERS : out;
        return headers;
      },
      msgId: msgId === undefined || msgId === '' ? undefined : msgId,
      deliveryCount,
      ack: () =>
        settle(() => {
          consumer.counts.delete(message.id);
          message.ack();
        }),
      nak: (delayMs = 0) => settle(() => releaseLease(message, Math.max(0, Math.ceil(delayMs / 1_000)))),
      working: () => {
        if (!settled) message.modAck(consumer.leaseSec);
        return RESOLVED;
      },
      term: (reason?: string) =>
        settle(() => {
          consumer.counts.delete(message.id);
          logger.warn(
            { topic: consumer.topic, group: consumer.group, messageId: message.id, msgId, reason },
            'message terminated (acked, never redelivered)',
          );
          message.ack();
        }),
    };
    let pending: Promise<void>;
    try {
      pending = subscriber.handler(busMessage);
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending
      .then(
        async () => {
          // Not settled: it is redelivered once its ackWaitMs (from delivery) has passed, like the other
          // drivers; a late ack() still works until then.
          if (!settled) await releaseLease(message, Math.max(0, Math.ceil((subscriber.ackWaitMs - (Date.now() - deliveredAt)) / 1_000)));
        },
        async (error: unknown) => {
          logger.warn({ err: error, topic: consumer.topic, group: consumer.group }, 'bus handler threw; message will be redelivered');
          await busMessage.nak(0);
        },
      )
      .catch((error: unknown) => logger.warn({ err: error }, 'settling a message failed'))
      .finally(() => {
        subscriber.inFlight -= 1;
        if (subscriber.draining && subscriber.inFlight === 0) subscriber.idle?.();
        dispatchWaiting(consumer);
      });
  };

  const dispatchWaiting = (consumer: Consumer) => {
    while (consumer.waiting.length > 0) {
      const subscriber = nextSubscriber(consumer);
      if (!subscriber) return;
      const message = consumer.waiting.shift()!;
      run(consumer, subscriber, message, deliveryCountOf(consumer, message));
    }
  };

  const onMessage = (consumer: Consumer, message: Message) => {
    if (consumer.closed) {
      void releaseLease(message, 0);
      return;
    }
    setConnected(true);
    const msgId = message.attributes?.[PUBSUB_MSG_ID_ATTRIBUTE];
    if (isDuplicateDelivery(consumer, message, msgId || undefined)) {
      logger.debug?.({ topic: consumer.topic, group: consumer.group, msgId }, 'duplicate msgId inside the dedup window; acked and dropped');
      message.ack();
      return;
    }
    const subscriber = consumer.waiting.length === 0 ? nextSubscriber(consumer) : undefined;
    if (!subscriber) {
      consumer.waiting.push(message);
      return;
    }
    run(consumer, subscriber, message, deliveryCountOf(consumer, message));
  };

  /**
   * While disconnected, a cheap call checks whether Pub/Sub answers again; any answer (even "permission
   * denied") means it is reachable. Streaming pulls retry on their own, so without this a consumer that
   * gets no messages would never learn that the outage is over.
   */
  let probeTimer: NodeJS.Timeout | undefined;
  const startProbe = () => {
    if (probeTimer || closing || closed) return;
    probeTimer = setTimeout(async () => {
      try {
        await client.getTopics({ pageSize: 1, autoPaginate: false, gaxOpts: { timeout: PROBE_INTERVAL_MS * 2, retry: null } as never });
        setConnected(true);
      } catch (error) {
        const code = grpcCode(error);
        if (code !== Grpc.UNAVAILABLE && code !== Grpc.DEADLINE_EXCEEDED && code !== undefined) setConnected(true);
      } finally {
        probeTimer = undefined;
        if (!connected) startProbe();
      }
    }, PROBE_INTERVAL_MS);
    probeTimer.unref?.();
  };

  const markUnreachable = (error: Error) => {
    setConnected(false, error);
    startProbe();
  };

  /** A stream that ended with a non-retryable error is re-ensured and reopened with backoff. */
  const scheduleReopen = (consumer: Consumer) => {
    if (consumer.closing || closing || consumer.reopenTimer) return;
    const delay = consumer.reopenDelayMs;
    consumer.reopenDelayMs = Math.min(30_000, delay * 2);
    consumer.reopenTimer = setTimeout(() => {
      consumer.reopenTimer = undefined;
      if (consumer.closing || closing) return;
      // The server may have lost everything (an emulator restart): check every resource again.
      ensuredSubscriptions.delete(consumer.subscriptionId);
      ensuredTopics.delete(topicIdOf(consumer.topic));
      ensuredTopics.delete(deadLetterTopicId);
      ensuredSubscriptions.delete(pubsubSubscriptionId(prefix, PUBSUB_DEADLETTER_TOPIC, PUBSUB_DEADLETTER_RETAINED_GROUP));
      (deadLetter ? ensureDeadLetter() : Promise.resolve())
        .then(() => ensureSubscription(topicIdOf(consumer.topic), consumer.subscriptionId, consumer.leaseSec))
        .then(() => {
          if (consumer.closing || closing) return;
          if (!consumer.subscription.isOpen) consumer.subscription.open();
          consumer.reopenDelayMs = 250;
          setConnected(true);
          logger.info({ subscription: consumer.subscriptionId }, 'pubsub subscription reopened');
        })
        .catch((error: unknown) => {
          logger.warn({ err: error, subscription: consumer.subscriptionId }, 'reopening the pubsub subscription failed; retrying');
          scheduleReopen(consumer);
        });
    }, delay);
    consumer.reopenTimer.unref?.();
  };

  const openConsumer = (topic: string, group: string, subscriptionId: string, leaseSec: number, first: LocalSubscriber): Consumer => {
    const subscriptionOptions = subscriberOptions({ subscribers: [first], leaseSec });
    const subscription = client.subscription(subscriptionId, subscriptionOptions);
    const consumer: Consumer = {
      key: `${topic}\u0000${group}`,
      topic,
      group,
      subscriptionId,
      subscription,
      subscribers: [first],
      waiting: [],
      counts: new Map(),
      seen: new Map(),
      cursor: 0,
      leaseSec,
      closing: false,
      closed: false,
      reopenDelayMs: 250,
    };
    subscription.on('message', (message: Message) => onMessage(consumer, message));
    subscription.on('error', (error: Error) => {
      if (consumer.closing || closing) return;
      logger.warn({ err: error, subscription: subscriptionId }, 'pubsub subscription stream failed');
      setConnected(false, error);
      scheduleReopen(consumer);
    });
    // Retryable stream ends (server gone) only show up as debug events; the library retries them itself.
    subscription.on('debug', (debug: { message?: string; error?: Error & { code?: number } }) => {
      if (consumer.closing || closing) return;
      const code = debug.error?.code;
      if (code === Grpc.UNAVAILABLE) markUnreachable(debug.error!);
    });
    subscription.on('close', () => {
      if (consumer.closing || closing) return;
      scheduleReopen(consumer);
    });
    return consumer;
  };

  const closeConsumer = async (consumer: Consumer) => {
    if (consumer.closed) return;
    consumer.closing = true;
    consumer.closed = true;
    consumers.delete(consumer.key);
    if (consumer.reopenTimer) clearTimeout(consumer.reopenTimer);
    // Messages no local subscriber took go straight back to Pub/Sub for the group's other members.
    const waiting = consumer.waiting.splice(0);
    await Promise.all(waiting.map((message) => releaseLease(message, 0)));
    await consumer.subscription
      .close()
      .catch((error: unknown) =>
        logger.warn({ err: error, subscription: consumer.subscriptionId }, 'closing the pubsub subscription failed'),
      );
  };

  const bus: MessageBus = {
    driver: 'pubsub',

    async connect() {
      if (closed || closing) throw new BitBratError('BUS_UNAVAILABLE', 'pubsub bus is closed');
      if (connected) return;
      try {
        if (deadLetter) await ensureDeadLetter();
        else
          await client.getTopics({ pageSize: 1, autoPaginate: false, gaxOpts: { timeout: adminTimeoutMs } }).catch((error: unknown) => {
            if (grpcCode(error) !== Grpc.PERMISSION_DENIED) throw error;
          });
      } catch (error) {
        throw unavailable('connect', error);
      }
      started = true;
      setConnected(true);
    },

    async publish(topic: string, data: Uint8Array, publishOptions: PublishOptions = {}) {
      if (closed || closing || !started)
        throw new BitBratError('BUS_UNAVAILABLE', `pubsub bus is not connected (publish to ${prefix}${topic})`, { retryable: true });
      const { msgId } = publishOptions;
      if (msgId !== undefined && publishedIds.isDuplicate(msgId)) return;
      const attributes: Record<string, string> = {};
      for (const [key, value] of Object.entries(publishOptions.headers ?? {})) attributes[key.toLowerCase()] = value;
      if (msgId !== undefined) attributes[PUBSUB_MSG_ID_ATTRIBUTE] = msgId;
      if (data.byteLength === 0 && Object.keys(attributes).length === 0) attributes[EMPTY_ATTRIBUTE] = '1';
      const topicId = topicIdOf(topic);
      const message = { data: Buffer.from(data.buffer, data.byteOffset, data.byteLength), attributes };
      try {
        await ensureTopic(topicId);
        try {
          await topicHandle(topicId).publishMessage(message);
        } catch (error) {
          // The topic vanished (deleted under us): create it again and try once more.
          if (grpcCode(error) !== Grpc.NOT_FOUND || !autoCreate) throw error;
          ensuredTopics.delete(topicId);
          await ensureTopic(topicId);
          await topicHandle(topicId).publishMessage(message);
        }
      } catch (error) {
        if (msgId !== undefined) publishedIds.forget(msgId);
        if (grpcCode(error) === Grpc.UNAVAILABLE) markUnreachable(error as Error);
        throw new BitBratError('PUBLISH_FAILED', `publish to ${topicId} failed: ${describe(error)}`, {
          retryable: grpcCode(error) !== Grpc.INVALID_ARGUMENT,
          cause: error,
        });
      }
    },

    async subscribe(topic: string, group: string, handler: MessageHandler, subscribeOptions: SubscribeOptions = {}) {
      if (closed || closing) throw new BitBratError('BUS_UNAVAILABLE', `pubsub bus is closed (subscribe to ${prefix}${topic})`);
      const subscriber: LocalSubscriber = {
        handler,
        maxInFlight: Math.max(1, subscribeOptions.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT),
        ackWaitMs: subscribeOptions.ackWaitMs ?? DEFAULT_ACK_WAIT_MS,
        inFlight: 0,
        draining: false,
      };
      const topicId = topicIdOf(topic);
      const subscriptionId = pubsubSubscriptionId(prefix, topic, group);
      const leaseSec = leaseSecondsFor(subscriber.ackWaitMs);
      if (subscribeOptions.expireAfterIdleMs) {
        expiringSubscriptions.set(
          subscriptionId,
          Math.max(PUBSUB_MIN_EXPIRATION_SEC, Math.ceil(subscribeOptions.expireAfterIdleMs / 1_000)),
        );
      }
      try {
        if (deadLetter) await ensureDeadLetter();
        await ensureSubscription(topicId, subscriptionId, leaseSec);
      } catch (error) {
        throw unavailable(`subscribe ${subscriptionId}`, error);
      }
      const key = `${topic}\u0000${group}`;
      let consumer = consumers.get(key);
      if (consumer && !consumer.closing) {
        consumer.subscribers.push(subscriber);
        consumer.leaseSec = Math.max(consumer.leaseSec, leaseSec);
        consumer.subscription.setOptions(subscriberOptions(consumer));
        dispatchWaiting(consumer);
      } else {
        consumer = openConsumer(topic, group, subscriptionId, leaseSec, subscriber);
        consumers.set(key, consumer);
      }
      const owner = consumer;
      const handle: Subscription = {
        topic,
        group,
        async drain() {
          if (subscriber.draining) return;
          subscriber.draining = true;
          const index = owner.subscribers.indexOf(subscriber);
          if (index >= 0) owner.subscribers.splice(index, 1);
          if (owner.subscribers.length === 0) {
            // Stop the stream first so nothing new arrives while the last handlers finish.
            owner.closing = true;
            consumers.delete(owner.key);
          } else {
            owner.subscription.setOptions(subscriberOptions(owner));
          }
          if (subscriber.inFlight > 0) await new Promise<void>((resolve) => (subscriber.idle = resolve));
          if (owner.subscribers.length === 0) await closeConsumer(owner);
          handles.delete(handle);
        },
      };
      handles.add(handle);
      return handle;
    },

    isConnected: () => connected && !closed,

    onStatus: status.onStatus,

    async close() {
      if (closed) return;
      closing = true;
      if (probeTimer) clearTimeout(probeTimer);
      await Promise.all([...handles].map((handle) => handle.drain()));
      await Promise.all([...consumers.values()].map((consumer) => closeConsumer(consumer)));
      for (const topic of topics.values()) await topic.flush().catch(() => undefined);
      await client.close().catch((error: unknown) => logger.warn({ err: error }, 'closing the pubsub client failed'));
      connected = false;
      closed = true;
      emit('closed');
    },
  };
  return bus;
}
