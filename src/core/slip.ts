// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import type { Candidate, Envelope, RoutingStep } from './envelope.js';

/** Default attempts per step (R4). */
export const DEFAULT_MAX_ATTEMPTS = 3;

/** Index of the current step: the first PENDING one (R1); -1 when none is left. */
export function currentStepIndex(envelope: Envelope): number {
  const slip = envelope.routingSlip;
  for (let index = 0; index < slip.length; index += 1) if (slip[index]!.status === 'PENDING') return index;
  return -1;
}

export function currentStep(envelope: Envelope): RoutingStep | undefined {
  const index = currentStepIndex(envelope);
  return index < 0 ? undefined : envelope.routingSlip[index];
}

/** A candidate egress can deliver: text that is not blank. */
const isTextReply = (candidate: Candidate): boolean => candidate.kind === 'text' && candidate.text.trim().length > 0;

/** Whether the envelope carries a reply for egress to deliver. */
export function hasReply(envelope: Envelope): boolean {
  return (envelope.candidates ?? []).some(isTextReply);
}

/** The non-empty text candidates, highest priority first, earliest first on ties. */
export function textReplies(envelope: Envelope) {
  return (envelope.candidates ?? []).filter(isTextReply).sort((a, b) => (b.priority ?? 0) - (a.priority ?? 0));
}

/** The reply egress should deliver: the first of textReplies. */
export function selectReply(envelope: Envelope) {
  return textReplies(envelope)[0];
}

/**
 * Replace the remaining (PENDING) part of the slip with new steps, keeping every finished step as
 * history (R10).
 */
export function replanSlip(envelope: Envelope, steps: RoutingStep[]): Envelope {
  const history = envelope.routingSlip.filter((step) => step.status !== 'PENDING');
  return { ...envelope, routingSlip: [...history, ...steps] };
}

/** Capped exponential backoff with full jitter (R4). `attempt` is 1-based. */
export function backoffDelayMs(attempt: number, options: { baseMs?: number; maxMs?: number; random?: () => number } = {}): number {
  const base = options.baseMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** The absolute deadline of a reply (R9), from `qos.maxResponseMs` and the envelope timestamp. */
export function replyDeadline(envelope: Envelope): number | undefined {
  const ms = envelope.qos?.maxResponseMs;
  return ms === undefined ? undefined : Date.parse(envelope.timestamp) + ms;
}
