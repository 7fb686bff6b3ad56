import { randomBytes, randomUUID } from 'node:crypto';
import { EventType, type Candidate, type Envelope, type EnvelopeSource, type EnvelopeUser, type RoutingStep } from './envelope.js';
import { Topic, stepTopic } from './topics.js';

/** A new unique id (UUID v4). */
export function newId(): string {
  return randomUUID();
}

/** A W3C trace id: 32 lower-case hex characters. */
export function newTraceId(): string {
  return randomBytes(16).toString('hex');
}

/**
 * A W3C span id: 16 lower-case hex characters. Span ids only need to be unique within a trace, not
 * unguessable, so they come from a fast counter mixed with a per-process random seed.
 */
const spanSeed = randomBytes(4).readUInt32BE(0);
let spanCounter = 0;
export function newSpanId(): string {
  spanCounter = (spanCounter + 1) >>> 0;
  return spanSeed.toString(16).padStart(8, '0') + spanCounter.toString(16).padStart(8, '0');
}

/** An envelope's traceId as a W3C trace id (32 lower-case hex characters). */
export function normalizeTraceId(traceId: string): string {
  return /^[0-9a-f]{32}$/.test(traceId)
    ? traceId
    : traceId
        .replace(/[^0-9a-f]/gi, '')
        .toLowerCase()
        .padEnd(32, '0')
        .slice(0, 32);
}

/** The `traceparent` header for a trace id (a new span each hop). */
export function traceparentFor(traceId: string): string {
  return `00-${normalizeTraceId(traceId)}-${newSpanId()}-01`;
}

/** U+0000 or a UTF-16 surrogate without its partner. */
const ILL_FORMED = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Text every store can keep: NUL and lone surrogates become U+FFFD. PostgreSQL refuses both (text cannot
 * hold U+0000, jsonb neither, and a lone surrogate is not UTF-8), so a viewer typing one would otherwise
 * be answered but never recorded.
 */
export function wellFormedText(text: string): string {
  ILL_FORMED.lastIndex = 0;
  return ILL_FORMED.test(text) ? text.replace(ILL_FORMED, '\uFFFD') : text;
}

/**
 * {@link wellFormedText} applied to every string (and object key) inside plain objects and arrays.
 * Returns the same value when nothing needed repair, so the common case allocates nothing.
 */
export function wellFormedDeep<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return wellFormedText(value) as T;
  if (value === null || typeof value !== 'object' || depth > 64) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((item, index) => {
      const fixed = wellFormedDeep(item, depth + 1);
      if (fixed !== item) (out ??= [...value])[index] = fixed;
    });
    return (out ?? value) as T;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  let out: Record<string, unknown> | undefined;
  for (const [key, item] of Object.entries(value)) {
    const fixedKey = wellFormedText(key);
    const fixed = wellFormedDeep(item, depth + 1);
    if (fixed !== item || fixedKey !== key) {
      out ??= { ...(value as Record<string, unknown>) };
      if (fixedKey !== key) delete out[key];
      out[fixedKey] = fixed;
    }
  }
  return (out ?? value) as T;
}

export const SYSTEM_USER: EnvelopeUser = { id: 'system', name: 'system', displayName: 'System', profileImageUrl: '', role: 'system' };

export interface NewEnvelopeInput {
  type: string;
  source: EnvelopeSource;
  user?: EnvelopeUser;
  payload?: Record<string, unknown>;
  routingSlip?: RoutingStep[];
  /** Default `internal.finalizer.v1`; pass `null` for none. */
  finalizationDestination?: string | null;
  /** Continue an existing conversation: the new envelope shares its correlation and trace ids. */
  correlationId?: string;
  traceId?: string;
  timestamp?: Date;
  extra?: Partial<Omit<Envelope, 'v' | 'id'>>;
}

/**
 * Builds a valid envelope with fresh id, correlation id and trace id. Every string that comes in (from a
 * platform or a console) is made well-formed here, at the edge, so whatever a viewer types can be recorded.
 */
export function createEnvelope(raw: NewEnvelopeInput): Envelope {
  const input: NewEnvelopeInput = {
    ...raw,
    type: wellFormedText(raw.type),
    source: wellFormedDeep(raw.source),
    ...(raw.user ? { user: wellFormedDeep(raw.user) } : {}),
    ...(raw.payload ? { payload: wellFormedDeep(raw.payload) } : {}),
    ...(raw.extra ? { extra: wellFormedDeep(raw.extra) } : {}),
  };
  const id = newId();
  const envelope: Envelope = {
    v: '1',
    id,
    correlationId: input.correlationId ?? id,
    traceId: input.traceId ?? newTraceId(),
    timestamp: (input.timestamp ?? new Date()).toISOString(),
    type: input.type,
    source: input.source,
    user: input.user ?? { ...SYSTEM_USER },
    routingSlip: input.routingSlip ?? [],
    payload: input.payload ?? {},
    ...input.extra,
  };
  if (input.finalizationDestination !== null) envelope.finalizationDestination = input.finalizationDestination ?? Topic.finalizer;
  return envelope;
}

/** A PENDING step for a service, published to `internal.<id>.v1` unless told otherwise. */
export function createStep(id: string, options: Partial<RoutingStep> = {}): RoutingStep {
  return { id, v: '1', status: 'PENDING', attempt: 0, maxAttempts: 3, destination: stepTopic(id), ...options };
}

/** A text reply candidate. */
export function createReply(source: string, text: string, metadata?: Record<string, unknown>): Candidate {
  return { id: newId(), kind: 'text', source, createdAt: new Date().toISOString(), text, ...(metadata ? { metadata } : {}) };
}

/** What every connector's source status says; persistence merges the payload into the `sources` document. */
export interface SourceStatusInput {
  /** When the status was taken: the envelope's time and the heartbeat in the metrics. */
  at: Date;
  /** The channel the source is (its platform is the payload's `platform`). */
  source: EnvelopeSource;
  sourceId: string;
  displayName: string;
  status: string;
  authStatus: string;
  /** The connector's counters; `lastHeartbeat` is added. */
  metrics: Record<string, unknown>;
  lastError: { code: string; message: string; at: string } | null;
  /** The platform's own fields (latency, stream state, `metadata`). */
  details: Record<string, unknown>;
}

/** A `system.source.status` envelope for internal.ingress.v1. */
export function createSourceStatus(input: SourceStatusInput): Envelope {
  return createEnvelope({
    type: EventType.sourceStatus,
    timestamp: input.at,
    source: input.source,
    payload: {
      sourceId: input.sourceId,
      platform: input.source.platform,
      displayName: input.displayName,
      status: input.status,
      authStatus: input.authStatus,
      metrics: { ...input.metrics, lastHeartbeat: input.at.toISOString() },
      lastError: input.lastError,
      ...input.details,
    },
  });
}
