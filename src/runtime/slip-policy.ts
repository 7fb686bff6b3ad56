/**
 * The routing-slip policy (docs/slip-rules.md): what happens to a message once its handler has answered. Pure
 * functions and tables, no I/O: the engine asks, then publishes, retries or dead-letters as told.
 *
 * The whole policy is the mode × result table below plus four questions:
 * - which step a `step` consumer is running (`guardStep`, R1/R7),
 * - where a successful message goes next (`nextHop`, R2/R3/R6 and unknown steps),
 * - whether a failure is retried or recorded (`onFailure`, R4/R5), and how it is recorded (`recordFailure`),
 * - what a raw consumer's failure means (`onRawFailure`).
 */
import {
  BitBratError,
  DEFAULT_MAX_ATTEMPTS,
  Topic,
  backoffDelayMs,
  currentStepIndex,
  hasReply,
  isBitBratError,
  type Envelope,
  type ErrorCode,
  type Outcome,
  type RoutingStep,
} from '../core/index.js';
import type { EnvelopeConsumer, HandlerResult } from './service.js';

/** Error codes that mean "a dependency is down": hold the message and retry, do not spend attempts. */
export const DEPENDENCY_DOWN: ReadonlySet<string> = new Set(['STORE_UNAVAILABLE', 'BUS_UNAVAILABLE', 'PUBLISH_FAILED']);

/** Whether an error means a dependency (bus, store) is down rather than the message being bad. */
export function isDependencyDown(error: unknown): error is BitBratError {
  return isBitBratError(error) && DEPENDENCY_DOWN.has(error.code);
}

/** Thrown into a handler's run when its step deadline passes (R9). */
export class DeadlineError extends Error {}

/** The modes whose payload is an envelope (`raw` consumers get bytes and have their own rule). */
export type EnvelopeMode = EnvelopeConsumer['mode'];
/** The handler results that let a message move on. */
export type SuccessKind = Exclude<HandlerResult['kind'], 'failed'>;

/**
 * Where a successful result sends the envelope:
 * - `next-step`: the first PENDING step of the slip; none left → egress when there is an egress
 *   destination and a reply (or `qos.reportEnding`), else finalization (R2);
 * - `stage-next`: the stage's fixed `next` (a topic, or finalization);
 * - `egress-or-final`: egress when the envelope has an egress destination and the consumer is not
 *   itself the egress stage (whose `next` is finalization), else finalization (R3);
 * - `ack`: nowhere; the message is acked.
 */
export type SuccessRoute = 'next-step' | 'stage-next' | 'egress-or-final' | 'ack';

/** Consumer mode × successful result → route. `slip` routes like `step` but keeps no step of its own. */
export const SUCCESS_ROUTES = {
  step: { continue: 'next-step', skip: 'next-step', handled: 'egress-or-final' },
  slip: { continue: 'next-step', skip: 'next-step', handled: 'egress-or-final' },
  stage: { continue: 'stage-next', skip: 'stage-next', handled: 'egress-or-final' },
  sink: { continue: 'ack', skip: 'ack', handled: 'ack' },
} as const satisfies Record<EnvelopeMode, Record<SuccessKind, SuccessRoute>>;

/**
 * Consumer mode → where a failure that is not retried goes (R5): finalization as `failed`, or, for a
 * sink (which is itself at the end of the line), the dead-letter queue.
 */
export const FAILURE_ROUTES = {
  step: 'finalization',
  slip: 'finalization',
  stage: 'finalization',
  sink: 'dead-letter',
} as const satisfies Record<EnvelopeMode, 'finalization' | 'dead-letter'>;

/** Publish the envelope to `topic` with `msgId` as the bus's idempotency key (R8). */
export interface PublishOrder {
  action: 'publish';
  hop: 'step' | 'stage-next' | 'egress' | 'finalization';
  topic: string;
  msgId: string;
  /** The envelope's outcome from now on, when this hop decides it. */
  outcome?: Outcome;
}

