import { describe, expect, it } from 'vitest';
import { cloneJson } from '../../src/core/index.js';

const roundTrip = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;

class Point {
  constructor(
    public x: number,
    public y: number,
  ) {}
}

describe('cloneJson', () => {
  it('gives exactly what a JSON round trip gives, for plain data and for every JSON corner case', () => {
    const values: unknown[] = [
      'text',
      0,
      -0,
      12.5,
      true,
      null,
      [],
      {},
      { a: 1, b: 'two', c: [1, 'x', null, { d: false }], e: { f: { g: [] } } },
      { 2: 'numeric keys first', b: 1, 1: 'then the rest', a: 2 },
      { nan: NaN, inf: Infinity, minusInf: -Infinity, negativeZero: -0 },
      { dropped: undefined, fn: () => 1, sym: Symbol('s'), kept: 'yes' },
      [undefined, () => 1, Symbol('s'), NaN, 'kept'],
      { when: new Date('2026-11-25T12:00:00.000Z'), nested: [new Date(0)] },
      { point: new Point(1, 2) },
      { custom: { toJSON: () => ({ replaced: true }) } },
      JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}'),
      Object.assign(Object.create(null) as object, { bare: 'object' }),
    ];
    for (const value of values) {
      const copy = cloneJson(value);
      expect(copy).toStrictEqual(roundTrip(value));
      expect(JSON.stringify(copy)).toBe(JSON.stringify(value));
      if (typeof value === 'object' && value !== null) expect(copy).not.toBe(value);
    }
    // The parsed `__proto__` key stays a plain own property; nothing is polluted.
    expect(Object.keys(cloneJson(JSON.parse('{"__proto__": {"polluted": true}}')) as object)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('is a deep copy: changing it leaves the original alone', () => {
    const original = { slip: [{ id: 'a', status: 'PENDING' }], payload: { text: 'hi', tags: { mod: '0' } } };
    const copy = cloneJson(original);
    copy.slip[0]!.status = 'OK';
    copy.slip.push({ id: 'b', status: 'PENDING' });
    copy.payload.tags.mod = '1';
    expect(original).toEqual({ slip: [{ id: 'a', status: 'PENDING' }], payload: { text: 'hi', tags: { mod: '0' } } });
    expect(copy.slip).not.toBe(original.slip);
  });

  it('fails as JSON does on what has no JSON form', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(() => cloneJson(cyclic)).toThrow(TypeError);
    expect(() => cloneJson({ big: 10n })).toThrow(TypeError);
    expect(() => cloneJson(undefined)).toThrow(TypeError);
  });
});

describe('cloneJson with a polluted Object.prototype', () => {
  it('still matches JSON, which ignores inherited keys', () => {
    const value = { a: 1, nested: { b: [1, { c: 2 }] } };
    (Object.prototype as Record<string, unknown>).injected = 'x';
    try {
      const copy = cloneJson(value);
      expect(Object.keys(copy)).toEqual(['a', 'nested']);
      expect(JSON.stringify(copy)).toBe(JSON.stringify(value));
    } finally {
      delete (Object.prototype as Record<string, unknown>).injected;
    }
  });
});
