import { z } from 'zod';

/**
 * A fast validator derived from a zod 4 schema at load time, so the schema stays the only source of
 * truth. The derived check walks the schema once and compiles each node into a closure (objects into
 * straight-line code); at run time it either returns exactly the value zod's `parse` would return, or
 * {@link DEFER} when it cannot decide, and then the caller asks zod for the verdict and the message.
 *
 * Soundness rule: it never returns a value for input zod refuses. Every construct it does not know
 * (transforms, pipes, string formats, async or unregistered refinements, coercion, …) compiles to a
 * node that always defers, so a schema change can make the fast path slower, never wrong.
 */

/** Returned by a derived check when it leaves the verdict to zod (every refusal, and whatever it cannot decide). */
export const DEFER: unique symbol = Symbol('defer to zod');

/** A derived check: the value zod would produce, or DEFER. */
export type FastCheck<T = unknown> = (input: unknown) => T | typeof DEFER;

/**
 * A fast equivalent of a `.refine(fn)` predicate, keyed by `fn` itself. It receives what `fn` would
 * receive and must return true only when `fn` would return a truthy value (returning false just
 * defers to zod, which runs `fn`).
 */
export type FastRefinement = (value: never) => boolean;

/** Options for {@link deriveFastCheck}. */
export interface DeriveOptions {
  /** Refinement predicates the walker may compile, keyed by the function passed to `.refine`. Default: none. */
  refinements?: ReadonlyMap<(value: never) => unknown, FastRefinement>;
  /** Generate straight-line code for objects with `new Function` (Node only; falls back to closures when eval is unavailable). Default true. */
  codegen?: boolean;
}

/** Derives the fast check for `schema` (see the module comment for its contract). */
export function deriveFastCheck<T>(schema: z.ZodType<T>, options: DeriveOptions = {}): FastCheck<T> {
  const walker = createWalker(options);
  return walker.compile(schema as unknown as ZodNode).check as FastCheck<T>;
}

// ---------------------------------------------------------------------------------------------------
// zod 4 internals the walker reads: `_zod.def` (type, checks, shape, …), `_zod.traits`, `_zod.optin`,
// `_zod.optout`, `_zod.values` and `_zod.propValues`. zod is pinned by the lockfile; the derived-check
// tests build each construct and compare against zod, so a change in these internals fails them.

interface ZodNode {
  _zod: {
    def: Record<string, unknown> & { type: string; checks?: ZodCheckNode[] };
    traits: Set<string>;
    optin?: 'optional' | 'defaulted';
    optout?: 'optional';
    values?: Set<unknown>;
    propValues?: Record<string, Set<unknown>>;
  };
}

interface ZodCheckNode {
  _zod: { def: Record<string, unknown> & { check: string; when?: unknown }; traits: Set<string> };
}

type Check = (value: unknown) => unknown;

/** Registers a value the generated code needs and returns the expression that reads it. */
type Ref = (value: unknown) => string;

/** A compiled node: its check, and whether DEFER from it means zod refuses for certain. */
interface Compiled {
  check: Check;
  /** True when the node defers only on input zod refuses (needed to try union options in order). */
  decisive: boolean;
  /**
   * For nodes whose output is their input (primitives): the test as a JavaScript expression over the
   * variable `v`, so an object's generated code tests a property without a call.
   */
  inline?: (v: string, ref: Ref) => string;
  /** For a plain `.optional()`: the inner node, which an object calls directly for a defined value. */
  optionalOf?: Compiled;
}

/** One schema check: the predicate, and the same test as an expression when it is simple enough. */
interface CompiledTest {
  fn: (value: never) => boolean;
  code?: (v: string) => string;
}

const BAD = DEFER;
const OBJECT_PROTOTYPE = Object.prototype;
const deferAlways: Compiled = { check: () => BAD, decisive: false };

/** Plain objects only (what JSON.parse makes); anything else is left to zod. */
function isPlain(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.getPrototypeOf(value) === OBJECT_PROTOTYPE &&
    (value as { constructor?: unknown }).constructor === Object
  );
}

/**
 * The `when` zod gives length checks by default (run them on anything that has a length): always true
 * for the strings and arrays these checks sit on, so it does not make a check undecidable.
 */
