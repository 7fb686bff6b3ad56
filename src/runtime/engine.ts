import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import {
  BitBratError,
  DEFAULT_MAX_ATTEMPTS,
  Topic,
  backoffDelayMs,
  currentStepIndex,
  encodeRaw,
  hasReply,
  isBitBratError,
  newId,
  replyDeadline,
  traceparentFor,
  validateEnvelope,
  type DeadLetter,
  type Envelope,
  type ErrorCode,
  type Outcome,
} from '../core/index.js';
import type { BusMessage, MessageBus, PublishRetryOptions } from '../bus/index.js';
import { retryFailedPublish } from '../bus/retry.js';
import { cloneJson } from '../core/json.js';
import { lazyChild, type Logger } from './logger.js';
import { counterChild, type CounterChild, type RuntimeMetrics } from './metrics.js';
import type { Consumer, EnvelopeConsumer, HandlerContext, HandlerResult, RawConsumer } from './service.js';

/** Error codes that mean "a dependency is down": hold the message and retry, do not spend attempts. */
const DEPENDENCY_DOWN: ReadonlySet<string> = new Set(['STORE_UNAVAILABLE', 'BUS_UNAVAILABLE', 'PUBLISH_FAILED']);

export interface EngineOptions {
  service: string;
  instanceId: string;
  bus: MessageBus;
  logger: Logger;
  metrics: RuntimeMetrics;
  publishMaxRetries: number;
  /** Called when a dependency goes down or comes back (drives readiness). */
  onDependency?: (name: 'bus' | 'store', ready: boolean, detail?: string) => void;
  /** Backoff for R4 retries. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Remembered (envelope id, step, attempt) keys for duplicate detection. Default 50 000. */
  idempotencyCacheSize?: number;
}

/** The part of the runtime that applies the routing-slip rules to one consumed message. */
export interface SlipEngine {
  /** Process one message with a consumer; settles the message itself. */
  process(topic: string, consumer: Consumer, message: BusMessage): Promise<void>;
  /** Publish an envelope with trace headers and retries. */
  publishEnvelope(topic: string, envelope: Envelope, msgId?: string): Promise<void>;
  /** Stop holding messages while a dependency is down: they are naked for another instance. */
  releaseHolds(): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const RESOLVED: Promise<void> = Promise.resolve();

function headersFor(envelope: Envelope, service: string): Record<string, string> {
  return {
    traceparent: traceparentFor(envelope.traceId),
    'x-correlation-id': envelope.correlationId,
    'x-envelope-id': envelope.id,
    'x-publisher': service,
  };
}

/** A set that forgets its oldest keys once it holds `limit` (a ring buffer keeps the order in O(1)). */
function createLruSet(limit: number) {
  const keys = new Set<string>();
  const ring: Array<string | undefined> = new Array(limit);
  let next = 0;
  return {
    has: (key: string) => keys.has(key),
    add(key: string) {
      // One hash lookup: a key already present leaves the size unchanged.
      const size = keys.size;
      keys.add(key);
      if (keys.size === size) return;
      const evicted = ring[next];
      if (evicted !== undefined) keys.delete(evicted);
      ring[next] = key;
      next = (next + 1) % limit;
    },
  };
}

class DeadlineError extends Error {}

/** Width of a deadline slot: a step's deadline fires at most this much late, never early. */
const DEADLINE_SLOT_MS = 10;

/**
 * Step deadlines (R9) grouped into slots of DEADLINE_SLOT_MS: one timer per slot fires every deadline
 * in it, instead of a timer (and its list) per message. A slot's timer is cleared once its last
 * deadline is cancelled.
 */
function createDeadlineSlots() {
  const slots = new Map<number, { timer: NodeJS.Timeout; fires: Set<() => void> }>();
  return {
    /** Calls `fire` once `at` (epoch ms) has passed, unless cancelled; returns the slot for `cancel`. */
    add(at: number, fire: () => void): number {
      const key = Math.ceil(at / DEADLINE_SLOT_MS) * DEADLINE_SLOT_MS;
      let slot = slots.get(key);
      if (!slot) {
        const fires = new Set<() => void>();
        const timer = setTimeout(() => {
          slots.delete(key);
          for (const due of fires) due();
        }, Math.max(0, key - Date.now()));
        slot = { timer, fires };
        slots.set(key, slot);
      }
      slot.fires.add(fire);
      return key;
    },
    cancel(key: number, fire: () => void) {
      const slot = slots.get(key);
      if (!slot) return;
      slot.fires.delete(fire);
      if (slot.fires.size === 0) {
        clearTimeout(slot.timer);
        slots.delete(key);
      }
    },
  };
}

/**
 * `new Date().toISOString()` for the current millisecond, formatted once per millisecond: the runtime
 * stamps two times per message, and at high rates most of them fall in the same millisecond.
 */
let isoClockMs = -1;
let isoClockText = '';
function isoNow(): string {
  const now = Date.now();
  if (now !== isoClockMs) {
    isoClockMs = now;
    isoClockText = new Date(now).toISOString();
  }
  return isoClockText;
}

type Held<T> = { ok: true; value: T } | { ok: false };

/**
 * The per-message handler context. It doubles as the message's log scope: the child logger (topic,
 * then envelope, then step bindings) is only made when something logs, so a message that logs nothing
 * costs one object, not a chain of child loggers.
 */
class MessageContext implements HandlerContext {
  stepIndex = -1;
  step: HandlerContext['step'] = undefined;
  attempt: number;
  maxAttempts = DEFAULT_MAX_ATTEMPTS;
  #signal: AbortSignal;
  /** Under a deadline: the step's own controller, made when the handler first reads `signal`. */
  #deadlineSignal = false;
  #controller: AbortController | undefined;
  #expired: Error | undefined;
  #base: Logger;
  #logger: Logger | undefined;
  #envelope: Envelope | undefined;
  #stepBinding = false;

