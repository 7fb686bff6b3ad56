import { createHash } from 'node:crypto';
import { DeadLetterSchema, encodeRaw, type DeadLetter } from '../../core/index.js';

/** A dead letter as published by the runtime, or one made up for bytes someone else put on the DLQ. */
export function toDeadLetter(data: Uint8Array, topic: string): DeadLetter {
  try {
    const parsed = DeadLetterSchema.safeParse(JSON.parse(new TextDecoder().decode(data)));
    if (parsed.success) return parsed.data;
  } catch {
    // fall through: not JSON
  }
  const encoded = encodeRaw(data);
  return {
    kind: 'bitbrat.deadletter.v1',
    id: 'dl-' + createHash('sha256').update(encoded.raw).digest('hex').slice(0, 32),
    at: new Date().toISOString(),
    reason: { code: 'DECODE_FAILED', message: `a message on ${topic} was not a dead-letter record` },
    topic,
    service: 'unknown',
    ...encoded,
  };
}