const lengthWhen = new Set<unknown>(
  [z.string().min(1), z.string().max(1), z.string().length(1)].map(
    (schema) => (schema._zod.def.checks![0] as unknown as ZodCheckNode)._zod.def.when,
  ),
);

/** Code points, counted as zod's length checks count them (a surrogate pair is one, a lone surrogate one). */
function codePoints(text: string): number {
  let count = text.length;
  for (let i = 0; i < text.length - 1; i += 1) {
    if ((text.charCodeAt(i) & 0xfc00) === 0xd800 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      count -= 1;
      i += 1;
    }
  }
  return count;
}

const INT_RANGES: Record<string, readonly [number, number]> = {
  safeint: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
};

function createWalker(options: DeriveOptions) {
  const refinements = options.refinements ?? new Map();
  const codegen = options.codegen ?? true;
  const seen = new Map<ZodNode, Compiled>();

  /**
   * The schema's checks (`.min`, `.regex`, `.refine`, …) as one predicate on the parsed value, or
   * undefined when one of them is outside what the walker knows (then the node defers).
   */
  function compileChecks(schema: ZodNode, kind: 'string' | 'number' | 'array' | 'other'): CompiledTest[] | undefined {
    const own = schema._zod.traits.has('$ZodCheck') ? [schema as unknown as ZodCheckNode] : [];
    const checks = [...own, ...(schema._zod.def.checks ?? [])];
    const tests: CompiledTest[] = [];
    for (const check of checks) {
      const def = check._zod.def;
      if (def.when !== undefined && !lengthWhen.has(def.when)) return undefined;
      const length = kind === 'string' ? codePoints : kind === 'array' ? (value: unknown[]) => value.length : undefined;
      switch (def.check) {
        case 'min_length': {
          if (!length) return undefined;
          const minimum = def.minimum as number;
          // A code point is one or two UTF-16 units, so only lengths in [min, 2·min) need counting
          // (none for min ≤ 1: a non-empty string has at least one code point).
          if (kind === 'array' || minimum <= 1)
            tests.push({ fn: (value: unknown[]) => value.length >= minimum, code: (v) => `${v}.length >= ${minimum}` });
          else
            tests.push({ fn: (value: string) => value.length >= minimum * 2 || (value.length >= minimum && codePoints(value) >= minimum) });
          break;
        }
        case 'max_length': {
          if (!length) return undefined;
          const maximum = def.maximum as number;
          tests.push({
            fn:
              kind === 'string'
                ? (value: string) => value.length <= maximum || codePoints(value) <= maximum
                : (value: unknown[]) => value.length <= maximum,
          });
          break;
        }
        case 'length_equals': {
          if (!length) return undefined;
          const exact = def.length as number;
          tests.push({ fn: (value: never) => (length as (value: never) => number)(value) === exact });
          break;
        }
        case 'string_format': {
          if (kind !== 'string' || def.format !== 'regex' || !check._zod.traits.has('$ZodCheckRegex')) return undefined;
          const pattern = def.pattern as RegExp;
          tests.push({
            fn: (value: string) => {
              pattern.lastIndex = 0;
              return pattern.test(value);
            },
          });
          break;
        }
        case 'greater_than':
        case 'less_than': {
          if (kind !== 'number' || typeof def.value !== 'number') return undefined;
          const bound = def.value;
          const inclusive = def.inclusive === true;
          const operator = def.check === 'greater_than' ? (inclusive ? '>=' : '>') : inclusive ? '<=' : '<';
          const fn = new Map<string, (value: number) => boolean>([
            ['>=', (value) => value >= bound],
            ['>', (value) => value > bound],
            ['<=', (value) => value <= bound],
            ['<', (value) => value < bound],
          ]).get(operator)!;
          tests.push({ fn, code: Number.isFinite(bound) ? (v) => `${v} ${operator} ${String(bound)}` : undefined });
          break;
        }
        case 'number_format': {
          const range = INT_RANGES[def.format as string];
          if (kind !== 'number' || !range) return undefined;
          const [low, high] = range;
          tests.push({
            fn: (value: number) => Number.isInteger(value) && value >= low && value <= high,
            code: (v) => `Number.isInteger(${v}) && ${v} >= ${low} && ${v} <= ${high}`,
          });
          break;
        }
        case 'custom': {
          const fast = refinements.get(def.fn as (value: never) => unknown);
          if (!fast) return undefined;
          tests.push({ fn: fast });
          break;
        }
        default:
          return undefined;
      }
    }
    return tests;
  }

  /** All of a node's tests as one predicate (null when it has none). */
  function allOf(tests: CompiledTest[]): ((value: never) => boolean) | null {
    if (tests.length === 0) return null;
    if (tests.length === 1) return tests[0]!.fn;
    const fns = tests.map((test) => test.fn);
    return (value: never) => fns.every((fn) => fn(value));
  }

  function compile(schema: ZodNode): Compiled {
    const cached = seen.get(schema);
    if (cached) return cached;
    // A recursive schema (an object whose shape getter returns itself) meets itself while compiling:
    // that inner reference forwards to the finished check.
    let finished: Check = () => BAD;
    seen.set(schema, { check: (value) => finished(value), decisive: false });
    let compiled = compileNode(schema);
    // A primitive's check as one generated function rather than a closure calling closures.
    const generated = codegen && compiled.inline ? compileElementTest(compiled) : undefined;
    if (generated) compiled = { ...compiled, check: generated };
    finished = compiled.check;
    seen.set(schema, compiled);
    return compiled;
  }

  function compileNode(schema: ZodNode): Compiled {
    const def = schema._zod.def;
    if (def.coerce) return deferAlways;
    switch (def.type) {
      case 'string':
        return primitive(
          schema,
          'string',
          (value) => typeof value === 'string',
          (v) => `typeof ${v} === "string"`,
        );
      case 'number':
        return primitive(
          schema,
          'number',
          (value) => typeof value === 'number' && Number.isFinite(value),
          (v) => `typeof ${v} === "number" && Number.isFinite(${v})`,
        );
      case 'boolean':
        return primitive(
          schema,
          'other',
          (value) => typeof value === 'boolean',
          (v) => `typeof ${v} === "boolean"`,
        );
      case 'null':
        return primitive(
          schema,
          'other',
          (value) => value === null,
          (v) => `${v} === null`,
        );
      case 'undefined':
        return primitive(
          schema,
          'other',
          (value) => value === undefined,
          (v) => `${v} === undefined`,
        );
      case 'unknown':
      case 'any':
        return primitive(
          schema,
          'other',
          () => true,
          () => 'true',
        );
      case 'never':
        return { check: () => BAD, decisive: true };
      case 'literal':
      case 'enum': {
        const values = schema._zod.values;
        if (!values) return deferAlways;
        return primitive(
          schema,
          'other',
          (value) => values.has(value),
          (v, ref) => `${ref(values)}.has(${v})`,
        );
      }
      case 'optional':
        return optional(schema);
      case 'nullable': {
        if (def.checks?.length) return deferAlways;
        const inner = compile(def.innerType as ZodNode);
        const check = inner.check;
        return { check: (value) => (value === null ? null : check(value)), decisive: inner.decisive };
      }
      case 'default': {
        if (def.checks?.length) return deferAlways;
        const inner = compile(def.innerType as ZodNode).check;
        // Read on every use: zod's defaultValue is a getter that hands out a fresh copy.
        return {
          check: (value) => {
            if (value === undefined) return def.defaultValue;
            const result = inner(value);
            return result === undefined ? def.defaultValue : result;
          },
          decisive: false,
        };
      }
      case 'array':
        return array(schema);
      case 'record':
        return record(schema);
      case 'object':
        return object(schema);
      case 'union':
        return union(schema);
      default:
        return deferAlways;
    }
  }

  /** A node whose output is its input: a type test (as a function and as code) and its checks. */
  function primitive(
    schema: ZodNode,
    kind: 'string' | 'number' | 'other',
    isType: (value: unknown) => boolean,
    typeCode: (v: string, ref: Ref) => string,
  ): Compiled {
    const tests = compileChecks(schema, kind);
    if (!tests) return deferAlways;
    const test = allOf(tests) as ((value: unknown) => boolean) | null;
    // Registered refinements are exact by contract only in the accepting direction, so a node that has one is not decisive.
    const decisive = !(schema._zod.def.checks ?? []).some((check) => check._zod.def.check === 'custom');
    const inline = (v: string, ref: Ref) =>
      [typeCode(v, ref), ...tests.map((entry) => (entry.code ? entry.code(v) : `${ref(entry.fn)}(${v})`))]
        .map((part) => `(${part})`)
        .join(' && ');
    if (!test) return { check: (value) => (isType(value) ? value : BAD), decisive, inline };
    return { check: (value) => (isType(value) && test(value) ? value : BAD), decisive, inline };
  }

  function optional(schema: ZodNode): Compiled {
    const def = schema._zod.def;
    const innerSchema = def.innerType as ZodNode;
    const inner = compile(innerSchema);
    if (def.checks?.length) return deferAlways;
    // exactOptional passes undefined on to the inner schema; an optional default still substitutes.
    if (schema._zod.traits.has('$ZodExactOptional') || innerSchema._zod.optin === 'defaulted') return inner;
    const check = inner.check;
    return { check: (value) => (value === undefined ? undefined : check(value)), decisive: inner.decisive, optionalOf: inner };
  }

  function array(schema: ZodNode): Compiled {
    const element = compile(schema._zod.def.element as ZodNode).check;
    const tests = compileChecks(schema, 'array');
    if (!tests) return deferAlways;
    const test = allOf(tests) as ((value: unknown[]) => boolean) | null;
    return {
      check: (value) => {
        if (!Array.isArray(value)) return BAD;
        const out = new Array(value.length);
        for (let i = 0; i < value.length; i += 1) {
          const item = element(value[i]);
          if (item === BAD) return BAD;
          out[i] = item;
        }
        return test && !test(out) ? BAD : out;
      },
      decisive: false,
    };
  }

  /**
   * z.record with a string key schema (not loose): zod reads every own enumerable key, symbols too
   * (which a string key schema refuses), skips `__proto__`, and copies the rest in key order.
   */
  function record(schema: ZodNode): Compiled {
    const def = schema._zod.def;
    const keyType = def.keyType as ZodNode;
    if (def.mode === 'loose' || keyType._zod.def.type !== 'string' || keyType._zod.values) return deferAlways;
    const keyCompiled = compile(keyType);
    if (!keyCompiled.decisive) return deferAlways;
    const keyCheck = keyCompiled.check;
    const keyChecked = keyType._zod.def.checks?.length || keyType._zod.traits.has('$ZodCheck');
    const valueNode = compile(def.valueType as ZodNode);
    // z.unknown() values (the common case) are copied without a call.
    const value = valueNode.inline?.('v', () => 'x') === '(true)' ? undefined : valueNode.check;
    const tests = compileChecks(schema, 'other');
    if (!tests) return deferAlways;
    const test = allOf(tests) as ((value: unknown) => boolean) | null;
    return {
      check: (input) => {
        if (!isPlain(input) || Object.getOwnPropertySymbols(input).length > 0) return BAD;
        const out: Record<string, unknown> = {};
        for (const key in input) {
          if (key === '__proto__') continue;
          if (keyChecked && keyCheck(key) === BAD) return BAD;
          if (value === undefined) {
            out[key] = input[key];
            continue;
          }
          const item = value(input[key]);
          if (item === BAD) return BAD;
          out[key] = item;
        }
        return test && !test(out) ? BAD : out;
      },
      decisive: false,
    };
  }

  /** z.union tries its options in order and keeps the first that parses; z.discriminatedUnion looks the option up. */
  function union(schema: ZodNode): Compiled {
    const def = schema._zod.def;
    const traits = schema._zod.traits;
    if (def.checks?.length || traits.has('$ZodXor') || (def.inclusive === false && !traits.has('$ZodDiscriminatedUnion')))
      return deferAlways;
    const options = (def.options as ZodNode[]).map((option) => compile(option));
    if (traits.has('$ZodDiscriminatedUnion')) return discriminated(schema, options);
    const checks = options.map((option) => option.check);
    const decisive = options.map((option) => option.decisive);
    // Options whose output is their input (primitives) give the same value whichever accepts first.
    if (options.every((option) => option.inline && option.decisive)) {
      return {
        check: (value) => (checks.some((check) => check(value) !== BAD) ? value : BAD),
        decisive: true,
        inline: (v, ref) => options.map((option) => `(${option.inline!(v, ref)})`).join(' || '),
      };
    }
    return {
      check: (value) => {
        for (let i = 0; i < checks.length; i += 1) {
          const result = checks[i]!(value);
          if (result !== BAD) return result;
          // zod may have taken this option; a later one would build a different value.
          if (!decisive[i]) return BAD;
        }
        return BAD;
      },
      decisive: decisive.every(Boolean),
    };
  }

  function discriminated(schema: ZodNode, options: Compiled[]): Compiled {
    const discriminator = schema._zod.def.discriminator as string;
    const byValue = new Map<unknown, Check>();
    const sources = schema._zod.def.options as ZodNode[];
    for (let i = 0; i < sources.length; i += 1) {
      const values = sources[i]!._zod.propValues?.[discriminator];
      if (!values) return deferAlways;
      for (const value of values) {
        // An ambiguous or absent tag is zod's to resolve.
        if (value === undefined || byValue.has(value)) return deferAlways;
        byValue.set(value, options[i]!.check);
      }
    }
    return {
      check: (value) => {
        if (!isPlain(value)) return BAD;
        const option = byValue.get(value[discriminator]);
        return option ? option(value) : BAD;
      },
      decisive: false,
    };
  }

  /**
   * z.object / z.looseObject / z.strictObject: shape keys in shape order, then the catchall's keys in
   * input order (loose), none (strip), or a refusal for any unknown key (strict). Each key follows zod's
   * rule for absent, present-undefined, optional and defaulted properties.
   */
  function object(schema: ZodNode): Compiled {
    const def = schema._zod.def;
    const shape = def.shape as Record<string, ZodNode>;
    if (Object.getOwnPropertySymbols(shape).length > 0) return deferAlways;
    const keys = Object.keys(shape);
    // Keys Object.prototype has would be read through the prototype chain; leave those objects to zod.
    if (keys.some((key) => key in OBJECT_PROTOTYPE)) return deferAlways;
    const tests = compileChecks(schema, 'other');
    if (!tests) return deferAlways;
    const catchall = def.catchall as ZodNode | undefined;
    const mode = catchall === undefined ? 'strip' : catchall._zod.def.type === 'never' ? 'strict' : 'catchall';
    const props: Prop[] = keys.map((key) => {
      const field = shape[key]!;
      return { key, node: compile(field), optin: field._zod.optin, optout: field._zod.optout };
    });
    const rest = mode === 'catchall' ? compile(catchall!) : undefined;
    const build = (codegen && compileObject(props, mode, rest)) || interpretObject(props, mode, rest?.check);
    const test = allOf(tests) as ((value: unknown) => boolean) | null;
    return {
      check: test
        ? (value) => {
            const out = build(value);
            return out === BAD || test(out) ? out : BAD;
          }
        : build,
      decisive: false,
    };
  }

  return { compile };
}

