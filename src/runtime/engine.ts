// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import type { InflightTracker } from './inflight.js';
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import {
  DEFAULT_MAX_ATTEMPTS,
  Topic,
  encodeRaw,
  isBitBratError,
  newId,
  normalizeTraceId,
  replyDeadline,
  stepTopic,
  traceparentFor,
  validateEnvelope,
  type DeadLetter,
  type Envelope,
  type ErrorCode,
  type Outcome,
  type RoutingStep,
} from '../core/index.js';
import type { BusMessage, MessageBus, PublishRetryOptions } from '../bus/index.js';
import { retryFailedPublish } from '../bus/retry.js';
import { cloneJson } from '../core/json.js';
import type { Logger } from './logger.js';
import { createDeadlineSlots, isoNow, MessageContext } from './message-context.js';
import { counterChild, type CounterChild, type RuntimeMetrics } from './metrics.js';
import type { Consumer, EnvelopeConsumer, HandlerResult, RawConsumer } from './service.js';
import {
  failureHop,
  failureOf,
  guardStep,
  isDependencyDown,
  nextHop,
  onFailure,
  onRawFailure,
  protectHistory,
  recordFailure,
  recordSuccess,
  stepTimeoutMs,
  type DeadLetterOrder,
  type RetryOrder,
  type RetryPolicy,
  type SettleOrder,
} from './slip-policy.js';
import { currentSpan, runInSpan, type Tracing } from './tracing.js';

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
  /**
   * The steps some service serves (`knownSteps(architecture)`): an envelope whose next step is not one
   * of them is dead-lettered with UNKNOWN_STEP instead of being published to a topic nobody reads.
   * A function is read once, at the first routing decision: the host learns the served steps only when
   * every service's setup has returned. Default: not checked.
   */
  knownSteps?: readonly string[] | (() => readonly string[]);
  /** Remembers where each envelope was last published (stalled events: "stalled at <step>"). */
  inflight?: InflightTracker;
  /**
   * When set (an OTLP endpoint is configured), every message a consumer takes is a span, child of the
   * publisher's `traceparent`, and every publish carries the current span's. Unset: no tracing work.
   */
  tracing?: Tracing;
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

function headersFor(envelope: Envelope, service: string, traceparent?: string): Record<string, string> {
  return {
    traceparent: traceparent ?? traceparentFor(envelope.traceId),
    'x-correlation-id': envelope.correlationId,
    'x-envelope-id': envelope.id,
    'x-publisher': service,
  };
}

/** The current span's `traceparent` when it belongs to the envelope's trace (R11: the hop's parent). */
function traceparentOf(envelope: Envelope): string | undefined {
  const span = currentSpan();
  return span && span.traceId === normalizeTraceId(envelope.traceId) ? span.traceparent : undefined;
}