/** Dead-letter the message (with its envelope when there is one), then ack it. */
export interface DeadLetterOrder {
  action: 'dead-letter';
  /** A registry code, or the code a handler failed with (a sink's failure). */
  code: ErrorCode | (string & {});
  reason: string;
  stepIndex?: number;
  /** Where a replay should publish the envelope. */
  replayTopic?: string;
  details?: Record<string, unknown>;
  /** The envelope's outcome in the letter, when this decision sets it. */
  outcome?: Outcome;
}

/** Ack the message; nothing is published. */
export interface AckOrder {
  action: 'ack';
}

/** Redeliver the same message after `delayMs` (R4). */
export interface RetryOrder {
  action: 'retry';
  delayMs: number;
}

/** What to do with a message that is settled (not retried). */
export type SettleOrder = PublishOrder | DeadLetterOrder | AckOrder;

/** The step a `step` consumer runs, or why the message is not its to run (R1, R7). */
export function guardStep(envelope: Envelope, topic: string): { stepIndex: number } | DeadLetterOrder {
  const stepIndex = currentStepIndex(envelope);
  const current = stepIndex >= 0 ? envelope.routingSlip[stepIndex] : undefined;
  if (current && current.destination === topic) return { stepIndex };
  const reason = current
    ? `current step ${stepIndex} (${current.id}) is for ${current.destination ?? 'no destination'}, not ${topic}`
    : 'the slip has no PENDING step';
  return { action: 'dead-letter', code: 'SLIP_MISMATCH', reason, stepIndex };
}

/** R6: finalization, or the DLQ when the envelope has nowhere to be finalized. */
export function finalizationHop(envelope: Envelope, stepIndex: number, outcome?: Outcome): PublishOrder | DeadLetterOrder {
  const destination = envelope.finalizationDestination;
  if (!destination) {
    return {
      action: 'dead-letter',
      code: 'NO_FINALIZATION_DESTINATION',
      reason: 'the envelope had to be finalized but has no finalizationDestination',
      stepIndex,
      replayTopic: Topic.finalizer,
      ...(outcome ? { outcome } : {}),
    };
  }
  return { action: 'publish', hop: 'finalization', topic: destination, msgId: `${envelope.id}:final`, ...(outcome ? { outcome } : {}) };
}

/** Which step topics a service consumes; `undefined` means "do not check" (an engine built without a manifest). */
export type StepTopicCheck = ((topic: string) => boolean) | undefined;

export interface NextHopInput {
  mode: EnvelopeMode;
  /** A stage's `next`: a topic, or `finalization`. */
  next?: string;
  /** The topic the message was consumed from (part of the idempotency key). */
  topic: string;
  /** The step the consumer ran (-1 for modes without one). */
  stepIndex: number;
  result: { kind: SuccessKind; outcome?: Outcome };
  /** The envelope after the handler, with its step already marked OK/SKIP. */
  envelope: Envelope;
  /** Whether a step topic is served by some service; unknown ones are dead-lettered, never published. */
  isServedStep?: StepTopicCheck;
  /** The known step ids, for the reason of an UNKNOWN_STEP dead letter. */
  knownSteps?: readonly string[];
}

/** R2/R3/R6: where an envelope goes after a successful result. */
export function nextHop(input: NextHopInput): SettleOrder {
  const { envelope, topic, stepIndex } = input;
  const route = SUCCESS_ROUTES[input.mode][input.result.kind];
  const egress = envelope.source.egressDestination;
  const completed = envelope.outcome ?? 'completed';
  switch (route) {
    case 'ack':
      return { action: 'ack' };
    case 'stage-next':
      if (input.next === 'finalization') return finalizationHop(envelope, stepIndex, completed);
      if (!input.next) throw new BitBratError('CONFIG_INVALID', `stage consumer of ${topic} has no next topic`);
      return { action: 'publish', hop: 'stage-next', topic: input.next, msgId: `${envelope.id}:${stepIndex}:${topic}` };
    case 'egress-or-final': {
      const outcome = input.result.outcome ?? 'handled';
      if (egress && input.next !== 'finalization')
        return { action: 'publish', hop: 'egress', topic: egress, msgId: `${envelope.id}:egress`, outcome };
      return finalizationHop(envelope, stepIndex, outcome);
    }
    case 'next-step': {
      const nextIndex = currentStepIndex(envelope);
      if (nextIndex >= 0) return stepHop(input, nextIndex, envelope.routingSlip[nextIndex]!);
      // R2: egress only carries a reply, unless the sender waits to hear the ending (qos.reportEnding).
      if (egress && (hasReply(envelope) || envelope.qos?.reportEnding === true))
        return { action: 'publish', hop: 'egress', topic: egress, msgId: `${envelope.id}:egress`, outcome: completed };
      return finalizationHop(envelope, stepIndex, completed);
    }
  }
}