interface Prop {
  key: string;
  node: Compiled;
  optin: 'optional' | 'defaulted' | undefined;
  optout: 'optional' | undefined;
}

/**
 * The object check as straight-line code (as zod's own JIT does), so every property read has a
 * constant name and primitive properties are tested without a call. Undefined when code generation
 * is unavailable.
 */
function compileObject(props: Prop[], mode: 'strip' | 'strict' | 'catchall', rest: Compiled | undefined): Check | undefined {
  const aux: unknown[] = [];
  const ref: Ref = (value) => {
    let index = aux.indexOf(value);
    if (index < 0) index = aux.push(value) - 1;
    return `aux${index}`;
  };
  /** Code that checks `raw` with `node` and stores the result in out[name], or returns BAD. */
  const store = (node: Compiled, name: string) =>
    node.inline
      ? `if (!(${node.inline('raw', ref)})) return BAD; out[${name}] = raw;`
      : `checked = ${ref(node.check)}(raw); if (checked === BAD) return BAD; out[${name}] = checked;`;
  const lines = ['if (!isPlain(value)) return BAD;', 'const out = {};', 'let raw, checked;'];
  for (const { key, node, optin, optout } of props) {
    const name = JSON.stringify(key);
    lines.push(`raw = value[${name}];`);
    if (optin === 'optional' && optout === 'optional') {
      // Absent: nothing in the output. Present as undefined: zod's optional keeps the key, undefined.
      if (node.optionalOf)
        lines.push(`if (raw !== undefined) { ${store(node.optionalOf, name)} } else if (${name} in value) out[${name}] = undefined;`);
      else lines.push(`if (raw !== undefined || ${name} in value) { ${store(node, name)} }`);
    } else if (optin === undefined) {
      lines.push(`if (raw === undefined && !(${name} in value)) return BAD;`);
      lines.push(store(node, name));
    } else {
      // Defaulted (or optional-in only): an undefined result is kept for a present key, and for an absent
      // one only when the schema substitutes (defaulted) and is not optional-out.
      const keepUndefined = optin === 'defaulted' && optout !== 'optional' ? 'true' : `${name} in value`;
      lines.push(`checked = ${ref(node.check)}(raw); if (checked === BAD) return BAD;`);
      lines.push(`if (checked !== undefined || ${keepUndefined}) out[${name}] = checked;`);
    }
  }
  const cases = props.map(({ key }) => `case ${JSON.stringify(key)}:`).join(' ');
  // Strict refuses any other key, `__proto__` included; a catchall parses them all but `__proto__`.
  if (mode === 'strict')
    lines.push(
      props.length === 0
        ? 'for (const key in value) return BAD;'
        : `for (const key in value) { switch (key) { ${cases} continue; } return BAD; }`,
    );
  if (mode === 'catchall') {
    const copy =
      rest!.inline?.('v', ref) === '(true)'
        ? 'out[key] = value[key];'
        : `checked = ${ref(rest!.check)}(value[key]); if (checked === BAD) return BAD; out[key] = checked;`;
    lines.push(`for (const key in value) { switch (key) { ${cases} case "__proto__": continue; } ${copy} }`);
  }
  lines.push('return out;');
  try {
    // Each helper is its own parameter (a constant in the closure), cheaper to read than an array slot.
    const names = aux.map((_, index) => `aux${index}`);
    const factory = new Function('isPlain', 'BAD', ...names, `return function checkObject(value) {\n${lines.join('\n')}\n};`) as (
      ...args: unknown[]
    ) => Check;
    return factory(isPlain, BAD, ...aux);
  } catch {
    return undefined;
  }
}

