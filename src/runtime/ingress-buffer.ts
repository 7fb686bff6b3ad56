/**
 * What every connector uses to publish ingress: a bounded, ordered buffer in front of the bus. A message
 * the bus refuses (past the publish retries) stays at the head and is published again, in order, when the
 * bus is back; new messages queue behind it. Only two things lose a message, and each is counted
 * (`bitbrat_ingress_lost_total`, `lost` on the connector's status) and logged: the buffer being full
 * (`INGRESS_BUFFER_MAX`), and a shutdown that cannot flush within its bound.
 */
import { Topic, type Envelope } from '../core/index.js';
import type { Logger } from './logger.js';
import type { RuntimeMetrics } from './metrics.js';
import type { ServiceContext } from './service.js';

/** First and longest wait between re-publish attempts while the bus refuses. */
export const INGRESS_RETRY_INITIAL_MS = 250;
export const INGRESS_RETRY_MAX_MS = 10_000;
/** How long stop() keeps trying to flush before counting what is left as lost. */
export const INGRESS_CLOSE_TIMEOUT_MS = 5_000;

/** Why a message was lost. */
export type IngressLossReason = 'buffer_full' | 'shutdown';

export interface IngressBufferOptions {
  /** Publishes one envelope (with the bus's own retries); a rejection means "not now". */
  publish(envelope: Envelope, msgId: string | undefined): Promise<void>;
  /** Most messages held; one more is lost (counted). */
  max: number;
  logger: Pick<Logger, 'warn' | 'error' | 'info'>;
  /** Called once per lost message, after it is counted. */
  onLost?(envelope: Envelope, reason: IngressLossReason): void;
  retryInitialMs?: number;
  retryMaxMs?: number;
}

/** What a connector shows about its ingress (debug endpoints, source status). */
export interface IngressBufferSnapshot {
  pending: number;
  lost: number;
  published: number;
  /** True while the bus refuses and messages wait. */
  blocked: boolean;
  oldestWaitingMs: number | null;
}

/** Room held in the buffer for messages a connector is about to push (see `IngressBuffer.reserve`). */
export interface IngressReservation {
  /** Queues one message into the held room (beyond it, or after close, it is pushed as usual). */
  push(envelope: Envelope, msgId?: string): void;
  /** Gives back the room not used. */
  release(): void;
}

export interface IngressBuffer {
  /** Queues a message for ingress; never throws, never blocks the connector. */
  push(envelope: Envelope, msgId?: string): void;
  /**
   * Holds room for `count` messages, or refuses (undefined) when the buffer has not that much room. Not a
   * loss: for a sender that retries (a webhook answered 503), so nothing is counted; the caller must
   * answer so that the sender tries again.
   */
  reserve(count: number): IngressReservation | undefined;
  readonly lost: number;
  snapshot(): IngressBufferSnapshot;
  /** Resolves when everything queued so far is published (for tests and orderly stops). */
  drained(): Promise<void>;
  /** Flushes for up to `timeoutMs`, then counts what is left as lost. */
  close(timeoutMs?: number): Promise<void>;
}

interface Entry {
  envelope: Envelope;
  msgId: string | undefined;
  at: number;
}

