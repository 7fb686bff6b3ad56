import { z } from 'zod';

/** Status of one routing-slip step (R1). */
export const StepStatus = { PENDING: 'PENDING', OK: 'OK', ERROR: 'ERROR', SKIP: 'SKIP' } as const;
export type StepStatus = (typeof StepStatus)[keyof typeof StepStatus];

const isoTimestamp = z.string().refine((value) => !Number.isNaN(Date.parse(value)), 'must be an ISO-8601 timestamp');

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

/**
 * Validates unknown input against the envelope schema; the error lists every problem with its path.
 *
 * The hot path (every consumed message) first runs a hand-written check that mirrors EnvelopeSchema
 * and builds the same output zod would (schema objects and arrays copied, unknown keys carried over,
 * `__proto__` keys dropped). It only ever says "valid" for input zod accepts; anything it is unsure
 * about (and every invalid envelope) goes to zod, which gives the verdict and the error message.
 */
export function validateEnvelope(input: unknown): ValidationResult {
  const fast = fastEnvelope(input);
  if (fast !== BAD) return { ok: true, envelope: fast as Envelope };
  const parsed = EnvelopeSchema.safeParse(input);
  if (parsed.success) return { ok: true, envelope: parsed.data };
  const error = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ');
  return { ok: false, error, issues: parsed.error.issues };
}

/** The fast path alone (for tests): the parsed envelope, or undefined when it leaves the input to zod. */
export function fastValidateEnvelope(input: unknown): Envelope | undefined {
  const fast = fastEnvelope(input);
  return fast === BAD ? undefined : (fast as Envelope);
}

/** JSON Schema (draft 2020-12) generated from the zod schema. */
export function envelopeJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(EnvelopeSchema, { target: 'draft-2020-12', unrepresentable: 'any' }) as Record<string, unknown>;
  return { $id: 'https://bitbrat.dev/schemas/envelope.v1.json', title: 'BitBrat Envelope v1', ...schema };
}

// ---------------------------------------------------------------------------------------------------
// Fast path for validateEnvelope. Each checker returns the parsed value (a copy for objects and arrays,
// with keys in the order zod's output has them) or BAD. It may return BAD for input zod accepts (then
// zod decides); it must never accept what zod rejects. Keep it in step with the schemas above: a field
// added there and not here makes every envelope that carries it take the (correct, slower) zod path,
// but a constraint added there and not here would let invalid envelopes through.

const BAD: unique symbol = Symbol('invalid');
/** False when a fast shape no longer matches its zod schema (see objectOf). */
let fastPathInSync = true;
type Checked = unknown;
type Check = (value: unknown) => Checked;

const OBJECT_PROTOTYPE = Object.prototype;

/** Plain objects only (what JSON.parse makes); anything else is left to zod. */
function isPlain(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === OBJECT_PROTOTYPE && (value as { constructor?: unknown }).constructor === Object;
}

const anyString: Check = (value) => (typeof value === 'string' ? value : BAD);
const nonEmptyString: Check = (value) => (typeof value === 'string' && value.length > 0 ? value : BAD);
const booleanValue: Check = (value) => (typeof value === 'boolean' ? value : BAD);
const finiteNumber: Check = (value) => (typeof value === 'number' && Number.isFinite(value) ? value : BAD);
const safeInt: Check = (value) => (typeof value === 'number' && Number.isSafeInteger(value) ? value : BAD);
const nonNegativeInt: Check = (value) => (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : BAD);
const positiveInt: Check = (value) => (typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : BAD);
const scalar: Check = (value) => (typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value)) ? value : BAD);
const oneOf = (...values: string[]): Check => {
  const allowed = new Set<unknown>(values);
  return (value) => (allowed.has(value) ? value : BAD);
};

const digit = (code: number) => code >= 48 && code <= 57;
const twoDigits = (text: string, at: number) => (text.charCodeAt(at) - 48) * 10 + (text.charCodeAt(at + 1) - 48);

/**
 * The isoTimestamp refinement is `!isNaN(Date.parse(value))`. `Date.parse` is slow, so the exact shape
 * `toISOString()` produces (YYYY-MM-DDTHH:mm:ss.sssZ, day ≤ 28 so every month has it) is recognised
 * directly; every other string still goes through `Date.parse`.
 */
const timestamp: Check = (value) => {
  if (typeof value !== 'string') return BAD;
  if (value.length === 24 && isCanonicalIso(value)) return value;
  return Number.isNaN(Date.parse(value)) ? BAD : value;
};

