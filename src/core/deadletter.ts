import { z } from 'zod';
import { EnvelopeSchema } from './envelope.js';

/**
 * What goes on `internal.deadletter.v1`: the reason, where it happened, and the raw payload so that
 * nothing is lost even when the original bytes were not an envelope.
 */
export const DeadLetterSchema = z.object({
  kind: z.literal('bitbrat.deadletter.v1'),
  id: z.string().min(1),
  at: z.string(),
  reason: z.object({
    code: z.string().min(1),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
  /** Topic (without prefix) the message was consumed from. */
  topic: z.string(),
  service: z.string(),
  /** The step that failed, for replay. */
  stepIndex: z.number().int().optional(),
  /** Where replay should publish: the failed step's destination, or ingress. */
  replayTopic: z.string().optional(),
  /** The original message body as text (UTF-8), or base64 when it was not valid UTF-8. */
  raw: z.string(),
  rawEncoding: z.enum(['utf8', 'base64']),
  /** The envelope when the body was a valid one. */
  envelope: EnvelopeSchema.optional(),
  envelopeId: z.string().optional(),
  correlationId: z.string().optional(),
});
export type DeadLetter = z.infer<typeof DeadLetterSchema>;

/** Encode raw bytes for a dead letter, keeping them readable when they are text. */
export function encodeRaw(data: Uint8Array): { raw: string; rawEncoding: 'utf8' | 'base64' } {
  try {
    return { raw: new TextDecoder('utf-8', { fatal: true }).decode(data), rawEncoding: 'utf8' };
  } catch {
    return { raw: Buffer.from(data).toString('base64'), rawEncoding: 'base64' };
  }
}

export function decodeRaw(letter: Pick<DeadLetter, 'raw' | 'rawEncoding'>): Uint8Array {
  return letter.rawEncoding === 'utf8' ? new TextEncoder().encode(letter.raw) : Buffer.from(letter.raw, 'base64');
}