/** The hop to the next PENDING step, unless no service serves it (dead letter, UNKNOWN_STEP). */
function stepHop(input: NextHopInput, nextIndex: number, next: RoutingStep): PublishOrder | DeadLetterOrder {
  if (!next.destination)
    return {
      action: 'dead-letter',
      code: 'ENVELOPE_INVALID',
      reason: `step ${nextIndex} (${next.id}) has no destination`,
      stepIndex: nextIndex,
    };
  if (input.isServedStep && !input.isServedStep(next.destination)) {
    const known = input.knownSteps && input.knownSteps.length > 0 ? input.knownSteps.join(', ') : 'none';
    return {
      action: 'dead-letter',
      code: 'UNKNOWN_STEP',
      reason: `no service serves step ${nextIndex} "${next.id}" (topic ${next.destination}); known steps: ${known}`,
      stepIndex: nextIndex,
      // Replay resumes the slip at that step once a service serves it.
      replayTopic: next.destination,
      details: { step: next.id, destination: next.destination, knownSteps: [...(input.knownSteps ?? [])] },
    };
  }
  return { action: 'publish', hop: 'step', topic: next.destination, msgId: `${input.envelope.id}:${input.stepIndex}:${input.topic}` };
}

/** Backoff settings for R4. */
export interface RetryPolicy {
  baseMs: number;
  maxMs: number;
  random?: () => number;
}

export interface FailureInput {
  mode: EnvelopeMode;
  retryable?: boolean;
  /** 1-based attempt of the step (or delivery) that failed. */
  attempt: number;
  maxAttempts: number;
  retry: RetryPolicy;
}

/** R4/R5: a retryable failure with attempts left is redelivered after a backoff; anything else is recorded. */
export function onFailure(
  input: FailureInput,
): RetryOrder | { action: 'record'; then: 'finalization' | 'dead-letter'; exhausted: boolean } {
  if (input.retryable && input.attempt < input.maxAttempts) {
    return {
      action: 'retry',
      delayMs: backoffDelayMs(input.attempt, { baseMs: input.retry.baseMs, maxMs: input.retry.maxMs, random: input.retry.random }),
    };
  }
  return { action: 'record', then: FAILURE_ROUTES[input.mode], exhausted: input.retryable === true };
}

/**
 * R5/R6: where a recorded failure goes: finalization (or the DLQ when there is none), or for a sink
 * straight to the DLQ with the handler's code, to be replayed onto the sink's topic.
 */
export function failureHop(
  mode: EnvelopeMode,
  envelope: Envelope,
  stepIndex: number,
  topic: string,
  code: string,
  message: string,
): PublishOrder | DeadLetterOrder {
  if (FAILURE_ROUTES[mode] === 'dead-letter') return { action: 'dead-letter', code, reason: message, replayTopic: topic };
  // A sender waiting on the ending (qos.reportEnding) hears the failure too; never from the egress stage itself.
  const egress = envelope.source.egressDestination;
  if (envelope.qos?.reportEnding === true && egress && mode !== 'stage')
    return { action: 'publish', hop: 'egress', topic: egress, msgId: `${envelope.id}:egress`, outcome: 'failed' };
  return finalizationHop(envelope, stepIndex);
}

/** A raw consumer's failure: retried like R4 while deliveries are left, else the message is terminated. */
export function onRawFailure(input: {
  retryable: boolean;
  deliveryCount: number;
  retry: RetryPolicy;
}): RetryOrder | { action: 'terminate' } {
  if (input.retryable && input.deliveryCount < DEFAULT_MAX_ATTEMPTS) {
    return {
      action: 'retry',
      delayMs: backoffDelayMs(input.deliveryCount, { baseMs: input.retry.baseMs, maxMs: input.retry.maxMs, random: input.retry.random }),
    };
  }
  return { action: 'terminate' };
}

