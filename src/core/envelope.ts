// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { z } from 'zod';
import { DEFER, deriveFastCheck, type FastRefinement } from './fast-check.js';

/** Status of one routing-slip step (R1). */
export const StepStatus = { PENDING: 'PENDING', OK: 'OK', ERROR: 'ERROR', SKIP: 'SKIP' } as const;
export type StepStatus = (typeof StepStatus)[keyof typeof StepStatus];

/** The timestamp rule: anything `Date.parse` understands. */
const isTimestamp = (value: string) => !Number.isNaN(Date.parse(value));
const isoTimestamp = z.string().refine(isTimestamp, 'must be an ISO-8601 timestamp');

export const StepErrorSchema = z.object({
  code: z.string().min(1),
  message: z.string().optional(),
  retryable: z.boolean().optional(),
});

export const RoutingStepSchema = z.looseObject({
  /** Logical step id, e.g. `router`, `llm-bot`. */
  id: z.string().min(1),
  /** Version of the step contract, default "1". */
  v: z.string().optional(),
  status: z.enum(['PENDING', 'OK', 'ERROR', 'SKIP']),
  /** How many attempts this step has had (the runtime increments it before each run). */
  attempt: z.number().int().min(0).optional(),
  /** Default 3. */
  maxAttempts: z.number().int().min(1).optional(),
  /** Topic the envelope is published to for this step. */
  destination: z.string().min(1).optional(),
  /** Transport hints (traceparent, priority, …). */
  attributes: z.record(z.string(), z.string()).optional(),
  startedAt: isoTimestamp.optional(),
  endedAt: isoTimestamp.optional(),
  /** Per-attempt time limit; past it the step fails with DEADLINE (R9). */
  timeoutMs: z.number().int().positive().optional(),
  error: StepErrorSchema.nullable().optional(),
  notes: z.string().optional(),
});

export const SourceSchema = z.looseObject({
  platform: z.string().min(1),
  channel: z.string(),
  channelId: z.string(),
  /** Topic of the ingress-egress / api-gateway instance that holds the connection to reply on. */
  egressDestination: z.string().min(1).optional(),
});

export const UserSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  displayName: z.string(),
  profileImageUrl: z.string(),
  role: z.string(),
  /** Set by auth. */
  permissions: z.array(z.string()).optional(),
});

export const MessageSchema = z.looseObject({
  id: z.string().optional(),
  text: z.string(),
  /** The text split off a leading command, e.g. `!ping` → `ping`. */
  command: z.string().optional(),
  args: z.array(z.string()).optional(),
  replyToMessageId: z.string().optional(),
});

export const ExternalEventSchema = z.looseObject({
  id: z.string().min(1),
  source: z.string().min(1),
  kind: z.string().min(1),
  version: z.string(),
  createdAt: isoTimestamp,
  payload: z.record(z.string(), z.unknown()),
  rawPayload: z.record(z.string(), z.unknown()).optional(),
});

export const AnnotationSchema = z.looseObject({
  id: z.string().min(1),
  /** e.g. `intent`, `sentiment`, `spam`, `moderation`, `first-message`. */
  kind: z.string().min(1),
  /** Service that wrote it. */
  source: z.string().min(1),
  createdAt: isoTimestamp,
  label: z.string().optional(),
  value: z.union([z.string(), z.number(), z.boolean()]).optional(),
  score: z.number().optional(),
  payload: z.record(z.string(), z.unknown()).optional(),
});

