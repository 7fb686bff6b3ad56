// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { createHash } from 'node:crypto';
import {
  canonicalMIMEHeaderKey,
  connect as natsConnect,
  createInbox,
  ClosedConnectionError,
  DrainingConnectionError,
  MsgHdrsImpl,
  nanos,
  type MsgHdrs,
  type NatsConnection,
} from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import { BitBratError } from '../core/index.js';
import { createStatusEmitter } from './common.js';
import {
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_DEDUP_WINDOW_MS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_NATS_MAX_AGE_MS,
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

export interface NatsBusOptions {
  /** One URL or a comma-separated list (`NATS_URL`). */
  servers: string | string[];
  /** Prepended to every topic to form the subject (`BUS_PREFIX`). Default ''. */
  prefix?: string;
  /** Connection name shown by the server. */
  name?: string;
  logger?: BusLogger;
  /** Stream holding `${prefix}internal.>`. Default `BITBRAT`, or `BITBRAT_<PREFIX>` with a prefix. */
  streamName?: string;
  /** Nats-Msg-Id dedup window of the stream. Default 120 000 ms. */
  duplicateWindowMs?: number;
  /** How long the stream keeps messages (limits retention). Default 24 h. */
  maxAgeMs?: number;
  /**
   * Most bytes the stream holds; 0 or unset: no limit. A full stream refuses publishes (PUBLISH_FAILED,
   * retried like any other) until messages age out: it never makes room by dropping unread ones.
   */
  maxBytes?: number;
  /** Stream storage. Default `file`. */
  storage?: 'file' | 'memory';
  /** How long a publish waits for the stream's ack. Default 5 000 ms. */
  publishTimeoutMs?: number;
  /** Pause between reconnect attempts. Default 250 ms. */
  reconnectTimeWaitMs?: number;
  /** Lifetime of one pull request; also bounds how long a consumer takes to notice a lost server. Default 5 000 ms. */
  pullExpiresMs?: number;
}

export const DEFAULT_NATS_PUBLISH_TIMEOUT_MS = 5_000;
export const DEFAULT_NATS_RECONNECT_WAIT_MS = 250;
export const DEFAULT_NATS_PULL_EXPIRES_MS = 5_000;
/** Pause before recreating a stream that disappeared while we were using it. */
const STREAM_RECREATE_DELAY_MS = 500;
/** A handler that throws gets its message back after this pause (not in a hot loop). */
export const HANDLER_ERROR_NAK_DELAY_MS = 100;

const MSG_ID_HEADER = 'Nats-Msg-Id';
const RESOLVED: Promise<void> = Promise.resolve();

/** Stream names may not contain `.`, `*`, `>` or whitespace; keep them readable. */
export function natsStreamName(prefix: string): string {
  const suffix = prefix
    .toUpperCase()
    .replace(/[^A-Z0-9_-]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return suffix ? `BITBRAT_${suffix}` : 'BITBRAT';
}

/**
 * One durable consumer per (group, topic). Only `[A-Za-z0-9_-]` is allowed, so the readable part is
 * sanitized and a short hash of the exact pair keeps distinct pairs distinct.
 */
export function natsDurableName(group: string, topic: string): string {
  const readable = `${group}__${topic}`.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 120);
  const hash = createHash('sha256').update(`${group}\u0000${topic}`).digest('hex').slice(0, 8);
  return `${readable}_${hash}`;
}

function semverAtLeast(version: string | undefined, major: number, minor: number): boolean {
  const match = /^v?(\d+)\.(\d+)/.exec(version ?? '');
  if (!match) return false;
  const [maj, min] = [Number(match[1]), Number(match[2])];
  return maj > major || (maj === major && min >= minor);
}

function isApiError(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

interface PendingPublish {
  readonly resolve: () => void;
  readonly reject: (error: BitBratError) => void;
  readonly deadline: number;
  readonly subject: string;
}

interface AckedPublisher {
  publish(subject: string, data: Uint8Array, headers: MsgHdrs | undefined): Promise<void>;
  /** Acks `msg` with the next batch of outgoing commands. */
  ack(msg: JsMsg): void;
  /** Hands every queued command to the client now. */
  flush(): void;
  close(): void;
}

const decoder = new TextDecoder();

/** Header names already checked (the runtime uses a handful; bounded in case callers invent names). */
const checkedHeaderNames = new Set<string>();

/**
 * `hdrs.set(key, value)` (exact match) without its per-call cost: nats.js canonicalizes and searches
 * the key twice and compiles a regex for every value. Same checks: a name nats.js would reject throws
 * its error (checked once per name), a value with CR or LF throws, the value is trimmed.
 */
function setHeader(hdrs: MsgHdrsImpl, key: string, value: string) {
  if (!checkedHeaderNames.has(key)) {
    canonicalMIMEHeaderKey(key);
    if (checkedHeaderNames.size < 1_000) checkedHeaderNames.add(key);
  }
  if (value.includes('\r') || value.includes('\n')) MsgHdrsImpl.validHeaderValue(value);
  hdrs.headers.set(key, [value.trim()]);
}

/** A JetStream publish waiting in the outbox. */
class QueuedPublish {
  constructor(
    readonly subject: string,
    readonly data: Uint8Array,
    readonly options: { reply: string; headers?: MsgHdrs },
    readonly token: string,
  ) {}
}

/**
 * JetStream publish: the message goes out with a reply subject under one shared inbox, and the stream's
 * PubAck settles the promise. This is what `js.publish` does, minus its per-call request object, timer,
 * and the two Error objects nats.js allocates for every request; deadlines are swept by one timer.
 *
 * Publishes and acks go through an outbox that hands them to the client once per event-loop turn
 * (setImmediate). nats.js writes its outbound buffer to the socket in a microtask queued by the first
 * command, so commands issued from later microtasks (each `await` in a handler is one) would each cost
 * a write syscall of their own; from the outbox, everything one turn produced leaves in one write.
 * Order is kept: commands go out in the order they were issued.
 */
function createAckedPublisher(nc: NatsConnection, timeoutMs: number): AckedPublisher {
  const inbox = createInbox();
  const replyPrefix = `${inbox}.`;
  const pending = new Map<string, PendingPublish>();
  let counter = 0;
  let outbox: Array<QueuedPublish | JsMsg> = [];
  let scheduled: NodeJS.Immediate | undefined;
  let closed = false;

  const flush = () => {
    scheduled = undefined;
    const batch = outbox;
    if (batch.length === 0) return;
    outbox = [];
    for (const op of batch) {
      if (op instanceof QueuedPublish) {
        try {
          nc.publish(op.subject, op.data, op.options);
        } catch (error) {
          const entry = pending.get(op.token);
          pending.delete(op.token);
          entry?.reject(error as BitBratError);
        }
      } else {
        try {
          op.ack();
        } catch {
          // closed: the server redelivers after ack_wait (see NatsBusMessage)
        }
      }
    }
  };

  const enqueue = (op: QueuedPublish | JsMsg) => {
    outbox.push(op);
    scheduled ??= setImmediate(flush);
  };

  nc.subscribe(`${inbox}.*`, {
    callback: (error, msg) => {
      if (error) return;
      const token = msg.subject.slice(replyPrefix.length);
      const entry = pending.get(token);
      if (!entry) return;
      pending.delete(token);
      if (msg.data.length === 0) {
        const code = msg.headers?.code ?? 0;
        entry.reject(
          new BitBratError(
            'PUBLISH_FAILED',
            `publish to ${entry.subject}: ${code === 503 ? 'no stream accepts this subject' : `status ${code}`}`,
            {
              retryable: true,
              details: { status: code },
            },
          ),
        );
        return;
      }
      let ack: { error?: { code?: number; err_code?: number; description?: string } };
      try {
        ack = JSON.parse(decoder.decode(msg.data)) as typeof ack;
      } catch (parseError) {
        entry.reject(
          new BitBratError('PUBLISH_FAILED', `publish to ${entry.subject}: unreadable ack`, { retryable: true, cause: parseError }),
        );
        return;
      }
      if (ack.error) {
        entry.reject(
          new BitBratError(
            'PUBLISH_FAILED',
            `publish to ${entry.subject} rejected by JetStream: ${ack.error.description ?? 'unknown error'} (${ack.error.err_code ?? ack.error.code})`,
            {
              retryable: true,
              details: { ...ack.error },
            },
          ),
        );
        return;
      }
      entry.resolve();
    },
  });

  // Deadlines are all `now + timeoutMs`, so the map (insertion-ordered) is also deadline-ordered.
  const sweeper = setInterval(
    () => {
      const now = Date.now();
      for (const [token, entry] of pending) {
        if (entry.deadline > now) break;
        pending.delete(token);
        entry.reject(
          new BitBratError('BUS_UNAVAILABLE', `publish to ${entry.subject}: no ack from JetStream within ${timeoutMs} ms`, {
            retryable: true,
          }),
        );
      }
    },
    Math.max(50, Math.min(250, Math.floor(timeoutMs / 4))),
  );
  sweeper.unref?.();

  return {
    publish(subject, data, headers) {
      return new Promise<void>((resolve, reject) => {
        counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
        const token = counter.toString(36);
        pending.set(token, { resolve, reject, deadline: Date.now() + timeoutMs, subject });
        enqueue(
          new QueuedPublish(subject, data, headers ? { reply: replyPrefix + token, headers } : { reply: replyPrefix + token }, token),
        );
      });
    },
    ack(msg) {
      // After close nothing flushes the outbox any more: ack directly (it throws on a closed connection).
      if (closed) {
        try {
          msg.ack();
        } catch {
          // closed: redelivered after ack_wait
        }
        return;
      }
      enqueue(msg);
    },
    flush() {
      if (scheduled) clearImmediate(scheduled);
      flush();
    },
    close() {
      if (scheduled) clearImmediate(scheduled);
      scheduled = undefined;
      flush();
      closed = true;
      clearInterval(sweeper);
      for (const entry of pending.values())
        entry.reject(
          new BitBratError('BUS_UNAVAILABLE', `publish to ${entry.subject}: the NATS bus closed before the ack`, { retryable: true }),
        );
      pending.clear();
    },
  };
}

/** A delivered JetStream message behind the bus contract; settling is once-only. */
class NatsBusMessage implements BusMessage {
  readonly topic: string;
  readonly deliveryCount: number;
  #msg: JsMsg;
  #settled = false;
  #headers: BusHeaders | undefined;
  #termReason: boolean;

  #acks: AckedPublisher | undefined;

  constructor(topic: string, msg: JsMsg, termReason: boolean, acks: AckedPublisher | undefined) {
    this.topic = topic;
    this.#msg = msg;
    this.#termReason = termReason;
    this.#acks = acks;
    this.deliveryCount = msg.info.deliveryCount;
  }

  get data(): Uint8Array {
    return this.#msg.data;
  }

  get msgId(): string | undefined {
    return this.#msg.headers?.get(MSG_ID_HEADER) || undefined;
  }

  /** Built on first use: most consumers never read the headers. */
  get headers(): BusHeaders {
    if (this.#headers) return this.#headers;
    const raw = this.#msg.headers;
    if (!raw) return (this.#headers = EMPTY_HEADERS);
    const out: BusHeaders = {};
    for (const [key, values] of raw) {
      const lower = key.toLowerCase();
      if (lower === 'nats-msg-id' || values.length === 0) continue;
      out[lower] = values[0]!;
    }
    return (this.#headers = out);
  }

  /** True for the first settle call only. */
  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    return true;
  }

  // Acks are fire-and-forget: a lost ack means a redelivery, which consumers already tolerate (R8).
  // A closed connection makes them throw; the server then redelivers after ack_wait anyway.

  ack(): Promise<void> {
    if (this.#settle()) {
      if (this.#acks) this.#acks.ack(this.#msg);
      else {
        try {
          this.#msg.ack();
        } catch {
          // see above
        }
      }
    }
    return RESOLVED;
  }

  nak(delayMs = 0): Promise<void> {
    if (this.#settle()) {
      try {
        this.#msg.nak(delayMs > 0 ? Math.ceil(delayMs) : undefined);
      } catch {
        // see above
      }
    }
    return RESOLVED;
  }

  working(): Promise<void> {
    if (!this.#settled) {
      try {
        this.#msg.working();
      } catch {
        // see above
      }
    }
    return RESOLVED;
  }

  term(reason?: string): Promise<void> {
    if (this.#settle()) {
      // Servers before 2.10 only recognise a bare `+TERM`; with a reason they would ignore the term.
      const withReason = this.#termReason && reason ? reason.replace(/[\r\n]+/g, ' ').slice(0, 512) : undefined;
      try {
        this.#msg.term(withReason);
      } catch {
        // see above
      }
    }
    return RESOLVED;
  }
}

interface SubscriptionState {
  readonly topic: string;
  readonly group: string;
  readonly durable: string;
  readonly config: ConsumerConfig;
  readonly handler: MessageHandler;
  readonly maxInFlight: number;
  inFlight: number;
  readonly queue: JsMsg[];
  draining: boolean;
  messages?: ConsumerMessages;
  /** Bumped whenever the consume loop is replaced, so a stale loop's end is ignored. */
  generation: number;
  idle?: () => void;
  drained?: Promise<void>;
  restartTimer?: NodeJS.Timeout;
}

/**
 * The JetStream driver. One stream per bus prefix holds `${prefix}internal.>`; every (group, topic)
 * pair is a durable pull consumer filtered on its subject, so groups fan out and the subscribers of a
 * group share its messages. Delivery is at-least-once with server-side ack deadlines and redelivery.
 */
export async function createNatsBus(options: NatsBusOptions): Promise<MessageBus> {
  const prefix = options.prefix ?? '';
  const logger = options.logger ?? NO_BUS_LOGGER;
  const streamName = options.streamName ?? natsStreamName(prefix);
  const streamSubject = `${prefix}internal.>`;
  const duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DEDUP_WINDOW_MS;
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_NATS_MAX_AGE_MS;
  const maxBytes = options.maxBytes !== undefined && options.maxBytes > 0 ? Math.floor(options.maxBytes) : -1;
  const publishTimeoutMs = options.publishTimeoutMs ?? DEFAULT_NATS_PUBLISH_TIMEOUT_MS;
  const pullExpiresMs = Math.max(1_000, options.pullExpiresMs ?? DEFAULT_NATS_PULL_EXPIRES_MS);
  const servers = Array.isArray(options.servers)
    ? options.servers
    : options.servers
        .split(',')
        .map((server) => server.trim())
        .filter(Boolean);

  const status = createStatusEmitter(logger);
  const emit = status.emit;
  const subscriptions = new Set<SubscriptionState>();
  let nc: NatsConnection | undefined;
  let js: JetStreamClient | undefined;
  let jsm: JetStreamManager | undefined;
  let publisher: AckedPublisher | undefined;
  let healingStream: Promise<void> | undefined;
  let connecting: Promise<void> | undefined;
  let connected = false;
  let closing: Promise<void> | undefined;
  let closed = false;
  let termReason = false;

  const setConnected = (value: boolean, error?: Error) => {
    if (connected === value) return;
    connected = value;
    emit(value ? 'connected' : 'disconnected', error);
  };

  const streamConfig = (): Partial<StreamConfig> & { name: string } => ({
    name: streamName,
    subjects: [streamSubject],
    retention: RetentionPolicy.Limits,
    storage: options.storage === 'memory' ? StorageType.Memory : StorageType.File,
    // Only a byte limit discards anything: refuse new messages rather than drop old ones nobody has read.
    discard: DiscardPolicy.New,
    duplicate_window: nanos(duplicateWindowMs),
    max_age: nanos(maxAgeMs),
    max_bytes: maxBytes,
    num_replicas: 1,
  });

  /** Creates the stream, or brings an existing one to our subjects, dedup window, age and size limits. */
  const ensureStream = async (manager: JetStreamManager) => {
    const wanted = streamConfig();
    for (let attempt = 0; ; attempt += 1) {
      try {
        const info = await manager.streams.info(streamName);
        const subjects = info.config.subjects ?? [];
        const needsSubject = !subjects.includes(streamSubject);
        const limitsDiffer =
          info.config.duplicate_window !== wanted.duplicate_window ||
          info.config.max_age !== wanted.max_age ||
          info.config.max_bytes !== wanted.max_bytes ||
          info.config.discard !== wanted.discard;
        if (needsSubject || limitsDiffer) {
          await manager.streams.update(streamName, {
            ...info.config,
            subjects: needsSubject ? [...subjects, streamSubject] : subjects,
            duplicate_window: wanted.duplicate_window,
            max_age: wanted.max_age,
            max_bytes: wanted.max_bytes,
            discard: wanted.discard,
          });
          logger.info({ stream: streamName }, 'jetstream stream updated');
        }
        return;
      } catch (error) {
        if (!isApiError(error, JetStreamApiCodes.StreamNotFound) || attempt > 2) throw error;
      }
      try {
        await manager.streams.add(wanted);
        logger.info({ stream: streamName, subjects: wanted.subjects }, 'jetstream stream created');
        return;
      } catch (error) {
        // Another process created it between our info and add: loop to compare and update.
        if (attempt > 2) throw error;
      }
    }
  };

  /** Creates the durable consumer, or updates the settings a subscriber may change. */
  const ensureConsumer = async (manager: JetStreamManager, state: SubscriptionState) => {
    const { config } = state;
    for (let attempt = 0; ; attempt += 1) {
      try {
        const info = await manager.consumers.info(streamName, state.durable);
        if (info.config.ack_wait !== config.ack_wait || info.config.max_ack_pending !== config.max_ack_pending) {
          await manager.consumers.update(streamName, state.durable, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending });
        }
        return;
      } catch (error) {
        if (!isApiError(error, JetStreamApiCodes.ConsumerNotFound) || attempt > 2) throw error;
      }
      try {
        await manager.consumers.add(streamName, config);
        return;
      } catch (error) {
        if (attempt > 2) throw error;
      }
    }
  };

  const finishIfIdle = (state: SubscriptionState) => {
    if (state.draining && state.inFlight === 0) state.idle?.();
  };

  const run = (state: SubscriptionState, msg: JsMsg) => {
    state.inFlight += 1;
    const message = new NatsBusMessage(state.topic, msg, termReason, publisher);
    let pending: Promise<void>;
    try {
      pending = state.handler(message);
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      () => settleDone(state),
      (error: unknown) => {
        logger.warn({ err: error, topic: state.topic, group: state.group }, 'bus handler threw; message will be redelivered');
        void message.nak(HANDLER_ERROR_NAK_DELAY_MS);
        settleDone(state);
      },
    );
  };

  const settleDone = (state: SubscriptionState) => {
    state.inFlight -= 1;
    if (state.draining) return finishIfIdle(state);
    const next = state.queue.shift();
    if (next) run(state, next);
  };

  /** Called synchronously by the client for every message; must never throw. */
  const onMessage = (state: SubscriptionState, msg: JsMsg) => {
    if (state.draining) {
      try {
        msg.nak();
      } catch {
        // closed: redelivered after ack_wait anyway
      }
      return;
    }
    // max_ack_pending bounds what the server hands us; the queue only absorbs races with it.
    if (state.inFlight < state.maxInFlight) run(state, msg);
    else state.queue.push(msg);
  };

  const scheduleRestart = (state: SubscriptionState, delayMs: number) => {
    if (state.draining || closing || state.restartTimer) return;
    state.restartTimer = setTimeout(() => {
      state.restartTimer = undefined;
      void startConsuming(state).catch((error) => {
        logger.warn({ err: error, topic: state.topic, group: state.group }, 'could not restart the consumer; retrying');
        scheduleRestart(state, Math.min(5_000, Math.max(250, delayMs * 2)));
      });
    }, delayMs);
    state.restartTimer.unref?.();
  };

  /** Starts (or replaces) the pull loop of a subscription. The client re-pulls after reconnects itself. */
  const startConsuming = async (state: SubscriptionState) => {
    if (!js || !jsm || state.draining || closing) return;
    const generation = ++state.generation;
    const previous = state.messages;
    state.messages = undefined;
    previous?.stop();
    const consumer = await js.consumers.get(streamName, state.durable);
    if (state.draining || closing || generation !== state.generation) return;
    const messages = await consumer.consume({
      max_messages: state.maxInFlight,
      expires: pullExpiresMs,
      callback: (msg) => onMessage(state, msg),
    });
    state.messages = messages;
    void watchConsumer(state, messages, generation);
    void messages.closed().then((error) => {
      if (generation !== state.generation || state.draining || closing) return;
      logger.warn({ err: error, topic: state.topic, group: state.group }, 'consumer loop ended; restarting it');
      scheduleRestart(state, 250);
    });
  };

  /** Recreates the stream once for everyone who noticed it missing (deleted, or a server without its store). */
  const healStream = (): Promise<void> =>
    (healingStream ??= (async () => {
      // A stream deleted a moment ago may still be removing its files (nats-server 2.9 does that after
      // replying), and a stream recreated under the same name before then loses its blocks.
      await new Promise((resolve) => setTimeout(resolve, STREAM_RECREATE_DELAY_MS));
      await ensureStream(jsm!);
    })().finally(() => {
      healingStream = undefined;
    }));

  const recreateConsumer = async (state: SubscriptionState) => {
    try {
      await ensureConsumer(jsm!, state);
    } catch (error) {
      if (!isApiError(error, JetStreamApiCodes.StreamNotFound)) throw error;
      await healStream();
      await ensureConsumer(jsm!, state);
    }
  };

  /** A deleted consumer or stream is recreated and a fresh pull loop started, instead of waiting on heartbeats. */
  const watchConsumer = async (state: SubscriptionState, messages: ConsumerMessages, generation: number) => {
    for await (const event of messages.status()) {
      if (generation !== state.generation || state.draining || closing) return;
      if (event.type === 'consumer_deleted' || event.type === 'consumer_not_found' || event.type === 'stream_not_found') {
        logger.warn({ event: event.type, topic: state.topic, group: state.group }, 'consumer missing on the server; recreating it');
        try {
          await recreateConsumer(state);
          scheduleRestart(state, 0);
        } catch (error) {
          logger.warn({ err: error, topic: state.topic }, 'recreating the consumer failed; the client keeps retrying');
        }
      }
    }
  };

  const afterReconnect = async () => {
    // A server that came back without its store has no stream; recreate before anyone publishes.
    for (let attempt = 0; !closing && connected; attempt += 1) {
      try {
        await ensureStream(jsm!);
        for (const state of subscriptions) await ensureConsumer(jsm!, state);
        return;
      } catch (error) {
        if (attempt % 10 === 0) logger.warn({ err: error }, 'jetstream not ready after reconnect; retrying');
        await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * 2 ** Math.min(attempt, 5))));
      }
    }
  };

  const watchStatus = async (connection: NatsConnection) => {
    for await (const status of connection.status()) {
      switch (status.type) {
        case 'disconnect':
          logger.warn({ server: status.server }, 'nats disconnected');
          setConnected(false);
          break;
        case 'reconnect':
          logger.info({ server: status.server }, 'nats reconnected');
          termReason = semverAtLeast(connection.info?.version, 2, 10);
          setConnected(true);
          void afterReconnect();
          break;
        case 'error':
          logger.warn({ err: status.error }, 'nats connection error');
          break;
        default:
          break;
      }
    }
  };

  const openConnection = async () => {
    let connection: NatsConnection;
    try {
      connection = await natsConnect({
        servers,
        name: options.name,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: options.reconnectTimeWaitMs ?? DEFAULT_NATS_RECONNECT_WAIT_MS,
        reconnectJitter: 100,
        pingInterval: 10_000,
        maxPingOut: 3,
        // Otherwise every request allocates two Errors for stack context: ~15% of the CPU of a relay.
        noAsyncTraces: true,
      });
    } catch (error) {
      throw new BitBratError('BUS_UNAVAILABLE', `cannot connect to NATS at ${servers.join(',')}: ${errorText(error)}`, {
        retryable: true,
        cause: error,
      });
    }
    try {
      const manager = await jetstreamManager(connection, { timeout: publishTimeoutMs });
      await ensureStream(manager);
      nc = connection;
      jsm = manager;
      js = jetstream(connection, { timeout: publishTimeoutMs });
      publisher = createAckedPublisher(connection, publishTimeoutMs);
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw new BitBratError('BUS_UNAVAILABLE', `JetStream is not usable at ${servers.join(',')}: ${errorText(error)}`, {
        retryable: true,
        cause: error,
      });
    }
    termReason = semverAtLeast(connection.info?.version, 2, 10);
    void watchStatus(connection);
    void connection.closed().then((error) => {
      connected = false;
      publisher?.close();
      if (!closing) logger.error({ err: error }, 'nats connection closed unexpectedly');
      if (!closed) {
        closed = true;
        emit('closed', error ?? undefined);
      }
    });
    connected = true;
    emit('connected');
  };

  const publishError = (error: unknown, subject: string): BitBratError => {
    if (error instanceof BitBratError) return error;
    if (error instanceof ClosedConnectionError || error instanceof DrainingConnectionError) {
      return new BitBratError('BUS_UNAVAILABLE', `publish to ${subject}: the NATS connection is closed`, {
        retryable: false,
        cause: error,
      });
    }
    // What nc.publish throws synchronously (a bad subject or header) does not get better by retrying.
    return new BitBratError('PUBLISH_FAILED', `publish to ${subject} failed: ${errorText(error)}`, { retryable: false, cause: error });
  };

  const bus: MessageBus = {
    driver: 'nats',

    connect() {
      if (closed || closing) return Promise.reject(new BitBratError('BUS_UNAVAILABLE', 'the NATS bus is closed'));
      if (!connecting) {
        connecting = openConnection().catch((error) => {
          connecting = undefined;
          throw error;
        });
      }
      return connecting;
    },

    async publish(topic: string, data: Uint8Array, publishOptions?: PublishOptions) {
      const subject = prefix + topic;
      if (closed || closing || !publisher) {
        throw new BitBratError(
          'BUS_UNAVAILABLE',
          `publish to ${subject}: the NATS bus is ${closed || closing ? 'closed' : 'not connected'}`,
          { retryable: !(closed || closing) },
        );
      }
      if (!connected) throw new BitBratError('BUS_UNAVAILABLE', `publish to ${subject}: NATS is disconnected`, { retryable: true });
      let hdrs: MsgHdrsImpl | undefined;
      const given = publishOptions?.headers;
      if (given) {
        for (const key in given) {
          hdrs ??= new MsgHdrsImpl();
          setHeader(hdrs, key, given[key]!);
        }
      }
      const msgId = publishOptions?.msgId;
      if (msgId !== undefined) {
        hdrs ??= new MsgHdrsImpl();
        setHeader(hdrs, MSG_ID_HEADER, msgId);
      }
      try {
        await publisher.publish(subject, data, hdrs);
      } catch (error) {
        // No responders on a subject of ours: the stream is gone. Recreate it so the caller's retry lands.
        if (error instanceof BitBratError && error.details?.status === 503 && subject.startsWith(streamSubject.slice(0, -1))) {
          void healStream().catch((healError) => logger.warn({ err: healError }, 'recreating the stream failed'));
        }
        throw publishError(error, subject);
      }
    },

    async subscribe(topic: string, group: string, handler: MessageHandler, subscribeOptions: SubscribeOptions = {}) {
      await bus.connect();
      const maxInFlight = Math.max(1, subscribeOptions.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
      const ackWaitMs = subscribeOptions.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
      const durable = natsDurableName(group, topic);
      const state: SubscriptionState = {
        topic,
        group,
        durable,
        // Deliver policy `all`: a new group starts at the oldest retained message, so nothing published
        // before the first subscriber came up is lost (the memory bus gives the first group its backlog).
        // The stream is per prefix and bounded by max_age, so "all" never means unbounded history.
        config: {
          durable_name: durable,
          filter_subject: prefix + topic,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          replay_policy: ReplayPolicy.Instant,
          ack_wait: nanos(ackWaitMs),
          // The server never lets more than this many messages of the group be unacked at once.
          max_ack_pending: maxInFlight,
          max_deliver: -1,
          ...(subscribeOptions.expireAfterIdleMs ? { inactive_threshold: nanos(subscribeOptions.expireAfterIdleMs) } : {}),
        },
        handler,
        maxInFlight,
        inFlight: 0,
        queue: [],
        draining: false,
        generation: 0,
      };
      try {
        await ensureConsumer(jsm!, state);
        await startConsuming(state);
      } catch (error) {
        throw new BitBratError('BUS_UNAVAILABLE', `cannot subscribe ${group} to ${prefix}${topic}: ${errorText(error)}`, {
          retryable: true,
          cause: error,
        });
      }
      subscriptions.add(state);
      const subscription: Subscription = {
        topic,
        group,
        drain: () => drainState(state),
      };
      return subscription;
    },

    isConnected: () => connected && !closed,

    onStatus: status.onStatus,

    async storage() {
      if (!jsm || !connected) throw new BitBratError('BUS_UNAVAILABLE', 'NATS is not connected', { retryable: true });
      const info = await jsm.streams.info(streamName);
      return {
        name: streamName,
        messages: info.state.messages,
        bytes: info.state.bytes,
        ...(info.config.max_bytes > 0 ? { maxBytes: info.config.max_bytes } : {}),
      };
    },

    close() {
      closing ??= shutdown();
      return closing;
    },
  };

  const shutdown = async () => {
    await connecting?.catch(() => undefined);
    await Promise.all([...subscriptions].map((state) => drainState(state)));
    const connection = nc;
    // Acks and publishes still in the outbox go to the client before it drains.
    publisher?.flush();
    if (connection && !connection.isClosed()) {
      // drain() flushes outstanding acks; a dead server would make it wait, so bound it.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([connection.drain().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, 2_000)))]);
      clearTimeout(timer);
      if (!connection.isClosed()) await connection.close().catch(() => undefined);
    }
    publisher?.close();
    connected = false;
    if (!closed) {
      closed = true;
      emit('closed');
    }
  };

  /** Stops pulling, hands prefetched messages back, and waits for the running handlers. */
  const drainState = (state: SubscriptionState): Promise<void> =>
    (state.drained ??= (async () => {
      state.draining = true;
      state.generation += 1;
      if (state.restartTimer) clearTimeout(state.restartTimer);
      const messages = state.messages;
      state.messages = undefined;
      await messages?.close().catch(() => undefined);
      // Prefetched but never started: give them straight back for another subscriber.
      for (const msg of state.queue.splice(0)) {
        try {
          msg.nak();
        } catch {
          // closed: redelivered after ack_wait
        }
      }
      if (state.inFlight > 0) await new Promise<void>((resolve) => (state.idle = resolve));
      subscriptions.delete(state);
    })());

  return bus;
}