/** Records how a message ended on its span (no-op without tracing). */
function mark(ctx: MessageContext, outcome: string, code?: string, message?: string) {
  const span = ctx.span;
  if (!span) return;
  span.setAttributes({ 'bitbrat.outcome': outcome, 'bitbrat.error_code': code });
  if (code) span.fail(code, message);
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

type Held<T> = { ok: true; value: T } | { ok: false };

/** A message decoded and validated: the JSON (the handler's copy) and the runtime's envelope. */
interface Decoded {
  json: unknown;
  envelope: Envelope;
}

/** The handler's own copy of the envelope, with the runtime's R1 bookkeeping of the current step. */
function handlerCopy(json: unknown, step: RoutingStep | undefined, stepIndex: number): Envelope {
  // The decoded JSON, which validation did not share with the runtime's envelope for anything the
  // runtime reads (slip, outcome, errors, source): cheaper than a deep clone.
  const copy = json as Envelope;
  if (step) {
    const copyStep = copy.routingSlip[stepIndex]!;
    copyStep.attempt = step.attempt;
    copyStep.startedAt = step.startedAt;
  }
  return copy;
}

/**
 * The slip engine: an orchestrator that takes each message through decode → validate → guard → run →
 * settle. What happens after a handler answers is decided by the slip policy (slip-policy.ts); this
 * file carries it out: publishing, dead letters, holding a message while a dependency is down.
 */
export function createSlipEngine(options: EngineOptions): SlipEngine {
  const { service, bus, metrics, logger, inflight, tracing } = options;
  const instanceId = options.instanceId;
  const done = createLruSet(options.idempotencyCacheSize ?? 50_000);
  const deadlines = createDeadlineSlots();
  const retry: RetryPolicy = { baseMs: options.retryBaseMs ?? 500, maxMs: options.retryMaxMs ?? 30_000 };
  let knownSteps: readonly string[] | undefined;
  let servedStepTopics: Set<string> | undefined;
  const isServedStep =
    options.knownSteps === undefined
      ? undefined
      : (topic: string) => {
          if (!servedStepTopics) {
            knownSteps = typeof options.knownSteps === 'function' ? options.knownSteps() : options.knownSteps;
            servedStepTopics = new Set(knownSteps!.map(stepTopic));
          }
          return servedStepTopics.has(topic);
        };
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
  const topicChildren = new Map<
    string,
    { consumed: CounterChild; handlerSeconds: ReturnType<RuntimeMetrics['handlerSeconds']['labels']> }
  >();
  const topicMetrics = (topic: string) => {
    let children = topicChildren.get(topic);
    if (!children) {
      children = {
        consumed: counterChild(metrics.consumed, { service, topic }),
        handlerSeconds: metrics.handlerSeconds.labels({ service, topic }),
      };
      topicChildren.set(topic, children);
    }
    return children;
  };

  // ---- Publishing -------------------------------------------------------------------------------

  /** Publishes bytes, or (data undefined) a value through the bus's publishJson. */
  const publishRaw = async (
    topic: string,
    data: Uint8Array | undefined,
    headers: Record<string, string>,
    msgId?: string,
    value?: unknown,
  ) => {
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
      inflight?.published(envelope.id, envelope.correlationId, topic, service);
      const data = bus.publishJson ? undefined : encoder.encode(JSON.stringify(envelope));
      if (!tracing) return publishRaw(topic, data, headersFor(envelope, service), msgId, envelope);
      const traceparent = traceparentOf(envelope);
      if (traceparent) return publishRaw(topic, data, headersFor(envelope, service, traceparent), msgId, envelope);
      return publishRoot(tracing, topic, data, envelope, msgId);
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /**
   * A publish outside any message of its trace (a chat message from Twitch, an EventSub event): the
   * root span of the envelope's trace, which every hop after it continues.
   */
  const publishRoot = async (tracer: Tracing, topic: string, data: Uint8Array | undefined, envelope: Envelope, msgId?: string) => {
    const span = tracer.startSpan(`${service} publish ${topic}`, {
      kind: 'producer',
      traceId: envelope.traceId,
      attributes: {
        'messaging.system': bus.driver,
        'messaging.operation.type': 'send',
        'messaging.destination.name': topic,
        'messaging.message.id': envelope.id,
        'bitbrat.service': service,
        'bitbrat.correlation_id': envelope.correlationId,
        'bitbrat.envelope.type': envelope.type,
        'bitbrat.platform': envelope.source.platform,
      },
    });
    try {
      await publishRaw(topic, data, headersFor(envelope, service, span.traceparent), msgId, envelope);
    } catch (error) {
      span.fail(isBitBratError(error) ? error.code : 'PUBLISH_FAILED', error instanceof Error ? error.message : String(error));
      throw error;
    } finally {
      span.end();
    }
  };

  // ---- Holding a message while a dependency is down ----------------------------------------------

  /**
   * Runs `work`; while it fails because a dependency is down, keeps retrying it, extending the
   * message's lease so it stays ours and on the bus. Any other error is rethrown. Returns `{ ok: false }`
   * when the service is shutting down (the caller naks the message).
   */
  const held = async <T>(message: BusMessage, work: () => Promise<T>, ctx: MessageContext): Promise<Held<T>> => {
    let error: unknown;
    try {
      return { ok: true, value: await work() };
    } catch (first) {
      error = first;
    }
    for (let attempt = 1; ; attempt += 1) {
      if (!isDependencyDown(error)) throw error;
      const which = error.code === 'STORE_UNAVAILABLE' ? 'store' : 'bus';
      options.onDependency?.(which, false, error.message);
      if (attempt === 1 || attempt % 10 === 0)
        ctx.logger.warn({ err: error, attempt }, `${which} unavailable; holding the message and retrying`);
      if (shutdownSignal.aborted) return { ok: false };
      await message.working().catch(() => undefined);
      await new Promise<void>((resolve) => {
        const onShutdown = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(
          () => {
            shutdownSignal.removeEventListener('abort', onShutdown);
            resolve();
          },
          Math.min(5_000, 200 * 2 ** Math.min(attempt, 5)),
        );
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

  // ---- Dead letters and settling ----------------------------------------------------------------

  const deadLetterId = (topic: string, code: string, raw: string, stepIndex?: number) =>
    'dl-' +
    createHash('sha256')
      .update(`${service}\u0000${topic}\u0000${code}\u0000${stepIndex ?? ''}\u0000${raw}`)
      .digest('hex')
      .slice(0, 32);

  const deadLetter = async (
    message: BusMessage,
    topic: string,
    code: ErrorCode | string,
    reason: string,
    extra: { envelope?: Envelope; stepIndex?: number; replayTopic?: string; details?: Record<string, unknown>; data?: Uint8Array },
    log: Logger,
  ) => {
    const encoded = extra.envelope
      ? { raw: JSON.stringify(extra.envelope), rawEncoding: 'utf8' as const }
      : encodeRaw(extra.data ?? message.data);
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
    if (extra.envelope) {
      Object.assign(headers, headersFor(extra.envelope, service, tracing ? traceparentOf(extra.envelope) : undefined));
      inflight?.published(extra.envelope.id, extra.envelope.correlationId, Topic.deadletter, service);
    }
    await publishRaw(Topic.deadletter, encoder.encode(JSON.stringify(letter)), headers, letter.id);
    metrics.deadLettered.inc({ service, topic, code: String(code) });
  };

  /** Carries out the policy's order for a message: publish the envelope, dead-letter it, or nothing. */
  const carryOut = (
    message: BusMessage,
    topic: string,
    order: SettleOrder,
    envelope: Envelope | undefined,
    ctx: MessageContext,
  ): Promise<void> => {
    try {
      switch (order.action) {
        case 'ack':
          return RESOLVED;
        case 'publish':
          if (order.outcome) envelope!.outcome = order.outcome;
          return publishEnvelope(order.topic, envelope!, order.msgId);
        case 'dead-letter':
          if (order.outcome && envelope) envelope.outcome = order.outcome;
          return deadLetter(
            message,
            topic,
            order.code,
            order.reason,
            { envelope, stepIndex: order.stepIndex, replayTopic: order.replayTopic, details: order.details },
            ctx.logger,
          );
      }
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /** Settles a message the policy turned away before its handler ran (R7): dead letter, then ack. */
  const turnAway = async (
    message: BusMessage,
    topic: string,
    order: DeadLetterOrder,
    envelope: Envelope | undefined,
    ctx: MessageContext,
  ) => {
    mark(ctx, 'dead-letter', String(order.code), order.reason);
    const settled = await held(message, () => carryOut(message, topic, order, envelope, ctx), ctx);
    return settled.ok ? message.ack() : message.nak(0);
  };

  // ---- Running a handler ------------------------------------------------------------------------

  /** The handler's result; an exception becomes a failed result, except a dependency being down (thrown: hold). */
  const runHandler = async (consumer: EnvelopeConsumer, envelope: Envelope, ctx: MessageContext): Promise<HandlerResult> => {
    try {
      return await ctx.run(consumer, envelope, deadlines);
    } catch (error) {
      const failure = failureOf(error);
      if (failure.kind === 'hold') throw failure.error;
      if (failure.code === 'HANDLER_EXCEPTION') ctx.logger.error({ err: error }, 'handler threw');
      return failure;
    }
  };

  /**
   * The policy's verdict on a handler's result, recorded on `out` (step status, errors, outcome) and
   * counted: retry the message, or how to settle it.
   */
  const decide = (
    topic: string,
    consumer: EnvelopeConsumer,
    result: HandlerResult,
    out: Envelope,
    stepIndex: number,
    attempt: number,
    ctx: MessageContext,
  ): SettleOrder | RetryOrder => {
    const now = isoNow();
    if (result.kind !== 'failed') {
      mark(ctx, result.kind);
      recordSuccess(out, stepIndex, result.kind, now);
      return nextHop({
        mode: consumer.mode,
        next: consumer.next,
        topic,
        stepIndex,
        result,
        envelope: out,
        isServedStep,
        // Read after isServedStep ran: the served steps are resolved on first use.
        get knownSteps() {
          return knownSteps;
        },
      });
    }
    const code = String(result.code);
    metrics.failed.inc({ service, topic, code });
    const verdict = onFailure({ mode: consumer.mode, retryable: result.retryable, attempt, maxAttempts: ctx.maxAttempts, retry });
    if (verdict.action === 'retry') {
      metrics.retried.inc({ service, topic });
      mark(ctx, 'retry', code, result.message);
      ctx.logger.warn({ code, error: result.message, delayMs: verdict.delayMs }, 'step failed; will retry');
      return verdict;
    }
    const isEgressStage = consumer.mode === 'stage' && consumer.next === 'finalization';
    const recorded = recordFailure(out, {
      failure: result,
      exhausted: verdict.exhausted,
      attempt,
      service,
      stepIndex,
      now,
      ...(isEgressStage ? { deliveryTopic: topic } : {}),
    });
    mark(ctx, 'failed', code, result.message);
    ctx.logger.warn({ code, error: recorded }, 'step failed');
    return failureHop(consumer.mode, out, stepIndex, topic, code, recorded);
  };

  // ---- The orchestrator -------------------------------------------------------------------------

  /** A raw consumer (the dead-letter topic): run, then ack, retry or terminate (the policy's onRawFailure). */
  const processRaw = async (topic: string, consumer: RawConsumer, message: BusMessage, ctx: MessageContext) => {
    if (!tracing) return runRaw(topic, consumer, message, ctx);
    const span = tracing.startSpan(`${service} ${topic}`, {
      kind: 'consumer',
      parent: message.headers.traceparent,
      attributes: {
        'messaging.system': bus.driver,
        'messaging.operation.type': 'process',
        'messaging.destination.name': topic,
        'bitbrat.service': service,
        'bitbrat.deadletter.code': message.headers['x-deadletter-code'],
      },
    });
    ctx.bindSpan(span);
    try {
      return await runInSpan(tracing, span, () => runRaw(topic, consumer, message, ctx));
    } finally {
      span.end();
    }
  };

  const runRaw = async (topic: string, consumer: RawConsumer, message: BusMessage, ctx: MessageContext) => {
    try {
      const ran = await held(message, () => consumer.handleRaw(message, ctx), ctx);
      return ran.ok ? message.ack() : message.nak(0);
    } catch (error) {
      const code = isBitBratError(error) ? error.code : 'HANDLER_EXCEPTION';
      metrics.failed.inc({ service, topic, code });
      mark(ctx, 'failed', code, error instanceof Error ? error.message : String(error));
      const verdict = onRawFailure({ retryable: isBitBratError(error) && error.retryable, deliveryCount: message.deliveryCount, retry });
      if (verdict.action === 'retry') {
        metrics.retried.inc({ service, topic });
        return message.nak(verdict.delayMs);
      }
      // A raw consumer's own failures cannot go back to the DLQ it reads; log everything and settle.
      ctx.logger.error({ err: error, raw: encodeRaw(message.data).raw.slice(0, 4096) }, 'raw handler failed for good; message terminated');
      return message.term(error instanceof Error ? error.message : String(error));
    }
  };

  /** Runs the rest of an envelope's processing as the message's span (R11). */
  const traceEnvelope = async (
    tracer: Tracing,
    topic: string,
    consumer: EnvelopeConsumer,
    message: BusMessage,
    ctx: MessageContext,
    decoded: Decoded,
  ): Promise<void> => {
    const envelope = decoded.envelope;
    // R11: the message's span continues the publisher's; one chat message is one trace.
    const span = tracer.startSpan(`${service} ${topic}`, {
      kind: 'consumer',
      parent: message.headers.traceparent,
      traceId: envelope.traceId,
      attributes: {
        'messaging.system': bus.driver,
        'messaging.operation.type': 'process',
        'messaging.destination.name': topic,
        'messaging.consumer.group.name': service,
        'messaging.message.id': envelope.id,
        'messaging.message.delivery_count': message.deliveryCount,
        'bitbrat.service': service,
        'bitbrat.correlation_id': envelope.correlationId,
        'bitbrat.envelope.type': envelope.type,
        'bitbrat.platform': envelope.source.platform,
      },
    });
    ctx.bindSpan(span);
    try {
      return await runInSpan(tracer, span, () => processEnvelope(topic, consumer, message, ctx, decoded));
    } catch (error) {
      span.fail(isBitBratError(error) ? error.code : 'RUNTIME_ERROR', error instanceof Error ? error.message : String(error));
      throw error;
    } finally {
      span.end();
    }
  };

  /** Decode and validate (R7): the envelope, or the dead letter that turns the message away. */
  const decodeMessage = (message: BusMessage, topic: string): Decoded | DeadLetterOrder => {
    // A value from the in-process bus is shared with its other consumers: this copy is ours.
    let json: unknown;
    try {
      const shared = message.json;
      json = shared === undefined ? JSON.parse(decoder.decode(message.data)) : cloneJson(shared);
    } catch (error) {
      return {
        action: 'dead-letter',
        code: 'DECODE_FAILED',
        reason: `message is not valid JSON: ${(error as Error).message}`,
        replayTopic: topic,
      };
    }
    const validation = validateEnvelope(json);
    if (!validation.ok) {
      const details = { issues: validation.issues.slice(0, 50) as unknown as Record<string, unknown> };
      return { action: 'dead-letter', code: 'ENVELOPE_INVALID', reason: validation.error, replayTopic: topic, details };
    }
    return { json, envelope: validation.envelope };
  };

  /**
   * decode → validate → guard → run → settle, for one envelope. With tracing on, the message is decoded
   * first and the rest runs again inside its span (`decoded` given); off, it is one async call.
   */
  const processEnvelope = async (
    topic: string,
    consumer: EnvelopeConsumer,
    message: BusMessage,
    ctx: MessageContext,
    decoded?: Decoded,
  ): Promise<void> => {
    if (!decoded) {
      const result = decodeMessage(message, topic);
      if ('action' in result) return turnAway(message, topic, result, undefined, ctx);
      ctx.bindEnvelope(result.envelope);
      if (tracing) return traceEnvelope(tracing, topic, consumer, message, ctx, result);
      decoded = result;
    }
    const { json, envelope } = decoded;

    // Guard: another consumer of this topic in the process delivers this platform (see the host); a
    // step consumer runs only the envelope's current step (R1/R7); a duplicate is acked untouched (R8).
    if (consumer.declines?.(envelope)) {
      mark(ctx, 'declined');
      return message.ack();
    }
    let stepIndex = -1;
    if (consumer.mode === 'step') {
      const guard = guardStep(envelope, topic);
      if ('action' in guard) return turnAway(message, topic, guard, envelope, ctx);
      stepIndex = guard.stepIndex;
    }
    const step = stepIndex >= 0 ? envelope.routingSlip[stepIndex] : undefined;
    const idempotencyKey = `${envelope.id}:${stepIndex}:${step?.attempt ?? 0}:${topic}`;
    if (done.has(idempotencyKey)) {
      metrics.duplicates.inc({ service, topic });
      mark(ctx, 'duplicate');
      ctx.logger.debug('duplicate delivery skipped');
      return message.ack();
    }

    // R1: attempt bookkeeping (the bus's delivery count carries retries across redeliveries); R9: budget.
    const attempt = (step?.attempt ?? 0) + message.deliveryCount;
    if (step) {
      step.attempt = attempt;
      step.startedAt = isoNow();
    }
    ctx.begin(
      step,
      stepIndex,
      attempt,
      step?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      stepTimeoutMs(consumer.mode, step?.timeoutMs, replyDeadline(envelope), Date.now()),
    );
    if (ctx.span) {
      ctx.span.rename(`${service} ${step ? step.id : topic}`);
      ctx.span.setAttributes({ 'bitbrat.step': step?.id, 'bitbrat.step_index': step ? stepIndex : undefined, 'bitbrat.attempt': attempt });
    }

    // Run: the one handler-call path, held while a dependency is down.
    const copy = handlerCopy(json, step, stepIndex);
    const ran = await held(message, () => runHandler(consumer, copy, ctx), ctx);
    if (!ran.ok) {
      mark(ctx, 'released');
      return message.nak(0);
    }
    const result = ran.value;

    // Settle: the handler may return a changed copy; the slip bookkeeping stays the runtime's (R10).
    const out: Envelope = result.envelope ?? envelope;
    if (result.envelope && step) protectHistory(out, step, stepIndex);
    const order = decide(topic, consumer, result, out, stepIndex, attempt, ctx);
    if (order.action === 'retry') return message.nak(order.delayMs);
    // R8: ack only once the next publish is confirmed.
    const settled = await held(message, () => carryOut(message, topic, order, out, ctx), ctx);
    if (!settled.ok) return message.nak(0);
    done.add(idempotencyKey);
    return message.ack();
  };

  const process = async (topic: string, consumer: Consumer, message: BusMessage) => {
    const perTopic = topicMetrics(topic);
    perTopic.consumed.inc();
    const started = performance.now();
    const ctx = new MessageContext(service, instanceId, topic, logger, message.deliveryCount, shutdownSignal);
    try {
      if (consumer.mode === 'raw') return await processRaw(topic, consumer, message, ctx);
      return await processEnvelope(topic, consumer, message, ctx);
    } catch (error) {
      // Only the runtime's own settling can land here (e.g. a stage without a next topic).
      const log = ctx.logger;
      log.error({ err: error }, 'runtime could not route the message; dead-lettering it');
      try {
        await deadLetter(
          message,
          topic,
          isBitBratError(error) ? error.code : 'HANDLER_EXCEPTION',
          error instanceof Error ? error.message : String(error),
          {},
          log,
        );
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