export const CandidateSchema = z.looseObject({
  id: z.string().min(1),
  /** `text` is a chat reply. */
  kind: z.string().min(1),
  source: z.string().min(1),
  createdAt: isoTimestamp,
  text: z.string(),
  priority: z.number().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export const ErrorEntrySchema = z.looseObject({
  code: z.string().min(1),
  message: z.string(),
  /** Step id and index that failed, when a step failed. */
  step: z.string().optional(),
  stepIndex: z.number().int().optional(),
  service: z.string().optional(),
  retryable: z.boolean().optional(),
  at: isoTimestamp,
  details: z.record(z.string(), z.unknown()).optional(),
});

export const QosSchema = z.looseObject({
  /** The reply must reach the platform within this many ms of `timestamp` (R9). */
  maxResponseMs: z.number().int().positive().optional(),
  priority: z.number().int().optional(),
  /**
   * The sender waits for the ending (the api-gateway's console): a slip that ends without a reply still goes
   * to `source.egressDestination`, so the sender hears `noreply` with the reason (R2). Chat from platforms
   * leaves it unset: no extra hop for messages nobody waits on.
   */
  reportEnding: z.boolean().optional(),
});

/** How the envelope's processing ended, set by the runtime before finalization. */
export const Outcome = {
  completed: 'completed',
  handled: 'handled',
  failed: 'failed',
  unrouted: 'unrouted',
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

export const DeliverySchema = z.looseObject({
  delivered: z.boolean(),
  at: isoTimestamp,
  destination: z.string().optional(),
  /** Why not delivered: DEADLINE, NO_REPLY, SEND_FAILED, … */
  reason: z.string().optional(),
  platformMessageIds: z.array(z.string()).optional(),
});

/**
 * The envelope: the seeds' Envelope v1 plus the InternalEventV2 fields. This one schema is the source of
 * truth; types are inferred from it and `schemas/envelope.v1.json` is generated from it.
 */
export const EnvelopeSchema = z.looseObject({
  v: z.literal('1'),
  id: z.string().min(1),
  correlationId: z.string().min(1),
  traceId: z.string().min(1),
  timestamp: isoTimestamp,
  type: z.string().min(1),
  source: SourceSchema,
  user: UserSchema,
  routingSlip: z.array(RoutingStepSchema),
  /** Topic that records the final state; an envelope that must finalize without one goes to the DLQ (R6). */
  finalizationDestination: z.string().optional(),
  payload: z.record(z.string(), z.unknown()),
  channel: z.string().optional(),
  userId: z.string().optional(),
  message: MessageSchema.optional(),
  externalEvent: ExternalEventSchema.optional(),
  annotations: z.array(AnnotationSchema).optional(),
  candidates: z.array(CandidateSchema).optional(),
  errors: z.array(ErrorEntrySchema).optional(),
  qos: QosSchema.optional(),
  outcome: z.enum(['completed', 'handled', 'failed', 'unrouted']).optional(),
  delivery: DeliverySchema.optional(),
});

export type RoutingStep = z.infer<typeof RoutingStepSchema>;
export type StepError = z.infer<typeof StepErrorSchema>;
export type EnvelopeSource = z.infer<typeof SourceSchema>;
export type EnvelopeUser = z.infer<typeof UserSchema>;
export type ChatMessage = z.infer<typeof MessageSchema>;
export type ExternalEvent = z.infer<typeof ExternalEventSchema>;
export type Annotation = z.infer<typeof AnnotationSchema>;
export type Candidate = z.infer<typeof CandidateSchema>;
export type ErrorEntry = z.infer<typeof ErrorEntrySchema>;
export type Qos = z.infer<typeof QosSchema>;
export type Delivery = z.infer<typeof DeliverySchema>;
export type Envelope = z.infer<typeof EnvelopeSchema>;

/** Event types used across the platform. */
export const EventType = {
  chatMessage: 'external.chat.message.v1',
  twitchEventSub: 'twitch.eventsub.v1',
  streamOnline: 'system.stream.online',
  streamOffline: 'system.stream.offline',
  sourceStatus: 'system.source.status',
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export type ValidationResult = { ok: true; envelope: Envelope } | { ok: false; error: string; issues: z.core.$ZodIssue[] };

const digit = (code: number) => code >= 48 && code <= 57;
const twoDigits = (text: string, at: number) => (text.charCodeAt(at) - 48) * 10 + (text.charCodeAt(at + 1) - 48);

/**
 * `isTimestamp` without `Date.parse` (slow) for the exact shape `toISOString()` produces
 * (YYYY-MM-DDTHH:mm:ss.sssZ, day ≤ 28 so every month has it); every other string still goes through
 * `Date.parse`, so it agrees with `isTimestamp` on every string.
 */
export const isTimestampFast: FastRefinement = (value: string) => (value.length === 24 && isCanonicalIso(value)) || isTimestamp(value);

function isCanonicalIso(text: string): boolean {
  if (text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 84 || text.charCodeAt(13) !== 58) return false;
  if (text.charCodeAt(16) !== 58 || text.charCodeAt(19) !== 46 || text.charCodeAt(23) !== 90) return false;
  for (let at = 0; at < 23; at += 1) {
    if (at === 4 || at === 7 || at === 10 || at === 13 || at === 16 || at === 19) continue;
    if (!digit(text.charCodeAt(at))) return false;
  }
  const month = twoDigits(text, 5);
  const day = twoDigits(text, 8);
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= 28 &&
    twoDigits(text, 11) <= 23 &&
    twoDigits(text, 14) <= 59 &&
    twoDigits(text, 17) <= 59
  );
}

/** The envelope schema's refinements, for the derived fast check. */
export const envelopeRefinements: ReadonlyMap<(value: never) => unknown, FastRefinement> = new Map([[isTimestamp, isTimestampFast]]);

/** Derived from EnvelopeSchema once, at load: there is no second copy of the schema to keep in step. */
const fastEnvelope = deriveFastCheck(EnvelopeSchema, { refinements: envelopeRefinements });

/**
 * Validates unknown input against the envelope schema; the error lists every problem with its path.
 *
 * The hot path (every consumed message) first runs the check derived from EnvelopeSchema (see
 * fast-check.ts), which builds the same output zod would. It only ever says "valid" for input zod
 * accepts; anything it is unsure about (and every invalid envelope) goes to zod, which gives the
 * verdict and the error message that dead letters carry.
 */
export function validateEnvelope(input: unknown): ValidationResult {
  const fast = fastEnvelope(input);
  if (fast !== DEFER) return { ok: true, envelope: fast };
  const parsed = EnvelopeSchema.safeParse(input);
  if (parsed.success) return { ok: true, envelope: parsed.data };
  // String() each segment: a symbol key in a path (possible for in-process input) would make join throw.
  const error = parsed.error.issues.map((issue) => `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`).join('; ');
  return { ok: false, error, issues: parsed.error.issues };
}

/** The fast path alone (for tests): the parsed envelope, or undefined when it leaves the input to zod. */
export function fastValidateEnvelope(input: unknown): Envelope | undefined {
  const fast = fastEnvelope(input);
  return fast === DEFER ? undefined : fast;
}

/** JSON Schema (draft 2020-12) generated from the zod schema. */
export function envelopeJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(EnvelopeSchema, { target: 'draft-2020-12', unrepresentable: 'any' }) as Record<string, unknown>;
  return { $id: 'https://bitbrat.dev/schemas/envelope.v1.json', title: 'BitBrat Envelope v1', ...schema };
}
