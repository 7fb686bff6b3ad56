import { createHash } from 'node:crypto';
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
import { publishWithRetry, type BusMessage, type MessageBus } from '../bus/index.js';
import { lazyChild, type Logger } from './logger.js';
import type { RuntimeMetrics } from './metrics.js';
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
      if (keys.has(key)) return;
      const evicted = ring[next];
      if (evicted !== undefined) keys.delete(evicted);
      ring[next] = key;
      next = (next + 1) % limit;
      keys.add(key);
    },
  };
}

class DeadlineError extends Error {}

export function createSlipEngine(options: EngineOptions): SlipEngine {
  const { service, bus, metrics, logger } = options;
  const done = createLruSet(options.idempotencyCacheSize ?? 50_000);
  const shutdownController = new AbortController();
  // Labelled metric children are looked up once per topic, not hashed on every message.
  const publishedChildren = new Map<string, ReturnType<RuntimeMetrics['published']['labels']>>();
  const publishedCounter = (topic: string) => {
    let child = publishedChildren.get(topic);
    if (!child) publishedChildren.set(topic, (child = metrics.published.labels({ service, topic })));
    return child;
  };
  const topicChildren = new Map<string, { consumed: ReturnType<RuntimeMetrics['consumed']['labels']>; handlerSeconds: ReturnType<RuntimeMetrics['handlerSeconds']['labels']> }>();
  const topicMetrics = (topic: string) => {
    let children = topicChildren.get(topic);
    if (!children) topicChildren.set(topic, (children = { consumed: metrics.consumed.labels({ service, topic }), handlerSeconds: metrics.handlerSeconds.labels({ service, topic }) }));
    return children;
  };
  const retryBase = options.retryBaseMs ?? 500;
  const retryMax = options.retryMaxMs ?? 30_000;

  const publishRaw = async (topic: string, data: Uint8Array, headers: Record<string, string>, msgId?: string) => {
    await publishWithRetry(bus, topic, data, { headers, msgId }, {
      maxRetries: options.publishMaxRetries,
      onRetry: (error, attempt, delayMs) => logger.warn({ topic, attempt, delayMs, err: error }, 'publish failed; retrying'),
    });
    publishedCounter(topic).inc();
  };

  const publishEnvelope = async (topic: string, envelope: Envelope, msgId?: string) => {
    await publishRaw(topic, encoder.encode(JSON.stringify(envelope)), headersFor(envelope, service), msgId);
  };

  /**
   * Keeps trying `work` while a dependency is down, extending the message's lease so it stays ours and
   * on the bus. Returns false when the service is shutting down (the caller naks the message).
   */
  const holdWhileDown = async <T>(message: BusMessage, work: () => Promise<T>, log: Logger): Promise<{ ok: true; value: T } | { ok: false }> => {
    let attempt = 0;
    for (;;) {
      try {
        const value = await work();
        if (attempt > 0) {
          options.onDependency?.('bus', true);
          options.onDependency?.('store', true);
        }
        return { ok: true, value };
      } catch (error) {
        if (!isBitBratError(error) || !DEPENDENCY_DOWN.has(error.code)) throw error;
        attempt += 1;
        const which = error.code === 'STORE_UNAVAILABLE' ? 'store' : 'bus';
        options.onDependency?.(which, false, error.message);
        if (attempt === 1 || attempt % 10 === 0) log.warn({ err: error, attempt }, `${which} unavailable; holding the message and retrying`);
        if (shutdownController.signal.aborted) return { ok: false };
        await message.working().catch(() => undefined);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(5_000, 200 * 2 ** Math.min(attempt, 5)));
          shutdownController.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            resolve();
          }, { once: true });
        });
        if (shutdownController.signal.aborted) return { ok: false };
      }
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

  /** R6: finalize, or DLQ when there is no finalization destination. */
  const finalize = async (message: BusMessage, topic: string, envelope: Envelope, stepIndex: number, log: Logger) => {
    const destination = envelope.finalizationDestination;
    if (!destination) {
      await deadLetter(message, topic, 'NO_FINALIZATION_DESTINATION', 'the envelope had to be finalized but has no finalizationDestination', { envelope, stepIndex, replayTopic: Topic.finalizer }, log);
      return;
    }
    await publishEnvelope(destination, envelope, `${envelope.id}:final`);
  };

  /** R2/R3: where an envelope goes after a step succeeded. */
  const route = async (message: BusMessage, topic: string, consumer: EnvelopeConsumer, envelope: Envelope, result: HandlerResult, stepIndex: number, log: Logger) => {
    const msgId = `${envelope.id}:${stepIndex}:${topic}`;
    if (consumer.mode === 'sink') return;
    if (consumer.mode === 'stage' && result.kind !== 'handled') {
      if (consumer.next === 'finalization') {
        envelope.outcome ??= 'completed';
        await finalize(message, topic, envelope, stepIndex, log);
      } else {
        await publishEnvelope(consumer.next!, envelope, msgId);
      }
      return;
    }
    const egress = envelope.source.egressDestination;
    if (result.kind === 'handled') {
      envelope.outcome = result.outcome ?? 'handled';
      if (egress && consumer.next !== 'finalization') await publishEnvelope(egress, envelope, `${envelope.id}:egress`);
      else await finalize(message, topic, envelope, stepIndex, log);
      return;
    }
    const nextIndex = currentStepIndex(envelope);
    if (nextIndex >= 0) {
      const next = envelope.routingSlip[nextIndex]!;
      if (!next.destination) throw new BitBratError('ENVELOPE_INVALID', `step ${nextIndex} (${next.id}) has no destination`);
      await publishEnvelope(next.destination, envelope, msgId);
      return;
    }
    if (egress && hasReply(envelope)) {
      envelope.outcome ??= 'completed';
      await publishEnvelope(egress, envelope, `${envelope.id}:egress`);
      return;
    }
    envelope.outcome ??= 'completed';
    await finalize(message, topic, envelope, stepIndex, log);
  };

  const runWithDeadline = async (work: (signal: AbortSignal) => Promise<HandlerResult>, timeoutMs: number | undefined): Promise<HandlerResult> => {
    // Without a deadline the handler's signal is the shutdown signal; no controller per message.
    if (timeoutMs === undefined) return await work(shutdownController.signal);
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      if (timeoutMs <= 0) throw new DeadlineError('the deadline had already passed when the step started');
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const error = new DeadlineError(`the step did not finish within ${timeoutMs} ms`);
          controller.abort(error);
          reject(error);
        }, timeoutMs);
      });
      return await Promise.race([work(controller.signal), deadline]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  };

  const processRaw = async (topic: string, consumer: RawConsumer, message: BusMessage, log: Logger) => {
    const ctx: HandlerContext = {
      service,
      instanceId: options.instanceId,
      topic,
      logger: log,
      stepIndex: -1,
      attempt: message.deliveryCount,
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      signal: shutdownController.signal,
    };
    try {
      const held = await holdWhileDown(message, () => consumer.handleRaw(message, ctx), log);
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
      log.error({ err: error, raw: encodeRaw(message.data).raw.slice(0, 4096) }, 'raw handler failed for good; message terminated');
      return message.term(error instanceof Error ? error.message : String(error));
    }
  };

  const process = async (topic: string, consumer: Consumer, message: BusMessage) => {
    const perTopic = topicMetrics(topic);
    perTopic.consumed.inc();
    const started = performance.now();
    const stopTimer = () => perTopic.handlerSeconds.observe((performance.now() - started) / 1000);
    let log = lazyChild(logger, { topic });
    try {
      if (consumer.mode === 'raw') return await processRaw(topic, consumer, message, log);

      // R7: undecodable or invalid → DLQ with the raw bytes, ack, keep going.
      let json: unknown;
      try {
        json = JSON.parse(decoder.decode(message.data));
      } catch (error) {
        const held = await holdWhileDown(message, () => deadLetter(message, topic, 'DECODE_FAILED', `message is not valid JSON: ${(error as Error).message}`, { replayTopic: topic }, log), log);
        return held.ok ? message.ack() : message.nak(0);
      }
      const validation = validateEnvelope(json);
      if (!validation.ok) {
        const held = await holdWhileDown(
          message,
          () => deadLetter(message, topic, 'ENVELOPE_INVALID', validation.error, { replayTopic: topic, details: { issues: validation.issues.slice(0, 50) as unknown as Record<string, unknown> } }, log),
          log,
        );
        return held.ok ? message.ack() : message.nak(0);
      }
      const envelope = validation.envelope;
      log = log.child({ envelopeId: envelope.id, correlationId: envelope.correlationId, traceId: envelope.traceId });

      let stepIndex = -1;
      if (consumer.mode === 'step') {
        stepIndex = currentStepIndex(envelope);
        const current = stepIndex >= 0 ? envelope.routingSlip[stepIndex] : undefined;
        if (!current || current.destination !== topic) {
          const reason = current ? `current step ${stepIndex} (${current.id}) is for ${current.destination ?? 'no destination'}, not ${topic}` : 'the slip has no PENDING step';
          const held = await holdWhileDown(message, () => deadLetter(message, topic, 'SLIP_MISMATCH', reason, { envelope, stepIndex }, log), log);
          return held.ok ? message.ack() : message.nak(0);
        }
      }
      const step = stepIndex >= 0 ? envelope.routingSlip[stepIndex] : undefined;

      // R8: a redelivered duplicate of a message this process already finished is acked and skipped.
      const idempotencyKey = `${envelope.id}:${stepIndex}:${step?.attempt ?? 0}:${topic}`;
      if (done.has(idempotencyKey)) {
        metrics.duplicates.inc({ service, topic });
        log.debug('duplicate delivery skipped');
        return message.ack();
      }

      // R1: attempt bookkeeping; the bus's delivery count carries retries across redeliveries.
      const attempt = (step?.attempt ?? 0) + message.deliveryCount;
      const maxAttempts = step?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
      if (step) {
        step.attempt = attempt;
        step.startedAt = new Date().toISOString();
        log = log.child({ step: step.id, stepIndex, attempt });
      }

      // R9: the step's own timeout, bounded by the reply deadline.
      const deadlineAt = replyDeadline(envelope);
      let timeoutMs = step?.timeoutMs;
      if (deadlineAt !== undefined && consumer.mode !== 'sink') {
        const remaining = deadlineAt - Date.now();
        timeoutMs = timeoutMs === undefined ? remaining : Math.min(timeoutMs, remaining);
      }

      // The handler gets its own copy: the decoded JSON, which zod's parse did not share with `envelope`
      // for anything the runtime reads (slip, outcome, errors, source). Cheaper than a deep clone.
      const handlerCopy = json as Envelope;
      if (step) Object.assign(handlerCopy.routingSlip[stepIndex]!, { attempt: step.attempt, startedAt: step.startedAt });

      let result: HandlerResult;
      const held = await holdWhileDown(
        message,
        async () => {
          try {
            return await runWithDeadline(
              (signal) =>
                consumer.handle(handlerCopy, {
                  service,
                  instanceId: options.instanceId,
                  topic,
                  logger: log,
                  step,
                  stepIndex,
                  attempt,
                  maxAttempts,
                  signal,
                }),
              timeoutMs,
            );
          } catch (error) {
            if (error instanceof DeadlineError) return { kind: 'failed', code: 'DEADLINE', message: error.message, retryable: false } satisfies HandlerResult;
            if (isBitBratError(error) && DEPENDENCY_DOWN.has(error.code)) throw error;
            if (isBitBratError(error)) return { kind: 'failed', code: error.code, message: error.message, retryable: error.retryable, details: error.details } satisfies HandlerResult;
            log.error({ err: error }, 'handler threw');
            return { kind: 'failed', code: 'HANDLER_EXCEPTION', message: error instanceof Error ? error.message : String(error), retryable: false } satisfies HandlerResult;
          }
        },
        log,
      );
      if (!held.ok) return message.nak(0);
      result = held.value;

      // The handler may return a modified copy; slip bookkeeping is always the runtime's.
      const out: Envelope = result.envelope ?? envelope;
      if (result.envelope && step) {
        // Keep the runtime's view of finished steps (R10: history is never rewritten by handlers).
        const incoming = out.routingSlip[stepIndex];
        if (!incoming || incoming.id !== step.id) out.routingSlip.splice(stepIndex, 0, step);
        out.routingSlip[stepIndex] = { ...out.routingSlip[stepIndex]!, ...step };
      }
      const outStep = stepIndex >= 0 ? out.routingSlip[stepIndex] : undefined;
      const now = new Date().toISOString();

      if (result.kind === 'failed') {
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
            await finalize(message, topic, out, stepIndex, log);
          }
        };
        const published = await holdWhileDown(message, settle, log);
        if (!published.ok) return message.nak(0);
        done.add(idempotencyKey);
        return message.ack();
      }

      if (outStep) {
        outStep.status = result.kind === 'skip' ? 'SKIP' : 'OK';
        outStep.endedAt = now;
        outStep.error = null;
      }
      const published = await holdWhileDown(message, () => route(message, topic, consumer, out, result, stepIndex, log), log);
      if (!published.ok) return message.nak(0);
      done.add(idempotencyKey);
      return message.ack();
    } catch (error) {
      // Only the runtime's own publishing can land here (e.g. a slip step without a destination).
      log.error({ err: error }, 'runtime could not route the message; dead-lettering it');
      try {
        await deadLetter(message, topic, isBitBratError(error) ? error.code : 'HANDLER_EXCEPTION', error instanceof Error ? error.message : String(error), {}, log);
        return message.ack();
      } catch (dlqError) {
        log.error({ err: dlqError }, 'dead-lettering failed; message will be redelivered');
        return message.nak(1_000);
      }
    } finally {
      stopTimer();
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
