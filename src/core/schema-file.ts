import { envelopeJsonSchema } from './envelope.js';
import { DeadLetterSchema } from './deadletter.js';
import { z } from 'zod';

/** The generated JSON Schema files, by file name under `schemas/`. */
export function generatedSchemaFiles(): Record<string, string> {
  const deadLetter = {
    $id: 'https://bitbrat.dev/schemas/deadletter.v1.json',
    title: 'BitBrat dead letter v1',
    ...(z.toJSONSchema(DeadLetterSchema, { target: 'draft-2020-12', unrepresentable: 'any' }) as object),
  };
  return {
    'envelope.v1.json': JSON.stringify(envelopeJsonSchema(), null, 2) + '\n',
    'deadletter.v1.json': JSON.stringify(deadLetter, null, 2) + '\n',
  };
}