function isCanonicalIso(text: string): boolean {
  if (text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 84 || text.charCodeAt(13) !== 58) return false;
  if (text.charCodeAt(16) !== 58 || text.charCodeAt(19) !== 46 || text.charCodeAt(23) !== 90) return false;
  for (let at = 0; at < 23; at += 1) {
    if (at === 4 || at === 7 || at === 10 || at === 13 || at === 16 || at === 19) continue;
    if (!digit(text.charCodeAt(at))) return false;
  }
  const month = twoDigits(text, 5);
  const day = twoDigits(text, 8);
  return month >= 1 && month <= 12 && day >= 1 && day <= 28 && twoDigits(text, 11) <= 23 && twoDigits(text, 14) <= 59 && twoDigits(text, 17) <= 59;
}

/** z.array(element): a new array of the checked elements. */
const arrayOf = (element: Check): Check => (value) => {
  if (!Array.isArray(value)) return BAD;
  const out = new Array(value.length);
  for (let i = 0; i < value.length; i += 1) {
    const item = element(value[i]);
    if (item === BAD) return BAD;
    out[i] = item;
  }
  return out;
};

/**
 * z.record(z.string(), valueCheck): zod reads every own key (symbols too, which a string key schema
 * rejects), skips non-enumerable ones and `__proto__`, and copies the rest.
 */
const recordOf = (valueCheck: Check | undefined): Check => (value) => {
  if (!isPlain(value) || Object.getOwnPropertySymbols(value).length > 0) return BAD;
  const out: Record<string, unknown> = {};
  for (const key in value) {
    if (key === '__proto__') continue;
    const item = value[key];
    if (valueCheck === undefined) out[key] = item;
    else {
      const checked = valueCheck(item);
      if (checked === BAD) return BAD;
      out[key] = checked;
    }
  }
  return out;
};

type Shape = ReadonlyArray<readonly [key: string, check: Check, optional?: 'optional']>;

/**
 * z.object / z.looseObject: shape keys in shape order (present ones only), then, for a loose object,
 * the unknown keys in input order. A key that is present with the value `undefined` goes to zod.
 * The checker is generated as straight-line code (as zod's own JIT does), so every property access
 * has a constant name; without code generation it falls back to a loop over the shape.
 */
const objectOf = (schema: z.ZodObject, shape: Shape, loose: boolean): Check => {
  // The shapes must name the same keys, in the same order, and be as loose as the zod schema; if they
  // drifted apart the fast path is switched off (everything goes to zod, correct but slower).
  const zodKeys = Object.keys(schema.shape);
  if (zodKeys.length !== shape.length || zodKeys.some((key, index) => key !== shape[index]![0]) || (schema._zod.def.catchall !== undefined) !== loose) {
    fastPathInSync = false;
  }
  try {
    return compileObject(shape, loose);
  } catch {
    return interpretObject(shape, loose);
  }
};

function compileObject(shape: Shape, loose: boolean): Check {
  const lines = ['if (!isPlain(value)) return BAD;', 'const out = {};', 'let raw, checked;'];
  shape.forEach(([key, , optional], index) => {
    const name = JSON.stringify(key);
    lines.push(`raw = value[${name}];`);
    lines.push(optional ? `if (raw === undefined) { if (${name} in value) return BAD; } else {` : 'if (raw === undefined) return BAD; {');
    lines.push(`checked = checks[${index}](raw); if (checked === BAD) return BAD; out[${name}] = checked; }`);
  });
  if (loose) {
    const cases = shape.map(([key]) => `case ${JSON.stringify(key)}:`).join(' ');
    lines.push(`for (const key in value) { switch (key) { ${cases} case "__proto__": continue; } out[key] = value[key]; }`);
  }
  lines.push('return out;');
  const factory = new Function('isPlain', 'BAD', 'checks', `return function checkObject(value) {\n${lines.join('\n')}\n};`) as (
    plain: typeof isPlain,
    bad: typeof BAD,
    checks: Check[],
  ) => Check;
  return factory(isPlain, BAD, shape.map(([, check]) => check));
}

function interpretObject(shape: Shape, loose: boolean): Check {
  const keys = shape.map(([key]) => key);
  const checks = shape.map(([, check]) => check);
  const optional = shape.map(([, , flag]) => flag === 'optional');
  const known = new Set(keys);
  return (value) => {
    if (!isPlain(value)) return BAD;
    const out: Record<string, unknown> = {};
    for (let i = 0; i < keys.length; i += 1) {
      const key = keys[i]!;
      const raw = value[key];
      if (raw === undefined) {
        if (!optional[i] || key in value) return BAD;
        continue;
      }
      const checked = checks[i]!(raw);
      if (checked === BAD) return BAD;
      out[key] = checked;
    }
    if (loose) {
      for (const key in value) {
        if (key === '__proto__' || known.has(key)) continue;
        out[key] = value[key];
      }
    }
    return out;
  };
}

const optionalRecord = recordOf(undefined);
const nullable = (check: Check): Check => (value) => (value === null ? null : check(value));