/** A bounded ordered ingress buffer (see the file comment). */
export function createIngressBuffer(options: IngressBufferOptions): IngressBuffer {
  const initial = options.retryInitialMs ?? INGRESS_RETRY_INITIAL_MS;
  const maxDelay = options.retryMaxMs ?? INGRESS_RETRY_MAX_MS;
  // A ring would save the occasional compaction; an array with a head index is simpler and O(1) per message.
  let queue: Entry[] = [];
  let head = 0;
  let lost = 0;
  let published = 0;
  let blocked = false;
  /** Room promised to reservations, not yet pushed. */
  let reserved = 0;
  let draining: Promise<void> | undefined;
  let deadline = Number.POSITIVE_INFINITY;
  let closed = false;
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;

  const pending = () => queue.length - head;

  const lose = (entry: Entry, reason: IngressLossReason) => {
    lost += 1;
    options.onLost?.(entry.envelope, reason);
  };

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, ms);
    }).finally(() => {
      clearTimeout(timer);
      wake = undefined;
    });

  async function drain(): Promise<void> {
    let failures = 0;
    while (pending() > 0) {
      if (Date.now() >= deadline) break;
      const entry = queue[head]!;
      try {
        await options.publish(entry.envelope, entry.msgId);
      } catch (error) {
        failures += 1;
        if (!blocked) {
          blocked = true;
          options.logger.error(
            { err: error, pending: pending() },
            'ingress: the bus refuses messages; holding them and publishing again in order when it is back',
          );
        }
        await pause(Math.min(maxDelay, initial * 2 ** Math.min(failures - 1, 16)));
        continue;
      }
      queue[head] = undefined as unknown as Entry;
      head += 1;
      published += 1;
      failures = 0;
      if (head > 1024 && head * 2 > queue.length) {
        queue = queue.slice(head);
        head = 0;
      }
      if (blocked) {
        blocked = false;
        options.logger.info({ pending: pending() }, 'ingress: the bus takes messages again');
      }
    }
    draining = undefined;
  }

  const kick = () => {
    draining ??= drain();
  };

  const hold = (envelope: Envelope, msgId: string | undefined) => {
    queue.push({ envelope, msgId, at: Date.now() });
    kick();
  };

  const buffer: IngressBuffer = {
    push(envelope, msgId) {
      const entry = { envelope, msgId, at: Date.now() };
      if (closed || pending() + reserved >= options.max) {
        lose(entry, closed ? 'shutdown' : 'buffer_full');
        options.logger.error(
          { messageId: envelope.message?.id ?? envelope.id, channel: envelope.source.channel, pending: pending(), lost },
          closed
            ? 'ingress: message arrived after shutdown; counted as lost'
            : `ingress buffer full (INGRESS_BUFFER_MAX=${options.max}); message counted as lost`,
        );
        return;
      }
      hold(envelope, msgId);
    },
    reserve(count) {
      if (closed || pending() + reserved + count > options.max) return undefined;
      reserved += count;
      let left = count;
      return {
        push(envelope, msgId) {
          if (left === 0 || closed) return buffer.push(envelope, msgId);
          left -= 1;
          reserved -= 1;
          hold(envelope, msgId);
        },
        release() {
          reserved -= left;
          left = 0;
        },
      };
    },
    get lost() {
      return lost;
    },
    snapshot() {
      const oldest = pending() > 0 ? queue[head]!.at : undefined;
      return { pending: pending(), lost, published, blocked, oldestWaitingMs: oldest === undefined ? null : Date.now() - oldest };
    },
    async drained() {
      while (draining) await draining;
    },
    async close(timeoutMs = INGRESS_CLOSE_TIMEOUT_MS) {
      closed = true;
      deadline = Date.now() + timeoutMs;
      // Cut a backoff short once the deadline passes, so close() is bounded by it.
      const guard = setTimeout(() => wake?.(), timeoutMs + 1);
      wake?.();
      try {
        while (draining) await draining;
      } finally {
        clearTimeout(guard);
      }
      const left = pending();
      if (left === 0) return;
      for (let index = head; index < queue.length; index += 1) lose(queue[index]!, 'shutdown');
      queue = [];
      head = 0;
      options.logger.error({ lost: left }, `ingress: ${left} message(s) could not be published before shutdown; counted as lost`);
    },
  };
  return buffer;
}

/**
 * The ingress buffer for a service's connector: publishes to `internal.ingress.v1` with the context's
 * retries, sized by INGRESS_BUFFER_MAX, losses counted on `bitbrat_ingress_lost_total{service,platform}`.
 */
export function createServiceIngress(
  ctx: Pick<ServiceContext<unknown>, 'publish' | 'platform' | 'logger' | 'metrics' | 'name'>,
  platform: string,
): IngressBuffer {
  const lostCounter = (ctx.metrics as RuntimeMetrics).ingressLost;
  return createIngressBuffer({
    publish: (envelope, msgId) => ctx.publish(Topic.ingress, envelope, msgId ? { msgId } : undefined),
    max: ctx.platform.INGRESS_BUFFER_MAX,
    logger: ctx.logger,
    onLost: (_envelope, reason) => lostCounter.inc({ service: ctx.name, platform, reason }),
  });
}
