import { BitBratError, Topic, decodeRaw, validateEnvelope, type Envelope } from '../core/index.js';
import type { DeadLetterRecord, Store } from '../store/index.js';

export type PublishRaw = (topic: string, data: Uint8Array, msgId: string) => Promise<void>;

export interface ReplayResult {
  id: string;
  topic: string;
  envelopeId: string;
  record: DeadLetterRecord;
}

/**
 * Re-publishes a dead letter: a valid envelope goes back to the step that failed (that step reset to
 * PENDING) or to where it was headed; bytes that were not a valid envelope go to ingress once they
 * validate (the schema or the stored payload was fixed, or `options.raw` gives a corrected payload).
 * The entry is marked replayed, never deleted. Each replay has its own idempotency key.
 */
export async function replayDeadLetter(
  store: Store,
  publish: PublishRaw,
  id: string,
  options: { raw?: string } = {},
): Promise<ReplayResult> {
  const record = await store.getDeadLetter(id);
  if (!record) throw new BitBratError('NOT_FOUND', `no dead letter with id ${id}`);
  const letter = record.deadLetter;
  const { envelope, topic } = replayTarget(record, options.raw);
  const msgId = `${letter.id}:replay:${record.replayCount + 1}`;
  await publish(topic, new TextEncoder().encode(JSON.stringify(envelope)), msgId);
  const updated = await store.markDeadLetterReplayed(id, new Date().toISOString());
  return { id, topic, envelopeId: envelope.id, record: updated ?? record };
}

/** Where a dead letter would be replayed to, and with what envelope. Throws BAD_REQUEST if it cannot be. */
export function replayTarget(record: DeadLetterRecord, rawOverride?: string): { envelope: Envelope; topic: string } {
  const letter = record.deadLetter;
  const candidate = rawOverride ?? (letter.envelope ? undefined : new TextDecoder().decode(decodeRaw(letter)));
  if (candidate !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(candidate);
    } catch (error) {
      throw new BitBratError('BAD_REQUEST', `dead letter ${letter.id} is still not valid JSON: ${(error as Error).message}`);
    }
    const validation = validateEnvelope(parsed);
    if (!validation.ok)
      throw new BitBratError('BAD_REQUEST', `dead letter ${letter.id} is still not a valid envelope: ${validation.error}`);
    return { envelope: validation.envelope, topic: Topic.ingress };
  }
  const envelope = structuredClone(letter.envelope!) as Envelope;
  const stepIndex = letter.stepIndex;
  if (stepIndex !== undefined && stepIndex >= 0 && envelope.routingSlip[stepIndex]) {
    // Give the failed step a fresh start; the history before it stays.
    const step = envelope.routingSlip[stepIndex]!;
    envelope.routingSlip[stepIndex] = { ...step, status: 'PENDING', attempt: 0, error: null, startedAt: undefined, endedAt: undefined };
    delete envelope.outcome;
    return { envelope, topic: step.destination ?? letter.replayTopic ?? letter.topic };
  }
  return { envelope, topic: letter.replayTopic ?? letter.topic };
}