const fastStepError = objectOf(StepErrorSchema, [['code', nonEmptyString], ['message', anyString, 'optional'], ['retryable', booleanValue, 'optional']], false);

const fastStep = objectOf(
  RoutingStepSchema,
  [
    ['id', nonEmptyString],
    ['v', anyString, 'optional'],
    ['status', oneOf('PENDING', 'OK', 'ERROR', 'SKIP')],
    ['attempt', nonNegativeInt, 'optional'],
    ['maxAttempts', positiveInt, 'optional'],
    ['destination', nonEmptyString, 'optional'],
    ['attributes', recordOf(anyString), 'optional'],
    ['startedAt', timestamp, 'optional'],
    ['endedAt', timestamp, 'optional'],
    ['timeoutMs', positiveInt, 'optional'],
    ['error', nullable(fastStepError), 'optional'],
    ['notes', anyString, 'optional'],
  ],
  true,
);

const fastEnvelopeShape = objectOf(
  EnvelopeSchema,
  [
    ['v', oneOf('1')],
    ['id', nonEmptyString],
    ['correlationId', nonEmptyString],
    ['traceId', nonEmptyString],
    ['timestamp', timestamp],
    ['type', nonEmptyString],
    ['source', objectOf(SourceSchema, [['platform', nonEmptyString], ['channel', anyString], ['channelId', anyString], ['egressDestination', nonEmptyString, 'optional']], true)],
    [
      'user',
      objectOf(
        UserSchema,
        [['id', anyString], ['name', anyString], ['displayName', anyString], ['profileImageUrl', anyString], ['role', anyString], ['permissions', arrayOf(anyString), 'optional']],
        true,
      ),
    ],
    ['routingSlip', arrayOf(fastStep)],
    ['finalizationDestination', anyString, 'optional'],
    ['payload', optionalRecord],
    ['channel', anyString, 'optional'],
    ['userId', anyString, 'optional'],
    [
      'message',
      objectOf(
        MessageSchema,
        [['id', anyString, 'optional'], ['text', anyString], ['command', anyString, 'optional'], ['args', arrayOf(anyString), 'optional'], ['replyToMessageId', anyString, 'optional']],
        true,
      ),
      'optional',
    ],
    [
      'externalEvent',
      objectOf(
        ExternalEventSchema,
        [
          ['id', nonEmptyString],
          ['source', nonEmptyString],
          ['kind', nonEmptyString],
          ['version', anyString],
          ['createdAt', timestamp],
          ['payload', optionalRecord],
          ['rawPayload', optionalRecord, 'optional'],
        ],
        true,
      ),
      'optional',
    ],
    [
      'annotations',
      arrayOf(
        objectOf(
          AnnotationSchema,
          [
            ['id', nonEmptyString],
            ['kind', nonEmptyString],
            ['source', nonEmptyString],
            ['createdAt', timestamp],
            ['label', anyString, 'optional'],
            ['value', scalar, 'optional'],
            ['score', finiteNumber, 'optional'],
            ['payload', optionalRecord, 'optional'],
          ],
          true,
        ),
      ),
      'optional',
    ],
    [
      'candidates',
      arrayOf(
        objectOf(
          CandidateSchema,
          [
            ['id', nonEmptyString],
            ['kind', nonEmptyString],
            ['source', nonEmptyString],
            ['createdAt', timestamp],
            ['text', anyString],
            ['priority', finiteNumber, 'optional'],
            ['metadata', optionalRecord, 'optional'],
          ],
          true,
        ),
      ),
      'optional',
    ],
    [
      'errors',
      arrayOf(
        objectOf(
          ErrorEntrySchema,
          [
            ['code', nonEmptyString],
            ['message', anyString],
            ['step', anyString, 'optional'],
            ['stepIndex', safeInt, 'optional'],
            ['service', anyString, 'optional'],
            ['retryable', booleanValue, 'optional'],
            ['at', timestamp],
            ['details', optionalRecord, 'optional'],
          ],
          true,
        ),
      ),
      'optional',
    ],
    ['qos', objectOf(QosSchema, [['maxResponseMs', positiveInt, 'optional'], ['priority', safeInt, 'optional'], ['reportEnding', booleanValue, 'optional']], true), 'optional'],
    ['outcome', oneOf('completed', 'handled', 'failed', 'unrouted'), 'optional'],
    [
      'delivery',
      objectOf(
        DeliverySchema,
        [['delivered', booleanValue], ['at', timestamp], ['destination', anyString, 'optional'], ['reason', anyString, 'optional'], ['platformMessageIds', arrayOf(anyString), 'optional']],
        true,
      ),
      'optional',
    ],
  ],
  true,
);

const fastEnvelope: Check = (value) => (fastPathInSync ? fastEnvelopeShape(value) : BAD);
