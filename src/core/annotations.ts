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
