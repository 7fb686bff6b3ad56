import type { FastifyInstance } from 'fastify';
import type { z } from 'zod';
import type { Envelope, ErrorCode, Outcome, RoutingStep } from '../core/index.js';
import type { BusMessage, MessageBus } from '../bus/index.js';
import type { Logger } from './logger.js';
import type { RuntimeMetrics } from './metrics.js';
import type { PlatformConfig } from './config.js';
import type { SecretsProvider } from './secrets.js';
import type { HealthRegistry } from './health.js';
import type { InflightView } from './inflight.js';
import type { Store } from '../store/index.js';
import type { Tracing } from './tracing.js';

/** What a handler returns; the runtime applies the routing-slip rules to it (docs/slip-rules.md). */
export type HandlerResult =
  | { kind: 'continue'; envelope?: Envelope }
  | { kind: 'skip'; envelope?: Envelope }
  | { kind: 'handled'; envelope?: Envelope; outcome?: Extract<Outcome, 'handled' | 'unrouted' | 'completed'> }
  | {
      kind: 'failed';
      code: ErrorCode | string;
      message: string;
      retryable?: boolean;
      envelope?: Envelope;
      details?: Record<string, unknown>;
    };

/** Step OK; publish to the next step (changes, if any, in `envelope`). */
export const continueWith = (envelope?: Envelope): HandlerResult => ({ kind: 'continue', envelope });
/** Step not applicable; move on. */
export const skip = (envelope?: Envelope): HandlerResult => ({ kind: 'skip', envelope });
/** No further processing; egress delivers any reply, then the envelope is finalized. */
export const handled = (envelope?: Envelope, outcome?: 'handled' | 'unrouted' | 'completed'): HandlerResult => ({
  kind: 'handled',
  envelope,
  outcome,
});
/** The step failed; retryable failures are redelivered after a backoff (R4). */
export const failed = (
  code: ErrorCode | string,
  message: string,
  options: { retryable?: boolean; envelope?: Envelope; details?: Record<string, unknown> } = {},
): HandlerResult => ({
  kind: 'failed',
  code,
  message,
  ...options,
});

/** Per-message context. */
export interface HandlerContext {
  readonly service: string;
  readonly instanceId: string;
  /** Logical topic the message came from. */
  readonly topic: string;
  readonly logger: Logger;
  /** The current step (step consumers only). */
  readonly step?: RoutingStep;
  readonly stepIndex: number;
  /** 1-based attempt number for this step. */
  readonly attempt: number;
  readonly maxAttempts: number;
  /** Aborted when the step's deadline passes. */
  readonly signal: AbortSignal;
}

/**
 * How the runtime treats a consumed topic:
 * - `step`: the topic is a routing-slip step; the runtime does the slip bookkeeping and publishes to the
 *   next step, egress or finalization (R1–R6).
 * - `stage`: a fixed pipeline stage that always hands on to `next` (a topic, or `finalization`).
 * - `slip`: not a step itself, but `continue` routes by the slip (e.g. the router on `authenticated`).
 * - `sink`: terminal; `continue` just acks; a failure goes to the DLQ.
 * - `raw`: the payload is not an envelope (the dead-letter topic); the handler gets the bytes.
 */
export type ConsumerMode = 'step' | 'stage' | 'slip' | 'sink' | 'raw';

export interface EnvelopeConsumer {
  mode: 'step' | 'stage' | 'slip' | 'sink';
  /** For `stage`: a topic, or `finalization`. */
  next?: string;
  handle(envelope: Envelope, ctx: HandlerContext): Promise<HandlerResult>;
  maxInFlight?: number;
  ackWaitMs?: number;
  /**
   * The platforms (envelope.source.platform) this consumer delivers to, for a topic several services of
   * one process consume, like the per-instance egress topic: each envelope is then handled only by the
   * consumer whose platform it is. Envelopes of a platform no co-located consumer names go to all.
   */
  platforms?: readonly string[];
  /** Set by the host: envelopes another consumer of this topic in the process delivers; acked untouched. */
  declines?: (envelope: Envelope) => boolean;
}

