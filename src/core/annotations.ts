import { newId } from './builders.js';
import type { Annotation, Envelope } from './envelope.js';

/** What a service says in an annotation; the id, its own name and the time are filled in. */
export type AnnotationFields = Pick<Annotation, 'kind' | 'label' | 'value' | 'score' | 'payload'>;

/** A new annotation written by `source` (a service name), stamped now unless `at` is given. */
export function createAnnotation(source: string, fields: AnnotationFields, at: string = new Date().toISOString()): Annotation {
  return { id: newId(), source, createdAt: at, ...fields };
}

/** A copy of the envelope with the annotations appended (the original's list is left as it was). */
export function withAnnotations(envelope: Envelope, ...annotations: Annotation[]): Envelope {
  return { ...envelope, annotations: [...(envelope.annotations ?? []), ...annotations] };
}

/**
 * The chat text of an envelope: the normalized `message.text`, else a string `payload.text` (events
 * published before normalization, or by the API), else undefined.
 */
export function messageText(envelope: Envelope): string | undefined {
  return envelope.message?.text ?? (typeof envelope.payload.text === 'string' ? envelope.payload.text : undefined);
}

/** The annotation kind a step writes when it ends the slip without a reply, saying why (`noReplyNote`). */
export const NO_REPLY_KIND = 'noreply';

/**
 * A note that this step leaves the message without a reply, and why, in words for the sender: `code` is
 * stable (`cooldown`, `unknown-command`, `refused`, …), `reason` is shown (`!so is on cooldown (30 s per user)`).
 */
export function noReplyNote(source: string, code: string, reason: string): Annotation {
  return createAnnotation(source, { kind: NO_REPLY_KIND, label: code, value: reason });
}

/**
 * Why an envelope ended without a reply, for whoever waits on it: the last step's own note (`noReplyNote`),
 * else what the annotations of the usual endings show (spam, no LLM, rate limits, budget), else the outcome.
 */
export function noReplyReason(envelope: Envelope): { code: string; reason: string } {
  const annotations = envelope.annotations ?? [];
  const own = annotations.filter((annotation) => annotation.kind === NO_REPLY_KIND).at(-1);
  if (own) return { code: own.label ?? 'noreply', reason: typeof own.value === 'string' ? own.value : String(own.label) };
  const labelled = (label: string, kind?: string) =>
    annotations.some((annotation) => annotation.label === label && (kind === undefined || annotation.kind === kind));
  if (labelled('spam', 'spam')) return { code: 'spam', reason: 'spam' };
  if (labelled('not-configured', 'llm-bot')) return { code: 'no-llm', reason: 'no LLM configured' };
  if (labelled('rate-limited', 'llm-bot')) return { code: 'rate-limited', reason: 'rate limited: too many questions this minute' };
  if (labelled('user-capped', 'llm-bot')) return { code: 'user-capped', reason: 'your share of LLM answers for today is used up' };
  if (labelled('budget-exhausted', 'llm-bot')) return { code: 'budget-exhausted', reason: "the LLM's budget for today is spent" };
  if (envelope.outcome === 'unrouted') return { code: 'unrouted', reason: 'no rule routes this message' };
  if (envelope.outcome === 'failed') {
    const error = envelope.errors?.at(-1);
    return { code: error?.code ?? 'failed', reason: error ? `failed: ${error.message}` : 'failed' };
  }
  return { code: 'noreply', reason: 'no step replied' };
}
