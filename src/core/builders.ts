import { randomBytes, randomUUID } from 'node:crypto';
import type { Candidate, Envelope, EnvelopeSource, EnvelopeUser, RoutingStep } from './envelope.js';
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
  return /^[0-9a-f]{32}$/.test(traceId) ? traceId : traceId.replace(/[^0-9a-f]/gi, '').toLowerCase().padEnd(32, '0').slice(0, 32);
}

/** The `traceparent` header for a trace id (a new span each hop). */
export function traceparentFor(traceId: string): string {
  return `00-${normalizeTraceId(traceId)}-${newSpanId()}-01`;
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

/** Builds a valid envelope with fresh id, correlation id and trace id. */
export function createEnvelope(input: NewEnvelopeInput): Envelope {
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