export interface RawConsumer {
  mode: 'raw';
  /** Throw a retryable BitBratError to have the message redelivered. */
  handleRaw(message: BusMessage, ctx: HandlerContext): Promise<void>;
  maxInFlight?: number;
  ackWaitMs?: number;
}

export type Consumer = EnvelopeConsumer | RawConsumer;

/** What a chat platform's delivery of a reply reports: the envelope with its `delivery`, and why it failed. */
export interface ReplyDeliveryOutcome {
  envelope: Envelope;
  /** Set when the stage must be recorded as failed: the code for errors[]. */
  failure?: { code: string; message: string };
}

/**
 * The egress stage of a chat platform: `deliver` sends the envelope's reply and records `delivery`, then
 * the envelope goes on to finalization. A reply that could not go out fails the stage (errors[] and outcome
 * failed, not retried) with the envelope's delivery saying why. A reply may wait for the platform's rate
 * limits up to its deadline, so the bus does not redeliver it for two minutes.
 */
export function chatEgressStage(
  platform: string,
  deliver: (envelope: Envelope, handler: HandlerContext) => Promise<ReplyDeliveryOutcome>,
): EnvelopeConsumer {
  return {
    mode: 'stage',
    next: 'finalization',
    ackWaitMs: 120_000,
    platforms: [platform],
    async handle(envelope, handler) {
      const outcome = await deliver(envelope, handler);
      if (outcome.failure) return failed(outcome.failure.code, outcome.failure.message, { envelope: outcome.envelope, retryable: false });
      return continueWith(outcome.envelope);
    },
  };
}

/** Everything a service gets from the host. */
export interface ServiceContext<C = Record<string, unknown>> {
  readonly name: string;
  readonly instanceId: string;
  readonly platform: Readonly<PlatformConfig>;
  readonly config: Readonly<C>;
  readonly logger: Logger;
  readonly bus: MessageBus;
  /** Present when the service declares `needsStore`. */
  readonly store: Store;
  readonly secrets: SecretsProvider;
  readonly metrics: RuntimeMetrics;
  readonly health: HealthRegistry;
  /**
   * Publish an envelope with retries, trace headers and an idempotency key. The envelope is handed over:
   * do not change it afterwards (the in-process bus delivers the object itself).
   */
  publish(topic: string, envelope: Envelope, options?: { msgId?: string }): Promise<void>;
  /** Register a secret value so it is scrubbed from logs. */
  registerSecret(value: string | undefined): void;
  /** Where this process's engines last sent each envelope (absent outside a host). */
  readonly inflight?: InflightView;
  /**
   * The host's tracer; undefined when tracing is off. Connectors pass it to `tracedCall` (or to their
   * platform client) so their API calls are spans even outside a message: as roots there, as children of
   * the message's span inside one.
   */
  readonly tracing?: Tracing;
}

/** What a service's `setup` returns: its consumers, and optional routes, start and stop hooks. */
export interface ServiceInstance {
  /** Handlers keyed by the manifest's topic names (may contain `{instanceId}`). */
  consumers: Record<string, Consumer>;
  /** Register HTTP routes (before the server listens). */
  routes?(app: FastifyInstance): Promise<void> | void;
  /** Connect to external systems; runs after the bus and store are up, before consuming. */
  start?(): Promise<void>;
  /** Release what `setup` and `start` acquired; runs once, in reverse start order. */
  stop?(): Promise<void>;
}

/**
 * A service as written by its author: a name, a config schema and one `setup(ctx)` (the fastify-plugin
 * shape). The host calls `setup` exactly once per process; per-instance state lives in its closure. The
 * store (`ctx.store`) is usable from `start` and the handlers on, not inside `setup` itself. `setup`
 * should acquire nothing that needs releasing (timers, sockets): that belongs in `start`, so a setup
 * that is never started leaves nothing behind.
 */
export interface ServiceDefinition<C = any> {
  name: string;
  /** Service-specific env, validated at start with the platform config. */
  configSchema?: z.ZodType<C>;
  needsStore?: boolean;
  setup(ctx: ServiceContext<C>): ServiceInstance | Promise<ServiceInstance>;
}

/** Identity helper for type inference. */
export function defineService<C>(definition: ServiceDefinition<C>): ServiceDefinition<C> {
  return definition;
}
