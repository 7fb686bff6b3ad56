/**
 * A copy of a JSON value that equals `JSON.parse(JSON.stringify(value))`, made without the text in
 * between. The in-process bus hands every consumer the publisher's value; each one copies it before
 * changing anything, and this copy is several times cheaper than the string round trip (it reuses the
 * strings, which are immutable).
 *
 * Plain objects, arrays, strings, booleans, null and numbers are copied directly, with JSON's rules:
 * non-finite numbers become null, -0 becomes 0, undefined / function / symbol members are left out of
 * objects and become null in arrays. Anything else (a Date or another object with toJSON, a class
 * instance, a `__proto__` key, a BigInt) makes the whole value take the real round trip, so the result
 * is always exactly what JSON would give, errors included.
 */

const UNSUPPORTED: unique symbol = Symbol('unsupported');
const OBJECT_PROTOTYPE = Object.prototype;
/** Deeper than any envelope; past it (or on a cycle) the round trip decides, and throws like JSON does. */
const MAX_DEPTH = 64;

export function cloneJson<T>(value: T): T {
  const copy = prototypeHasEnumerableKeys() ? UNSUPPORTED : copyValue(value, 0);
  if (copy !== UNSUPPORTED && copy !== undefined) return copy as T;
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('the value has no JSON form');
  return JSON.parse(text) as T;
}

/** The copy; undefined for what JSON leaves out (undefined, functions, symbols). */
function copyValue(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? (value === 0 ? 0 : value) : null;
    case 'object':
      if (value === null) return null;
      if (depth >= MAX_DEPTH) return UNSUPPORTED;
      return Array.isArray(value) ? copyArray(value, depth + 1) : copyObject(value as Record<string, unknown>, depth + 1);
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      return UNSUPPORTED;
  }
}

function copyArray(value: unknown[], depth: number): unknown {
  if (Object.getPrototypeOf(value) !== Array.prototype) return UNSUPPORTED;
  const out: unknown[] = [];
  for (let index = 0; index < value.length; index += 1) {
    const item = copyValue(value[index], depth);
    if (item === UNSUPPORTED) return UNSUPPORTED;
    out.push(item === undefined ? null : item);
  }
  return out;
}

function copyObject(value: Record<string, unknown>, depth: number): unknown {
  const proto: unknown = Object.getPrototypeOf(value);
  if ((proto !== OBJECT_PROTOTYPE && proto !== null) || typeof value.toJSON === 'function') return UNSUPPORTED;
  const out: Record<string, unknown> = {};
  // for-in visits the own enumerable keys in JSON's order without allocating a key array (cloneJson has
  // checked that Object.prototype adds none).
  for (const key in value) {
    if (key === '__proto__') return UNSUPPORTED;
    const item = copyValue(value[key], depth);
    if (item === UNSUPPORTED) return UNSUPPORTED;
    if (item !== undefined) out[key] = item;
  }
  return out;
}

/** True when something made a key of Object.prototype enumerable: for-in would see it in every object. */
function prototypeHasEnumerableKeys(): boolean {
  for (const _ in OBJECT_PROTOTYPE) return true;
  return false;
}