  constructor(
    readonly service: string,
    readonly instanceId: string,
    readonly topic: string,
    base: Logger,
    attempt: number,
    signal: AbortSignal,
  ) {
    this.#base = base;
    this.attempt = attempt;
    this.#signal = signal;
  }

  get signal(): AbortSignal {
    if (!this.#deadlineSignal) return this.#signal;
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#expired) this.#controller.abort(this.#expired);
    }
    return this.#controller.signal;
  }

  set signal(signal: AbortSignal) {
    this.#deadlineSignal = false;
    this.#signal = signal;
  }

  /** From here on `signal` is the step's own, aborted by `expire`; most handlers never read it. */
  useDeadlineSignal() {
    this.#deadlineSignal = true;
    this.#controller = undefined;
    this.#expired = undefined;
  }

  /** The deadline passed: abort the step's signal (now, or when it is first read). */
  expire(error: Error) {
    this.#expired = error;
    this.#controller?.abort(error);
  }

  get logger(): Logger {
    if (this.#logger) return this.#logger;
    const bindings: Record<string, unknown> = { topic: this.topic };
    const envelope = this.#envelope;
    if (envelope) {
      bindings.envelopeId = envelope.id;
      bindings.correlationId = envelope.correlationId;
      bindings.traceId = envelope.traceId;
    }
    if (this.#stepBinding && this.step) {
      bindings.step = this.step.id;
      bindings.stepIndex = this.stepIndex;
      bindings.attempt = this.attempt;
    }
    return (this.#logger = lazyChild(this.#base, bindings));
  }

  /** From here on logs carry the envelope's ids. */
  bindEnvelope(envelope: Envelope) {
    this.#envelope = envelope;
    this.#logger = undefined;
  }

  /** From here on logs carry the step (R1 bookkeeping done). */
  bindStep(step: NonNullable<HandlerContext['step']>, stepIndex: number, attempt: number) {
    this.step = step;
    this.stepIndex = stepIndex;
    this.attempt = attempt;
    this.#stepBinding = true;
    this.#logger = undefined;
  }
}

function isDependencyDown(error: unknown): boolean {
  return isBitBratError(error) && DEPENDENCY_DOWN.has(error.code);
}

export function createSlipEngine(options: EngineOptions): SlipEngine {
  const { service, bus, metrics, logger } = options;
  const instanceId = options.instanceId;
  const done = createLruSet(options.idempotencyCacheSize ?? 50_000);
  const shutdownController = new AbortController();
  const shutdownSignal = shutdownController.signal;
  // Every message held during an outage waits on this signal at once (up to the in-flight limit), and
  // handlers without a deadline get it as their signal: that many listeners is expected, not a leak.
  setMaxListeners(0, shutdownSignal);
  // Per destination topic, looked up once: the labelled counter and the retry options (with its logger).
  const publishTargets = new Map<string, { published: CounterChild; retry: PublishRetryOptions }>();
  const publishTarget = (topic: string) => {
    let target = publishTargets.get(topic);
    if (!target) {
      target = {
        published: counterChild(metrics.published, { service, topic }),
        retry: {
          maxRetries: options.publishMaxRetries,
          onRetry: (error, attempt, delayMs) => logger.warn({ topic, attempt, delayMs, err: error }, 'publish failed; retrying'),
        },
      };
      publishTargets.set(topic, target);
    }
    return target;
  };
  // Labelled metric children are looked up once per topic, not hashed on every message.
  const topicChildren = new Map<string, { consumed: CounterChild; handlerSeconds: ReturnType<RuntimeMetrics['handlerSeconds']['labels']> }>();
  const topicMetrics = (topic: string) => {
    let children = topicChildren.get(topic);
    if (!children) {
      children = { consumed: counterChild(metrics.consumed, { service, topic }), handlerSeconds: metrics.handlerSeconds.labels({ service, topic }) };
      topicChildren.set(topic, children);
    }
    return children;
  };
  const retryBase = options.retryBaseMs ?? 500;
  const retryMax = options.retryMaxMs ?? 30_000;

  /** Publishes bytes, or (data undefined) a value through the bus's publishJson. */
  const publishRaw = async (topic: string, data: Uint8Array | undefined, headers: Record<string, string>, msgId?: string, value?: unknown) => {
    const target = publishTarget(topic);
    const publishOptions = { headers, msgId };
    // The first attempt here; retryFailedPublish backs off and retries (with the bytes the value stands for).
    try {
      await (data === undefined ? bus.publishJson!(topic, value, publishOptions) : bus.publish(topic, data, publishOptions));
    } catch (error) {
      await retryFailedPublish(bus, topic, data ?? encoder.encode(JSON.stringify(value)), publishOptions, target.retry, error);
    }
    target.published.inc();
  };

  /**
   * Publishes an envelope the runtime is done with (it is not changed afterwards). An in-process bus takes
   * the object itself (publishJson): its consumers copy it instead of parsing text.
   */
  const publishEnvelope = (topic: string, envelope: Envelope, msgId?: string): Promise<void> => {
    try {
      const data = bus.publishJson ? undefined : encoder.encode(JSON.stringify(envelope));
      return publishRaw(topic, data, headersFor(envelope, service), msgId, envelope);
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /**
   * Called when `work` failed with `error`: while that is a dependency being down, keeps retrying
   * `work`, extending the message's lease so it stays ours and on the bus. Any other error is rethrown.
   * Returns `{ ok: false }` when the service is shutting down (the caller naks the message).
   */
  const holdAfter = async <T>(message: BusMessage, work: () => Promise<T>, scope: MessageContext, firstError: unknown): Promise<Held<T>> => {
    let error = firstError;
    for (let attempt = 1; ; attempt += 1) {
      if (!isDependencyDown(error)) throw error;
      const code = (error as BitBratError).code;
      const which = code === 'STORE_UNAVAILABLE' ? 'store' : 'bus';
      options.onDependency?.(which, false, (error as Error).message);
      if (attempt === 1 || attempt % 10 === 0) scope.logger.warn({ err: error, attempt }, `${which} unavailable; holding the message and retrying`);
      if (shutdownSignal.aborted) return { ok: false };
      await message.working().catch(() => undefined);
      await new Promise<void>((resolve) => {
        const onShutdown = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          shutdownSignal.removeEventListener('abort', onShutdown);
          resolve();
        }, Math.min(5_000, 200 * 2 ** Math.min(attempt, 5)));
        shutdownSignal.addEventListener('abort', onShutdown, { once: true });
      });
      if (shutdownSignal.aborted) return { ok: false };
      try {
        const value = await work();
        options.onDependency?.('bus', true);
        options.onDependency?.('store', true);
        return { ok: true, value };
      } catch (next) {
        error = next;
      }
    }
  };

  /** `work`, held while a dependency is down (see holdAfter). */
  const holdWhileDown = async <T>(message: BusMessage, work: () => Promise<T>, scope: MessageContext): Promise<Held<T>> => {
    try {
      return { ok: true, value: await work() };
    } catch (error) {
      return holdAfter(message, work, scope, error);
    }
  };

  const deadLetterId = (topic: string, code: string, raw: string, stepIndex?: number) =>
    'dl-' + createHash('sha256').update(`${service}\u0000${topic}\u0000${code}\u0000${stepIndex ?? ''}\u0000${raw}`).digest('hex').slice(0, 32);

  const deadLetter = async (
    message: BusMessage,
    topic: string,
    code: ErrorCode | string,
    reason: string,
    extra: { envelope?: Envelope; stepIndex?: number; replayTopic?: string; details?: Record<string, unknown>; data?: Uint8Array },
    log: Logger,
  ) => {
    const encoded = extra.envelope ? { raw: JSON.stringify(extra.envelope), rawEncoding: 'utf8' as const } : encodeRaw(extra.data ?? message.data);
    const letter: DeadLetter = {
      kind: 'bitbrat.deadletter.v1',
      id: deadLetterId(topic, code, encoded.raw, extra.stepIndex),
      at: new Date().toISOString(),
      reason: { code, message: reason, ...(extra.details ? { details: extra.details } : {}) },
      topic,
      service,
      ...(extra.stepIndex !== undefined && extra.stepIndex >= 0 ? { stepIndex: extra.stepIndex } : {}),
      ...(extra.replayTopic ? { replayTopic: extra.replayTopic } : {}),
      ...encoded,
      ...(extra.envelope ? { envelope: extra.envelope, envelopeId: extra.envelope.id, correlationId: extra.envelope.correlationId } : {}),
    };
    log.warn({ code, reason, deadLetterId: letter.id }, 'dead-lettering message');
    const headers: Record<string, string> = { 'x-publisher': service, 'x-deadletter-code': String(code) };
    if (extra.envelope) Object.assign(headers, headersFor(extra.envelope, service));
    await publishRaw(Topic.deadletter, encoder.encode(JSON.stringify(letter)), headers, letter.id);
    metrics.deadLettered.inc({ service, topic, code: String(code) });
  };

  /**
   * R6: finalize, or DLQ when there is no finalization destination. Takes the message scope, not its
   * logger: the logger is only made when the dead-letter branch logs.
   */
  const finalize = (message: BusMessage, topic: string, envelope: Envelope, stepIndex: number, scope: MessageContext): Promise<void> => {
    const destination = envelope.finalizationDestination;
    if (!destination) {
      return deadLetter(message, topic, 'NO_FINALIZATION_DESTINATION', 'the envelope had to be finalized but has no finalizationDestination', { envelope, stepIndex, replayTopic: Topic.finalizer }, scope.logger);
    }
    return publishEnvelope(destination, envelope, `${envelope.id}:final`);
  };

  /**
   * R2/R3: where an envelope goes after a step succeeded. Returns the publish itself (no async frame of
   * its own: this runs for every message).
   */
  const route = (message: BusMessage, topic: string, consumer: EnvelopeConsumer, envelope: Envelope, result: HandlerResult, stepIndex: number, scope: MessageContext): Promise<void> => {
    try {
      if (consumer.mode === 'sink') return RESOLVED;
      if (consumer.mode === 'stage' && result.kind !== 'handled') {
        if (consumer.next === 'finalization') {
          envelope.outcome ??= 'completed';
          return finalize(message, topic, envelope, stepIndex, scope);
        }
        return publishEnvelope(consumer.next!, envelope, `${envelope.id}:${stepIndex}:${topic}`);
      }
      const egress = envelope.source.egressDestination;
      if (result.kind === 'handled') {
        envelope.outcome = result.outcome ?? 'handled';
        if (egress && consumer.next !== 'finalization') return publishEnvelope(egress, envelope, `${envelope.id}:egress`);
        return finalize(message, topic, envelope, stepIndex, scope);
      }
      const nextIndex = currentStepIndex(envelope);
      if (nextIndex >= 0) {
        const next = envelope.routingSlip[nextIndex]!;
        if (!next.destination) throw new BitBratError('ENVELOPE_INVALID', `step ${nextIndex} (${next.id}) has no destination`);
        return publishEnvelope(next.destination, envelope, `${envelope.id}:${stepIndex}:${topic}`);
      }
      if (egress && hasReply(envelope)) {
        envelope.outcome ??= 'completed';
        return publishEnvelope(egress, envelope, `${envelope.id}:egress`);
      }
      envelope.outcome ??= 'completed';
      return finalize(message, topic, envelope, stepIndex, scope);
    } catch (error) {
      return Promise.reject(error);
    }
  };

  const deadlines = createDeadlineSlots();

  /** The handler under its deadline (R9): it fails with DEADLINE, and its signal aborts, when the deadline passes. */
  const runWithDeadline = (consumer: EnvelopeConsumer, envelope: Envelope, ctx: MessageContext, timeoutMs: number): Promise<HandlerResult> => {
    if (timeoutMs <= 0) return Promise.reject(new DeadlineError('the deadline had already passed when the step started'));
    ctx.useDeadlineSignal();
    return new Promise<HandlerResult>((resolve, reject) => {
      const expire = () => {
        const error = new DeadlineError(`the step did not finish within ${timeoutMs} ms`);
        ctx.expire(error);
        reject(error);
      };
      const slot = deadlines.add(Date.now() + timeoutMs, expire);
      let handled: Promise<HandlerResult>;
      try {
        handled = Promise.resolve(consumer.handle(envelope, ctx));
      } catch (error) {
        deadlines.cancel(slot, expire);
        reject(error);
        return;
      }
      handled.then(
        (result) => {
          deadlines.cancel(slot, expire);
          resolve(result);
        },
        (error: unknown) => {
          deadlines.cancel(slot, expire);
          reject(error);
        },
      );
    });
  };

  /**
   * Runs the handler; failures become `failed` results, except a dependency being down, which is thrown.
   * Without a deadline the handler's signal is the shutdown signal: no controller or timer per message.
   */
  const runHandler = async (consumer: EnvelopeConsumer, envelope: Envelope, ctx: MessageContext, timeoutMs: number | undefined): Promise<HandlerResult> => {
    try {
      if (timeoutMs !== undefined) return await runWithDeadline(consumer, envelope, ctx, timeoutMs);
      ctx.signal = shutdownSignal;
      return await consumer.handle(envelope, ctx);
    } catch (error) {
      return handlerFailure(error, ctx);
    }
  };

  /** What a handler's exception means as a result; a dependency being down is rethrown (hold and retry). */
  const handlerFailure = (error: unknown, ctx: MessageContext): HandlerResult => {
    if (error instanceof DeadlineError) return { kind: 'failed', code: 'DEADLINE', message: error.message, retryable: false } satisfies HandlerResult;
    if (isDependencyDown(error)) throw error;
    if (isBitBratError(error)) return { kind: 'failed', code: error.code, message: error.message, retryable: error.retryable, details: error.details } satisfies HandlerResult;
    ctx.logger.error({ err: error }, 'handler threw');
    return { kind: 'failed', code: 'HANDLER_EXCEPTION', message: error instanceof Error ? error.message : String(error), retryable: false } satisfies HandlerResult;
  };

  const processRaw = async (topic: string, consumer: RawConsumer, message: BusMessage, ctx: MessageContext) => {
    try {
      const held = await holdWhileDown(message, () => consumer.handleRaw(message, ctx), ctx);
      if (!held.ok) return message.nak(0);
      return message.ack();
    } catch (error) {
      const retryable = isBitBratError(error) && error.retryable;
      metrics.failed.inc({ service, topic, code: isBitBratError(error) ? error.code : 'HANDLER_EXCEPTION' });
      if (retryable && message.deliveryCount < DEFAULT_MAX_ATTEMPTS) {
        metrics.retried.inc({ service, topic });
        return message.nak(backoffDelayMs(message.deliveryCount, { baseMs: retryBase, maxMs: retryMax }));
      }
      // A raw consumer's own failures cannot go back to the DLQ it reads; log everything and settle.
      ctx.logger.error({ err: error, raw: encodeRaw(message.data).raw.slice(0, 4096) }, 'raw handler failed for good; message terminated');
      return message.term(error instanceof Error ? error.message : String(error));
    }
  };

  const process = async (topic: string, consumer: Consumer, message: BusMessage) => {
    const perTopic = topicMetrics(topic);
    perTopic.consumed.inc();
    const started = performance.now();
    const ctx = new MessageContext(service, instanceId, topic, logger, message.deliveryCount, shutdownSignal);
    try {
      if (consumer.mode === 'raw') return await processRaw(topic, consumer, message, ctx);

      // R7: undecodable or invalid → DLQ with the raw bytes, ack, keep going.
      let json: unknown;
      try {
        // A value from the in-process bus is shared with its other consumers: this copy is ours.
        const shared = message.json;
        json = shared === undefined ? JSON.parse(decoder.decode(message.data)) : cloneJson(shared);
      } catch (error) {
        const log = ctx.logger;
        const held = await holdWhileDown(message, () => deadLetter(message, topic, 'DECODE_FAILED', `message is not valid JSON: ${(error as Error).message}`, { replayTopic: topic }, log), ctx);
        return held.ok ? message.ack() : message.nak(0);
      }
      const validation = validateEnvelope(json);
      if (!validation.ok) {
        const log = ctx.logger;
        const held = await holdWhileDown(
          message,
          () => deadLetter(message, topic, 'ENVELOPE_INVALID', validation.error, { replayTopic: topic, details: { issues: validation.issues.slice(0, 50) as unknown as Record<string, unknown> } }, log),
          ctx,
        );
        return held.ok ? message.ack() : message.nak(0);
      }
      const envelope = validation.envelope;
      ctx.bindEnvelope(envelope);
      // Another consumer of this topic in the process delivers this platform (see the host).
      if (consumer.declines?.(envelope)) return message.ack();

      let stepIndex = -1;
      if (consumer.mode === 'step') {
        stepIndex = currentStepIndex(envelope);
        const current = stepIndex >= 0 ? envelope.routingSlip[stepIndex] : undefined;
        if (!current || current.destination !== topic) {
          const reason = current ? `current step ${stepIndex} (${current.id}) is for ${current.destination ?? 'no destination'}, not ${topic}` : 'the slip has no PENDING step';
          const log = ctx.logger;
          const held = await holdWhileDown(message, () => deadLetter(message, topic, 'SLIP_MISMATCH', reason, { envelope, stepIndex }, log), ctx);
          return held.ok ? message.ack() : message.nak(0);
        }
      }
      const step = stepIndex >= 0 ? envelope.routingSlip[stepIndex] : undefined;

      // R8: a redelivered duplicate of a message this process already finished is acked and skipped.
      const idempotencyKey = `${envelope.id}:${stepIndex}:${step?.attempt ?? 0}:${topic}`;
      if (done.has(idempotencyKey)) {
        metrics.duplicates.inc({ service, topic });
        ctx.logger.debug('duplicate delivery skipped');
        return message.ack();
      }

      // R1: attempt bookkeeping; the bus's delivery count carries retries across redeliveries.
      const attempt = (step?.attempt ?? 0) + message.deliveryCount;
      const maxAttempts = step?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
      ctx.attempt = attempt;
      ctx.maxAttempts = maxAttempts;
      ctx.stepIndex = stepIndex;
      if (step) {
        step.attempt = attempt;
        step.startedAt = isoNow();
        ctx.bindStep(step, stepIndex, attempt);
      }

      // R9: the step's own timeout, bounded by the reply deadline.
      const deadlineAt = replyDeadline(envelope);
      let timeoutMs = step?.timeoutMs;
      if (deadlineAt !== undefined && consumer.mode !== 'sink') {
        const remaining = deadlineAt - Date.now();
        timeoutMs = timeoutMs === undefined ? remaining : Math.min(timeoutMs, remaining);
      }

      // The handler gets its own copy: the decoded JSON, which validation did not share with `envelope`
      // for anything the runtime reads (slip, outcome, errors, source). Cheaper than a deep clone.
      const handlerCopy = json as Envelope;
      if (step) {
        const copyStep = handlerCopy.routingSlip[stepIndex]!;
        copyStep.attempt = step.attempt;
        copyStep.startedAt = step.startedAt;
      }

      // The handler, inline when there is no deadline (runHandler, without its own async frame).
      let result: HandlerResult;
      try {
        if (timeoutMs === undefined) {
          ctx.signal = shutdownSignal;
          result = await consumer.handle(handlerCopy, ctx);
        } else {
          result = await runWithDeadline(consumer, handlerCopy, ctx, timeoutMs);
        }
      } catch (error) {
        try {
          result = handlerFailure(error, ctx);
        } catch (down) {
          const held = await holdAfter(message, () => runHandler(consumer, handlerCopy, ctx, timeoutMs), ctx, down);
          if (!held.ok) return message.nak(0);
          result = held.value;
        }
      }

      // The handler may return a modified copy; slip bookkeeping is always the runtime's.
      const out: Envelope = result.envelope ?? envelope;
      if (result.envelope && step) {
        // Keep the runtime's view of finished steps (R10: history is never rewritten by handlers).
        const incoming = out.routingSlip[stepIndex];
        if (!incoming || incoming.id !== step.id) out.routingSlip.splice(stepIndex, 0, step);
        out.routingSlip[stepIndex] = { ...out.routingSlip[stepIndex]!, ...step };
      }
      const outStep = stepIndex >= 0 ? out.routingSlip[stepIndex] : undefined;
      const now = isoNow();

      if (result.kind === 'failed') {
        const log = ctx.logger;
        metrics.failed.inc({ service, topic, code: String(result.code) });
        // R4: retryable and attempts left → redeliver the same step after a backoff.
        if (result.retryable && attempt < maxAttempts) {
          metrics.retried.inc({ service, topic });
          const delay = backoffDelayMs(attempt, { baseMs: retryBase, maxMs: retryMax });
          log.warn({ code: result.code, error: result.message, delayMs: delay }, 'step failed; will retry');
          return message.nak(delay);
        }
        // R5: the step becomes ERROR, the error is recorded, the envelope is finalized as failed.
        const exhausted = result.retryable === true;
        const message_ = exhausted ? `${result.message} (gave up after ${attempt} attempts)` : result.message;
        if (outStep) {
          outStep.status = 'ERROR';
          outStep.endedAt = now;
          outStep.error = { code: String(result.code), message: message_, retryable: result.retryable ?? false };
        }
        out.errors = [
          ...(out.errors ?? []),
          {
            code: String(result.code),
            message: message_,
            service,
            at: now,
            retryable: result.retryable ?? false,
            ...(outStep ? { step: outStep.id, stepIndex } : {}),
            ...(result.details ? { details: result.details } : {}),
          },
        ];
        out.outcome = 'failed';
        // An egress stage that could not deliver records that on the envelope (R9: a reply past its
        // deadline is not sent, and the record says so).
        if (consumer.mode === 'stage' && consumer.next === 'finalization' && !out.delivery) {
          out.delivery = { delivered: false, at: now, destination: topic, reason: String(result.code) };
        }
        log.warn({ code: result.code, error: message_ }, 'step failed');
        const settle = async () => {
          if (consumer.mode === 'sink') {
            await deadLetter(message, topic, String(result.code), message_, { envelope: out, replayTopic: topic }, log);
          } else {
            await finalize(message, topic, out, stepIndex, ctx);
          }
        };
        const published = await holdWhileDown(message, settle, ctx);
        if (!published.ok) return message.nak(0);
        done.add(idempotencyKey);
        return message.ack();
      }

      if (outStep) {
        outStep.status = result.kind === 'skip' ? 'SKIP' : 'OK';
        outStep.endedAt = now;
        outStep.error = null;
      }
      // R8: ack only once the next publish is confirmed.
      try {
        await route(message, topic, consumer, out, result, stepIndex, ctx);
      } catch (error) {
        const published = await holdAfter(message, () => route(message, topic, consumer, out, result, stepIndex, ctx), ctx, error);
        if (!published.ok) return message.nak(0);
      }
      done.add(idempotencyKey);
      return message.ack();
    } catch (error) {
      // Only the runtime's own publishing can land here (e.g. a slip step without a destination).
      const log = ctx.logger;
      log.error({ err: error }, 'runtime could not route the message; dead-lettering it');
      try {
        await deadLetter(message, topic, isBitBratError(error) ? error.code : 'HANDLER_EXCEPTION', error instanceof Error ? error.message : String(error), {}, log);
        return message.ack();
      } catch (dlqError) {
        log.error({ err: dlqError }, 'dead-lettering failed; message will be redelivered');
        return message.nak(1_000);
      }
    } finally {
      perTopic.handlerSeconds.observe((performance.now() - started) / 1000);
    }
  };

  return {
    process,
    publishEnvelope,
    releaseHolds: () => shutdownController.abort(),
  };
}

export type { Outcome };
export { newId };
