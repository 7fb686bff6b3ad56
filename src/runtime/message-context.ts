/**
 * Per-message state for the slip engine: the handler context (topic, envelope, step, attempt), its log
 * scope, and the step's deadline signal (R9).
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { DEFAULT_MAX_ATTEMPTS, type Envelope, type RoutingStep } from '../core/index.js';
import { lazyChild, type Logger } from './logger.js';
import { DeadlineError } from './slip-policy.js';
import type { EnvelopeConsumer, HandlerContext, HandlerResult } from './service.js';
import type { RuntimeSpan } from './tracing.js';

/**
 * `new Date().toISOString()` for the current millisecond, formatted once per millisecond: the runtime
 * stamps two times per message, and at high rates most of them fall in the same millisecond.
 */
let isoClockMs = -1;
let isoClockText = '';
export function isoNow(): string {
  const now = Date.now();
  if (now !== isoClockMs) {
    isoClockMs = now;
    isoClockText = new Date(now).toISOString();
  }
  return isoClockText;
}

/** Width of a deadline slot: a step's deadline fires at most this much late, never early. */
const DEADLINE_SLOT_MS = 10;

/**
 * Step deadlines (R9) grouped into slots of DEADLINE_SLOT_MS: one timer per slot fires every deadline
 * in it, instead of a timer (and its list) per message. A slot's timer is cleared once its last
 * deadline is cancelled.
 */
export function createDeadlineSlots() {
  const slots = new Map<number, { timer: NodeJS.Timeout; fires: Set<() => void> }>();
  return {
    /** Calls `fire` once `at` (epoch ms) has passed, unless cancelled; returns the slot for `cancel`. */
    add(at: number, fire: () => void): number {
      const key = Math.ceil(at / DEADLINE_SLOT_MS) * DEADLINE_SLOT_MS;
      let slot = slots.get(key);
      if (!slot) {
        const fires = new Set<() => void>();
        const timer = setTimeout(
          () => {
            slots.delete(key);
            for (const due of fires) due();
          },
          Math.max(0, key - Date.now()),
        );
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

export type DeadlineSlots = ReturnType<typeof createDeadlineSlots>;

/**
 * The handler context of one message. It doubles as the message's log scope: the child logger (topic,
 * then envelope, then step bindings) is only made when something logs, so a message that logs nothing
 * costs one object, not a chain of child loggers.
 */
export class MessageContext implements HandlerContext {
  stepIndex = -1;
  step: RoutingStep | undefined = undefined;
  attempt: number;
  maxAttempts = DEFAULT_MAX_ATTEMPTS;
  /** The step's time budget (R9), when it has one. */
  timeoutMs: number | undefined = undefined;
  #signal: AbortSignal;
  /** Under a deadline: the step's own controller, made when the handler first reads `signal`. */
  #deadlineSignal = false;
  #controller: AbortController | undefined;
  #expired: Error | undefined;
  #base: Logger;
  #logger: Logger | undefined;
  #envelope: Envelope | undefined;
  #stepBinding = false;
  /** The message's span, when tracing is on. */
  span: RuntimeSpan | undefined = undefined;

  constructor(
    readonly service: string,
    readonly instanceId: string,
    readonly topic: string,
    base: Logger,
    attempt: number,
    /** Without a deadline the handler's signal is this one (the shutdown signal): no controller per message. */
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

  get logger(): Logger {
    if (this.#logger) return this.#logger;
    const bindings: Record<string, unknown> = { topic: this.topic };
    const envelope = this.#envelope;
    if (envelope) {
      bindings.envelopeId = envelope.id;
      bindings.correlationId = envelope.correlationId;
      bindings.traceId = envelope.traceId;
    }
    // The ids a log backend joins with the trace backend (Cloud Logging, Loki, Elastic all read these).
    if (this.span) {
      bindings.trace_id = this.span.traceId;
      bindings.span_id = this.span.spanId;
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

  /** From here on logs carry the message span's trace and span ids. */
  bindSpan(span: RuntimeSpan) {
    this.span = span;
    this.#logger = undefined;
  }

  /** R1 bookkeeping is done: the step, its attempt and budget; from here on logs carry the step. */
  begin(step: RoutingStep | undefined, stepIndex: number, attempt: number, maxAttempts: number, timeoutMs: number | undefined) {
    this.step = step;
    this.stepIndex = stepIndex;
    this.attempt = attempt;
    this.maxAttempts = maxAttempts;
    this.timeoutMs = timeoutMs;
    if (step) {
      this.#stepBinding = true;
      this.#logger = undefined;
    }
  }

  /**
   * Runs the consumer's handler: under the step's deadline when there is one (R9), failing with
   * DEADLINE and aborting the handler's signal when it passes; the handler's own promise otherwise.
   */
  run(consumer: EnvelopeConsumer, envelope: Envelope, deadlines: DeadlineSlots): Promise<HandlerResult> {
    const timeoutMs = this.timeoutMs;
    if (timeoutMs === undefined) return consumer.handle(envelope, this);
    if (timeoutMs <= 0) return Promise.reject(new DeadlineError('the deadline had already passed when the step started'));
    // A rerun (after a dependency came back) gets a fresh signal.
    this.#deadlineSignal = true;
    this.#controller = undefined;
    this.#expired = undefined;
    return new Promise<HandlerResult>((resolve, reject) => {
      const expire = () => {
        const error = new DeadlineError(`the step did not finish within ${timeoutMs} ms`);
        this.#expired = error;
        this.#controller?.abort(error);
        reject(error);
      };
      const slot = deadlines.add(Date.now() + timeoutMs, expire);
      const settle = () => deadlines.cancel(slot, expire);
      let handled: Promise<HandlerResult>;
      try {
        handled = Promise.resolve(consumer.handle(envelope, this));
      } catch (error) {
        settle();
        reject(error);
        return;
      }
      handled.then(
        (result) => (settle(), resolve(result)),
        (error: unknown) => (settle(), reject(error)),
      );
    });
  }
}
