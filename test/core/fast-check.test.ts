import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DEFER, deriveFastCheck, type DeriveOptions } from '../../src/core/index.js';
import { sameShape } from '../support/same-shape.js';

/**
 * The check derived from a zod schema must accept exactly what zod accepts, build the same value, and
 * leave everything else (every refusal included) to zod. Each construct the walker supports gets a
 * small schema here, and a constraint added to a schema must show up in the check derived from it.
 */

/** Both modes: straight-line code and the closure fallback used where eval is unavailable. */
const modes: Array<[string, DeriveOptions]> = [
  ['generated code', {}],
  ['closures', { codegen: false }],
];

describe.each(modes)('a check derived from a zod schema (%s)', (_, mode) => {
  const derive = (schema: z.ZodType, options: DeriveOptions = {}) => deriveFastCheck(schema, { ...mode, ...options });

  /** The fast path takes `input` itself and builds exactly zod's output. */
  function takes(schema: z.ZodType, input: unknown, options?: DeriveOptions) {
    const fast = derive(schema, options)(input);
    const zod = schema.safeParse(input);
    expect(zod.success, `zod accepts ${String(input)}`).toBe(true);
    expect(fast, `fast path takes ${JSON.stringify(input)}`).not.toBe(DEFER);
    expect(sameShape(fast, zod.data)).toBeUndefined();
  }

  /** zod refuses `input`, and the fast path leaves it to zod. */
  function refuses(schema: z.ZodType, input: unknown, options?: DeriveOptions) {
    expect(schema.safeParse(input).success, `zod refuses ${String(input)}`).toBe(false);
    expect(derive(schema, options)(input)).toBe(DEFER);
  }

  it('enforces string length limits, counted in code points as zod counts them', () => {
    takes(z.string(), 'ab');
    refuses(z.string(), 1);
    takes(z.string().min(2), 'ab');
    refuses(z.string().min(3), 'ab');
    takes(z.string().min(2), '😀x');
    refuses(z.string().min(3), '😀x');
    takes(z.string().max(1), '😀');
    refuses(z.string().max(1), 'ab');
    takes(z.string().length(2), '😀😀');
    refuses(z.string().length(2), 'abc');
    refuses(z.string().min(1), '');
  });

  it('enforces a regex, literals and enums', () => {
    takes(z.string().regex(/^[a-z]+$/), 'abc');
    refuses(z.string().regex(/^[a-z]+$/), 'ab1');
    const global = z.string().regex(/a/g);
    takes(global, 'a');
    takes(global, 'a'); // a global regex keeps lastIndex between calls unless reset
    takes(z.literal('1'), '1');
    refuses(z.literal('1'), 1);
    takes(z.literal(['a', 2]), 2);
    takes(z.enum(['on', 'off']), 'off');
    refuses(z.enum(['on', 'off']), 'dim');
  });

  it('enforces numbers: finite, integer, bounds', () => {
    takes(z.number(), 1.5);
    refuses(z.number(), Number.NaN);
    refuses(z.number(), Number.POSITIVE_INFINITY);
    refuses(z.number(), '1');
    takes(z.number().int(), 3);
    refuses(z.number().int(), 1.5);
    refuses(z.number().int(), 2 ** 53);
    takes(z.int32(), -5);
    refuses(z.int32(), 2 ** 31);
    refuses(z.uint32(), -1);
    takes(z.number().min(0), 0);
    refuses(z.number().min(0), -0.5);
    refuses(z.number().positive(), 0);
    takes(z.number().max(10), 10);
    refuses(z.number().lt(10), 10);
    refuses(z.number().gt(1).lt(3), 3);
  });

  it('enforces booleans, null and unknown', () => {
    takes(z.boolean(), false);
    refuses(z.boolean(), 'false');
    takes(z.null(), null);
    refuses(z.null(), undefined);
    takes(z.unknown(), { any: ['thing'] });
  });

  it('enforces array element types and length limits, and copies the array', () => {
    const input = ['a', 'b'];
    takes(z.array(z.string()), input);
    expect(derive(z.array(z.string()))(input)).not.toBe(input);
    refuses(z.array(z.string()), ['a', 1]);
    refuses(z.array(z.string()).min(3), input);
    refuses(z.array(z.string()).max(1), input);
    refuses(z.array(z.string()).length(3), input);
    takes(z.array(z.number().int()).length(2), [1, 2]);
    refuses(z.array(z.string()), 'ab');
    refuses(z.array(z.object({ a: z.string() })), [{ a: 1 }]);
  });

  it('handles optional, nullable and default as zod does, in and out of objects', () => {
    takes(z.string().optional(), undefined);
    refuses(z.string().optional(), null);
    takes(z.string().nullable(), null);
    refuses(z.string().nullable(), undefined);
    takes(z.string().default('d'), undefined);
    expect(derive(z.string().default('d'))(undefined)).toBe('d');
    const shape = z.object({ a: z.string().optional(), b: z.number().default(7), c: z.string().nullable().optional() });
    takes(shape, {});
    takes(shape, { a: undefined });
    takes(shape, { a: 'x', b: 1, c: null });
    expect(derive(shape)({})).toEqual({ b: 7 });
    refuses(shape, { a: 1 });
    refuses(shape, { c: 1 });
    const layered = z.object({ d: z.string().default('x').optional(), e: z.string().exactOptional() });
    takes(layered, {});
    expect(derive(layered)({})).toEqual({ d: 'x' });
    takes(layered, { d: 'y', e: 'z' });
    refuses(layered, { e: undefined });
    // A key whose schema accepts undefined is still required unless the schema is optional.
    takes(z.object({ a: z.unknown() }), { a: undefined });
    refuses(z.object({ a: z.unknown() }), {});
    // A default object is copied afresh each time, as zod's getter does.
    const listDefault = z.object({ tags: z.array(z.string()).default([]) });
    const first = derive(listDefault)({}) as { tags: string[] };
    first.tags.push('x');
    takes(listDefault, {});
  });

  it('strips unknown keys from objects, keeps them on loose objects and refuses them on strict ones', () => {
    const fields = { id: z.string().min(1), n: z.number().optional() };
    const input = { n: 1, extra: { deep: true }, id: 'x' };
    takes(z.object(fields), input);
    expect(Object.keys(derive(z.object(fields))(input) as object)).toEqual(['id', 'n']);
    takes(z.looseObject(fields), input);
    expect(Object.keys(derive(z.looseObject(fields))(input) as object)).toEqual(['id', 'n', 'extra']);
    refuses(z.strictObject(fields), input);
    takes(z.strictObject(fields), { id: 'x' });
    refuses(z.object(fields), { n: 1 });
    refuses(z.object(fields), { id: '' });
    refuses(z.object(fields), ['x']);
    refuses(z.object(fields), null);
    takes(z.object({}).catchall(z.number()), { a: 1, b: 2 });
    refuses(z.object({}).catchall(z.number()), { a: 'x' });
  });

  it('never copies an own __proto__ key into the output', () => {
    const input = JSON.parse('{"id":"x","__proto__":{"polluted":true}}') as unknown;
    takes(z.looseObject({ id: z.string() }), input);
    takes(z.record(z.string(), z.unknown()), input);
    refuses(z.strictObject({ id: z.string() }), input);
  });

  it('takes the first union option that parses, and leaves ambiguous object options to zod', () => {
    const scalar = z.union([z.string(), z.number(), z.boolean()]);
    takes(scalar, 'x');
    takes(scalar, 2);
    refuses(scalar, null);
    const shapes = z.union([z.object({ a: z.string() }), z.object({ b: z.number() })]);
    takes(shapes, { a: 'x', b: 1 });
    expect(derive(shapes)({ a: 'x', b: 1 })).toEqual({ a: 'x' });
    // The first option may parse in zod even when the fast path cannot tell (no plain object here),
    // so the fast path must not jump to the second.
    const first = Object.assign(Object.create(null) as object, { a: 'x' });
    expect(derive(z.union([z.object({ a: z.string() }), z.unknown()]))(first)).toBe(DEFER);
    refuses(shapes, { c: 1 });
  });

  it('looks up discriminated union options by their tag', () => {
    const event = z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('follow'), user: z.string() }),
      z.object({ kind: z.literal(['raid', 'host']), viewers: z.number().int().min(0) }),
    ]);
    takes(event, { kind: 'follow', user: 'u' });
    takes(event, { kind: 'host', viewers: 3 });
    refuses(event, { kind: 'raid', viewers: -1 });
    refuses(event, { kind: 'sub', user: 'u' });
    refuses(event, 'follow');
  });

  it('checks record keys and values and copies the record', () => {
    takes(z.record(z.string(), z.number()), { a: 1, b: 2 });
    refuses(z.record(z.string(), z.number()), { a: 'x' });
    takes(z.record(z.string().min(2), z.unknown()), { ab: null });
    refuses(z.record(z.string().min(2), z.unknown()), { a: null });
    refuses(z.record(z.string(), z.unknown()), { [Symbol('k')]: 1 });
    refuses(z.record(z.string(), z.unknown()), [1]);
  });

  it('follows a recursive schema', () => {
    const node = z.object({
      name: z.string().min(1),
      get children() {
        return z.array(node).optional();
      },
    });
    takes(node, { name: 'a', children: [{ name: 'b', children: [{ name: 'c' }] }] });
    refuses(node, { name: 'a', children: [{ name: 'b', children: [{ name: '' }] }] });
  });

  it('compiles a registered refinement and enforces it', () => {
    const isEven = (value: number) => value % 2 === 0;
    const even = z.number().int().refine(isEven, 'must be even');
    const refinements = new Map([[isEven, (value: number) => (value & 1) === 0]]);
    takes(even, 4, { refinements });
    refuses(even, 3, { refinements });
    refuses(z.object({ n: even }), { n: 5 }, { refinements });
  });

  it('leaves an unregistered refinement, and anything else it does not know, to zod', () => {
    const isEven = (value: number) => value % 2 === 0;
    expect(derive(z.number().refine(isEven))(4)).toBe(DEFER);
    expect(derive(z.number().superRefine(() => undefined))(4)).toBe(DEFER);
    expect(derive(z.string().transform((value) => value.length))('ab')).toBe(DEFER);
    expect(derive(z.email())('a@b.co')).toBe(DEFER);
    expect(derive(z.string().trim())('a')).toBe(DEFER);
    expect(derive(z.coerce.number())(1)).toBe(DEFER);
    expect(derive(z.number().multipleOf(2))(4)).toBe(DEFER);
    expect(derive(z.date())(new Date())).toBe(DEFER);
    // …and only that part: the rest of an object around it is still checked before deferring.
    expect(derive(z.object({ at: z.date(), n: z.number() }))({ n: 1 })).toBe(DEFER);
  });

  it('agrees with zod on thousands of random values for a schema with every construct', () => {
    const isShort = (value: string) => value.length < 4;
    const schema = z.looseObject({
      id: z.string().min(1).max(3),
      tag: z.string().regex(/^t\d$/).optional(),
      kind: z.enum(['a', 'b']),
      v: z.literal('1'),
      n: z.number().int().min(0).max(9).optional(),
      ratio: z.number().positive().nullable().optional(),
      on: z.boolean().default(false),
      list: z.array(z.string().refine(isShort)).min(1).max(2).optional(),
      map: z.record(z.string(), z.number()).optional(),
      either: z.union([z.string(), z.number()]).optional(),
      pick: z.discriminatedUnion('k', [z.object({ k: z.literal('x'), x: z.string() }), z.strictObject({ k: z.literal('y') })]).optional(),
    });
    const refinements = new Map([[isShort, isShort]]);
    const check = derive(schema, { refinements });
    let seed = 99;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const pick = <T>(values: T[]): T => values[Math.floor(random() * values.length)]!;
    const leaf = () =>
      pick<unknown>([
        undefined,
        null,
        '',
        'a',
        'abcd',
        't1',
        'tx',
        '😀😀',
        0,
        1,
        -1,
        1.5,
        10,
        NaN,
        true,
        false,
        [],
        ['ab'],
        ['ab', 'c', 'd'],
        ['abcde'],
        {},
        { a: 1 },
        { a: 'x' },
        'x',
        'y',
      ]);
    const value = (key: string): unknown => {
      const roll = random();
      if (roll < 0.08) return leaf();
      if (key === 'pick') return pick([{ k: 'x', x: 'v' }, { k: 'y' }, { k: 'y', extra: 1 }, { k: 'z' }, { k: 'x', x: 1 }]);
      if (key === 'map') return pick([{ a: 1 }, { a: '1' }, {}]);
      return pick<unknown>(
        {
          id: ['a', 'abc'],
          tag: ['t1'],
          kind: ['a', 'b'],
          v: ['1'],
          n: [0, 9],
          ratio: [0.5, null],
          on: [true],
          list: [['a'], ['a', 'b']],
          either: ['s', 2],
        }[key] ?? [leaf()],
      );
    };
    const keys = ['id', 'tag', 'kind', 'v', 'n', 'ratio', 'on', 'list', 'map', 'either', 'pick', 'other'];
    let taken = 0;
    let accepted = 0;
    for (let i = 0; i < 5_000; i += 1) {
      const input: Record<string, unknown> = {};
      for (const key of keys) if (random() < 0.9) input[key] = value(key);
      const fast = check(input);
      const zod = schema.safeParse(input);
      if (zod.success) accepted += 1;
      if (fast === DEFER) continue;
      taken += 1;
      expect(zod.success, JSON.stringify(input)).toBe(true);
      expect(sameShape(fast, zod.data), JSON.stringify(input)).toBeUndefined();
    }
    // Not a check that defers everything: it takes most of what zod accepts itself.
    expect(accepted).toBeGreaterThan(200);
    expect(taken).toBeGreaterThan(accepted * 0.9);
  });
});