/** A primitive's check as generated code (its output is its input): one small function to call. */
function compileElementTest(node: Compiled): Check | undefined {
  const aux: unknown[] = [];
  const ref: Ref = (value) => `aux${aux.push(value) - 1}`;
  const code = node.inline!('v', ref);
  try {
    const names = aux.map((_, index) => `aux${index}`);
    return (
      new Function('BAD', ...names, `return function checkElement(v) { return ${code} ? v : BAD; };`) as (...args: unknown[]) => Check
    )(BAD, ...aux);
  } catch {
    return undefined;
  }
}

/** The same object check as a loop, for when code generation is unavailable. */
function interpretObject(props: Prop[], mode: 'strip' | 'strict' | 'catchall', rest: Check | undefined): Check {
  const known = new Set(props.map(({ key }) => key));
  return (value) => {
    if (!isPlain(value)) return BAD;
    const out: Record<string, unknown> = {};
    for (const { key, node, optin, optout } of props) {
      const raw = value[key];
      const present = raw !== undefined || key in value;
      if (!present && optin === 'optional' && optout === 'optional') continue;
      if (!present && optin === undefined) return BAD;
      const checked = node.check(raw);
      if (checked === BAD) return BAD;
      if (checked !== undefined || present || (optin === 'defaulted' && optout !== 'optional')) out[key] = checked;
    }
    if (mode === 'strip') return out;
    for (const key in value) {
      if (known.has(key)) continue;
      if (mode === 'strict') return BAD;
      if (key === '__proto__') continue;
      const checked = rest!(value[key]);
      if (checked === BAD) return BAD;
      out[key] = checked;
    }
    return out;
  };
}
