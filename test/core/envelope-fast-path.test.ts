import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  createEnvelope,
  createReply,
  createStep,
  DEFER,
  deriveFastCheck,
  EnvelopeSchema,
  envelopeRefinements,
  fastValidateEnvelope,
  validateEnvelope,
} from '../../src/core/index.js';
import { sameShape } from '../support/same-shape.js';

/**
 * validateEnvelope's fast path, derived from EnvelopeSchema, must accept exactly what zod accepts (it
 * may hand anything to zod, but never accept what zod rejects) and build the same output. Fixtures and
 * mutated envelopes, seeded.
 */
const root = path.resolve(import.meta.dirname, '..', '..');
const fixture = (name: string) => JSON.parse(readFileSync(path.join(root, 'test', 'fixtures', name), 'utf8'));

let seed = 12345;
const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
const pick = <T>(values: T[]): T => values[Math.floor(random() * values.length)]!;
const now = () => new Date().toISOString();

function everyField(): Record<string, unknown> {
  const envelope = createEnvelope({
    type: 'x',
    source: { platform: 'p', channel: 'c', channelId: '1', egressDestination: 'internal.egress.v1' },
    routingSlip: [
      createStep('a', { status: 'OK', startedAt: now(), endedAt: now(), attributes: { k: 'v' }, error: null, notes: 'n', timeoutMs: 5 }),
      createStep('b', { error: { code: 'E', message: 'm', retryable: true } }),
    ],
    extra: {
      channel: 'ch',
      userId: 'u',
      message: { id: 'm', text: 't', command: 'c', args: ['a'], replyToMessageId: 'r' },
      externalEvent: { id: 'm1', source: 's', kind: 'k', version: '2', createdAt: now(), payload: { a: { b: 1 } }, rawPayload: { z: 1 } },
      annotations: [{ id: 'a', kind: 'intent', source: 'qa', createdAt: now(), label: 'q', value: 1.5, score: 0.3, payload: { x: [1] } }],
      candidates: [createReply('x', 'hi', { m: 1 }), { id: 'c', kind: 'text', source: 'x', createdAt: now(), text: 'hi', priority: 2 }],
      errors: [{ code: 'X', message: 'y', at: now(), step: 's', stepIndex: 1, service: 'sv', retryable: false, details: { d: 1 } }],
      qos: { maxResponseMs: 5000, priority: -1 },
      outcome: 'completed',
      delivery: { delivered: true, at: now(), destination: 'd', reason: 'r', platformMessageIds: ['1'] },
    },
  }) as unknown as Record<string, unknown>;
  envelope.unknownTop = { deep: { x: 1 } };
  (envelope.user as Record<string, unknown>).extra = [1, 2];
  return envelope;
}

const oddValues = (): unknown =>
  pick<unknown>([
    undefined,
    null,
    '',
    'x',
    0,
    -1,
    1,
    1.5,
    -0,
    NaN,
    Infinity,
    2 ** 53,
    true,
    false,
    [],
    ['a'],
    [undefined, 1],
    {},
    { a: 1 },
    new Date(),
    Object.create(null),
    () => 1,
    Symbol('s'),
    'PENDING',
    'DONE',
    '1',
    '2',
    'completed',
    '2026-02-30T10:00:00.000Z',
    '2026-13-01T00:00:00.000Z',
    '2026-01-01T24:00:00.000Z',
    '2026-01-01',
    'not a date',
    '2026-11-25T14:08:15.123Z',
  ]);

function paths(value: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []) {
  if (prefix.length > 0) out.push(prefix);
  if (value && typeof value === 'object')
    for (const key of Object.keys(value))
      paths((value as Record<string, unknown>)[key], [...prefix, Array.isArray(value) ? Number(key) : key], out);
  return out;
}

function mutate(base: Record<string, unknown>): unknown {
  const copy = structuredClone(base);
  for (let n = 1 + Math.floor(random() * 3); n > 0; n -= 1) {
    const where = pick(paths(copy));
    let parent = copy as Record<string | number, unknown>;
    for (const key of where.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
    const last = where[where.length - 1]!;
    const roll = random();
    if (roll < 0.25) {
      if (Array.isArray(parent)) parent.splice(last as number, 1);
      else delete parent[last];
    } else if (roll < 0.85) parent[last] = oddValues();
    else if (parent && typeof parent === 'object' && !Array.isArray(parent)) {
      if (roll < 0.9)
        Object.defineProperty(parent, '__proto__', { value: oddValues(), enumerable: true, writable: true, configurable: true });
      else if (roll < 0.95) parent[`new${n}`] = oddValues();
      else (parent as Record<symbol, unknown>)[Symbol('k')] = 1;
    }
  }
  return copy;
}

const fixtureNames = readdirSync(path.join(root, 'test', 'fixtures')).filter((name) => name.endsWith('.json'));

describe('the envelope fast path', () => {
  it('agrees with zod on every fixture in test/fixtures', () => {
    expect(fixtureNames.length).toBeGreaterThan(0);
    for (const name of fixtureNames) {
      const input = fixture(name);
      const zod = EnvelopeSchema.safeParse(input);
      const fast = fastValidateEnvelope(input);
      expect(zod.success, name).toBe(true);
      expect(fast, name).toBeDefined();
      expect(sameShape(fast, zod.data), name).toBeUndefined();
    }
  });

  it('enforces a constraint added to the envelope schema without any other change', () => {
    const input = fixture('seed-003-irc-envelope.json');
    expect(deriveFastCheck(EnvelopeSchema, { refinements: envelopeRefinements })(input)).not.toBe(DEFER);
    const tighter = EnvelopeSchema.extend({
      type: z.string().max(8),
      user: EnvelopeSchema.shape.user.extend({ role: z.enum(['viewer']) }),
    });
    expect(deriveFastCheck(tighter, { refinements: envelopeRefinements })(input)).toBe(DEFER);
    expect(tighter.safeParse(input).success).toBe(false);
  });

  it('takes the common envelopes itself', () => {
    for (const input of [fixture('seed-000-example-envelope.json'), fixture('seed-003-irc-envelope.json'), everyField()]) {
      expect(fastValidateEnvelope(input)).toBeDefined();
    }
  });

  it('accepts only what zod accepts, and builds the same envelope', () => {
    const bases = [fixture('seed-000-example-envelope.json'), fixture('seed-003-irc-envelope.json'), everyField()];
    let fastAccepted = 0;
    for (let i = 0; i < 20_000; i += 1) {
      const input = mutate(pick(bases));
      const zod = EnvelopeSchema.safeParse(input);
      const fast = fastValidateEnvelope(input);
      if (fast === undefined) {
        // A refusal's message is zod's, as the engine puts it into the dead letter.
        const validation = validateEnvelope(input);
        expect(validation.ok).toBe(zod.success);
        if (!validation.ok && !zod.success) expect(validation.issues).toEqual(zod.error.issues);
        continue;
      }
      fastAccepted += 1;
      expect(zod.success, JSON.stringify(input)).toBe(true);
      expect(sameShape(fast, zod.data)).toBeUndefined();
    }
    expect(fastAccepted).toBeGreaterThan(1_000);
  });

  it('leaves the verdict and the message to zod for invalid envelopes', () => {
    const broken = fixture('seed-000-example-envelope.json');
    broken.routingSlip[0].startedAt = '2026-02-30T25:00:00.000Z';
    const result = validateEnvelope(broken);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain('routingSlip.0.startedAt');
  });
});