/** A failed result as the runtime records it. */
export type Failure = Extract<HandlerResult, { kind: 'failed' }>;

/**
 * What a handler's exception means: a deadline → DEADLINE; a BitBratError keeps its code and
 * retryability; anything else → HANDLER_EXCEPTION. A dependency being down is not the message's
 * failure: `hold` (the engine keeps the message and retries without spending an attempt).
 */
export function failureOf(error: unknown): Failure | { kind: 'hold'; error: BitBratError } {
  if (error instanceof DeadlineError) return { kind: 'failed', code: 'DEADLINE', message: error.message, retryable: false };
  if (isDependencyDown(error)) return { kind: 'hold', error };
  if (isBitBratError(error))
    return { kind: 'failed', code: error.code, message: error.message, retryable: error.retryable, details: error.details };
  return { kind: 'failed', code: 'HANDLER_EXCEPTION', message: error instanceof Error ? error.message : String(error), retryable: false };
}

/** R1: a successful step is marked OK (or SKIP) with its end time. */
export function recordSuccess(envelope: Envelope, stepIndex: number, kind: SuccessKind, now: string): void {
  const step = stepIndex >= 0 ? envelope.routingSlip[stepIndex] : undefined;
  if (!step) return;
  step.status = kind === 'skip' ? 'SKIP' : 'OK';
  step.endedAt = now;
  step.error = null;
}

export interface FailureRecord {
  failure: Failure;
  /** Whether a retryable failure ran out of attempts (the message says after how many). */
  exhausted: boolean;
  attempt: number;
  service: string;
  stepIndex: number;
  now: string;
  /** Set for the egress stage (a stage whose `next` is finalization): the undelivered reply is recorded. */
  deliveryTopic?: string;
}

/**
 * R5: the step becomes ERROR, the error is appended to `errors[]` and the envelope is marked failed.
 * An egress stage that could not deliver also records that (R9: a reply past its deadline is not sent,
 * and the record says so). Returns the message as recorded.
 */
export function recordFailure(envelope: Envelope, record: FailureRecord): string {
  const { failure, stepIndex, now } = record;
  const code = String(failure.code);
  const retryable = failure.retryable ?? false;
  const message = record.exhausted ? `${failure.message} (gave up after ${record.attempt} attempts)` : failure.message;
  const step = stepIndex >= 0 ? envelope.routingSlip[stepIndex] : undefined;
  if (step) {
    step.status = 'ERROR';
    step.endedAt = now;
    step.error = { code, message, retryable };
  }
  envelope.errors = [
    ...(envelope.errors ?? []),
    {
      code,
      message,
      service: record.service,
      at: now,
      retryable,
      ...(step ? { step: step.id, stepIndex } : {}),
      ...(failure.details ? { details: failure.details } : {}),
    },
  ];
  envelope.outcome = 'failed';
  if (record.deliveryTopic && !envelope.delivery)
    envelope.delivery = { delivered: false, at: now, destination: record.deliveryTopic, reason: code };
  return message;
}

/**
 * R10: a handler may return a changed envelope (a router re-plans the slip), but the step it ran is the
 * runtime's: it is put back (inserted when the handler dropped it) with the runtime's bookkeeping.
 */
export function protectHistory(out: Envelope, step: RoutingStep, stepIndex: number): void {
  const incoming = out.routingSlip[stepIndex];
  if (!incoming || incoming.id !== step.id) out.routingSlip.splice(stepIndex, 0, step);
  out.routingSlip[stepIndex] = { ...out.routingSlip[stepIndex]!, ...step };
}

/** R9: the step's own timeout, bounded by the reply deadline (which a sink ignores: it records, it does not reply). */
export function stepTimeoutMs(
  mode: EnvelopeMode,
  stepTimeout: number | undefined,
  replyDeadlineAt: number | undefined,
  now: number,
): number | undefined {
  if (replyDeadlineAt === undefined || mode === 'sink') return stepTimeout;
  const remaining = replyDeadlineAt - now;
  return stepTimeout === undefined ? remaining : Math.min(stepTimeout, remaining);
}
