import jsonLogic from 'json-logic-js';
import { RE2JS } from 're2js';
import { z } from 'zod';
import { messageText, stepTopic, type Annotation, type Envelope } from '../../core/index.js';
import { Role, roleAtLeast } from '../auth/roles.js';

/** Where the router sees an envelope: straight from auth, or back after the enrichment slip. */
export const Stage = { ingress: 'ingress', enriched: 'enriched' } as const;
export type Stage = (typeof Stage)[keyof typeof Stage];

/** The data a rule's JsonLogic is evaluated against. */
export interface EvaluationData {
  type: string;
  text: string;
  command: string | null;
  args: string[];
  user: { id: string; role: string; roles: string[]; login: string; name: string; permissions: string[] };
  source: Envelope['source'];
  annotations: Annotation[];
  /** Last label per annotation kind, e.g. `{ intent: 'question', spam: 'clean' }`. */
  annotationLabels: Record<string, string>;
  stage: Stage;
  botName: string;
  /** Which optional services can take work here (an unconfigured LLM gets none: no made-up answers). */
  capabilities: { llm: boolean };
  payload: Record<string, unknown>;
  /** The platform event (`externalEvent`): e.g. `{ kind: 'channel.raid', source: 'twitch.eventsub' }`; null for chat. */
  event: { kind: string; source: string } | null;
  /** A platform event's kind (`externalEvent.kind`, e.g. `channel.follow`); null for chat. */
  kind: string | null;
}

const SlipEntrySchema = z.union([
  z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'a step id is lower-case letters, digits, . _ -'),
  z.object({
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/),
    destination: z.string().min(1).optional(),
    timeoutMs: z.number().int().positive().optional(),
    maxAttempts: z.number().int().min(1).max(20).optional(),
  }),
]);

const AnnotateSchema = z.object({
  kind: z.string().min(1),
  label: z.string().optional(),
  value: z.union([z.string(), z.number(), z.boolean()]).optional(),
  score: z.number().optional(),
  payload: z.record(z.string(), z.unknown()).optional(),
});

/**
 * What a matching rule does. `slip` assigns the (remaining) routing slip; `outcome` ends processing
 * (`handled`: deliberately no reaction, `unrouted`: recorded as not routed). At least one is required.
 */
export const RuleActionSchema = z
  .object({
    slip: z.array(SlipEntrySchema).optional(),
    egressDestination: z.string().min(1).optional(),
    finalizationDestination: z.string().min(1).optional(),
    annotate: z.union([AnnotateSchema, z.array(AnnotateSchema)]).optional(),
    outcome: z.enum(['unrouted', 'handled']).optional(),
  })
  .refine((action) => action.slip !== undefined || action.outcome !== undefined, { message: 'an action needs a slip or an outcome' });
export type RuleAction = z.infer<typeof RuleActionSchema>;

/**
 * Limits that keep every rule manageable and cheap to evaluate. An id is used in URL paths (fastify
 * refuses path parameters over 100 characters), so it is short and needs no escaping; logic is walked on
 * every message and travels as JSON between threads and to the database, whose decoders recurse.
 */
export const RULE_LIMITS = {
  /** Characters in a rule id. */
  idLength: 64,
  /** Nesting of the logic (objects and arrays). */
  logicDepth: 64,
  /** Objects, arrays and values in the logic. */
  logicNodes: 5_000,
  /** The whole rule as JSON, in characters. */
  ruleChars: 64 * 1024,
  /** Characters in one regex pattern. */
  patternLength: 500,
} as const;

const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The JsonLogic operators of json-logic-js that rules may use (`log` writes to the console on every message, so it is left out). */
const BUILTIN_OPERATORS = [
  '==',
  '===',
  '!=',
  '!==',
  '>',
  '>=',
  '<',
  '<=',
  '!!',
  '!',
  '%',
  'in',
  'cat',
  'substr',
  '+',
  '*',
  '-',
  '/',
  'min',
  'max',
  'merge',
  'var',
  'missing',
  'missing_some',
  'if',
  '?:',
  'and',
  'or',
  'filter',
  'map',
  'reduce',
  'all',
  'none',
  'some',
] as const;
/** BitBrat's own operators, registered below. */
const CUSTOM_OPERATORS = ['has_role', 'has_annotation', 'annotation_value', 'regex', 'starts_with', 'lower'] as const;
/** Every operator a rule's logic may name. */
export const RULE_OPERATORS: readonly string[] = [...BUILTIN_OPERATORS, ...CUSTOM_OPERATORS];
const OPERATORS = new Set<string>(RULE_OPERATORS);

/**
 * Problems with a rule's logic, found without recursion (a hostile rule may nest thousands deep, which
 * would overflow the stack of any recursive check): depth and size limits, unknown operators, and regex
 * patterns the linear-time engine cannot compile. Empty when the logic is acceptable.
 */
export function logicProblems(logic: unknown): string[] {
  const problems: string[] = [];
  const stack: Array<{ value: unknown; depth: number; path: string }> = [{ value: logic, depth: 0, path: 'logic' }];
  let nodes = 0;
  // Ten problems say enough; a rule with thousands of bad operators should not get a megabyte of reply.
  while (stack.length > 0 && problems.length < 10) {
    const { value, depth, path } = stack.pop()!;
    nodes += 1;
    if (nodes > RULE_LIMITS.logicNodes) {
      problems.push(`logic: more than ${RULE_LIMITS.logicNodes} values; split the rule`);
      break;
    }
    if (value === null || typeof value !== 'object') continue;
    if (depth >= RULE_LIMITS.logicDepth) {
      problems.push(`logic: nested deeper than ${RULE_LIMITS.logicDepth} levels at ${path}`);
      break;
    }
    if (Array.isArray(value)) {
      value.forEach((item, index) => {
        stack.push({ value: item, depth: depth + 1, path: `${path}.${index}` });
      });
      continue;
    }
    const keys = Object.keys(value);
    // JsonLogic evaluates an object with exactly one key as an operation; any other object is data.
    if (keys.length === 1) {
      const operator = keys[0]!;
      if (!OPERATORS.has(operator)) problems.push(`${path}: unknown operator "${operator}"; known operators: ${RULE_OPERATORS.join(', ')}`);
      if (operator === 'regex') problems.push(...regexProblems((value as Record<string, unknown>).regex, `${path}.regex`));
    }
    for (const key of keys) stack.push({ value: (value as Record<string, unknown>)[key], depth: depth + 1, path: `${path}.${key}` });
  }
  return problems;
}

/** Checks a `regex` operation's literal pattern and flags (computed ones are checked when evaluated). */
function regexProblems(args: unknown, path: string): string[] {
  if (!Array.isArray(args) || args.length < 2 || args.length > 3) return [`${path}: regex takes [text, pattern] or [text, pattern, flags]`];
  const [, pattern, flags] = args as unknown[];
  const problems: string[] = [];
  if (typeof flags === 'string' && /[^gimsuy]/.test(flags))
    problems.push(`${path}: regex flags "${flags}" may only use i, m, s (g, u and y are ignored)`);
  if (typeof pattern === 'string') {
    const error = regexError(pattern);
    if (error) problems.push(`${path}: regex pattern ${JSON.stringify(pattern.slice(0, 80))} is refused: ${error}`);
  }
  return problems;
}

/** Why the linear-time engine refuses a pattern, or undefined when it compiles. */
function regexError(pattern: string): string | undefined {
  if (pattern.length > RULE_LIMITS.patternLength) return `longer than ${RULE_LIMITS.patternLength} characters`;
  try {
    RE2JS.compile(pattern);
    return undefined;
  } catch (error) {
    // RE2 runs in linear time because it has no backreferences or lookaround; say so for those.
    const message = error instanceof Error ? error.message : String(error);
    const hint = /\\[1-9]|\(\?(=|!|<=|<!)/.test(pattern)
      ? ' (backreferences and lookaround are not supported: rules use a linear-time regex engine)'
      : '';
    return `${message}${hint}`;
  }
}

/** Why a rule's slip names steps that no service serves, given the known step ids. */
export function slipProblems(action: RuleAction, knownSteps: readonly string[]): string[] {
  const known = new Set(knownSteps);
  const topics = new Set(knownSteps.map(stepTopic));
  const problems: string[] = [];
  (action.slip ?? []).forEach((entry, index) => {
    const id = typeof entry === 'string' ? entry : entry.id;
    const destination = typeof entry === 'string' ? undefined : entry.destination;
    const served = destination !== undefined ? topics.has(destination) : known.has(id);
    if (!served) {
      const what =
        destination !== undefined
          ? `step "${id}" goes to ${destination}, which no service consumes`
          : `step "${id}" is served by no service`;
      problems.push(`action.slip.${index}: ${what}; known steps: ${[...known].sort().join(', ')}`);
    }
  });
  return problems;
}

/** A rule as written in a rules file or stored in the `rules` table. */
export const RuleSchema = z
  .object({
    id: z
      .string()
      .min(1)
      .max(RULE_LIMITS.idLength, `a rule id is at most ${RULE_LIMITS.idLength} characters`)
      .regex(RULE_ID, 'a rule id is letters, digits, . _ - and starts with a letter or digit'),
    description: z.string().max(1_000).optional(),
    priority: z.number().int().default(0),
    enabled: z.boolean().default(true),
    logic: z.unknown().superRefine((logic, ctx) => {
      const problems = logicProblems(logic);
      for (const message of problems) ctx.addIssue({ code: 'custom', message });
      if (problems.length === 0 && typeof logic !== 'boolean' && !jsonLogic.is_logic(logic))
        ctx.addIssue({ code: 'custom', message: 'logic must be a JsonLogic expression or a boolean' });
    }),
    action: RuleActionSchema,
  })
  .superRefine((rule, ctx) => {
    // Only measured once the logic is known to be shallow: JSON.stringify recurses.
    if (logicProblems(rule.logic).length > 0) return;
    const chars = JSON.stringify(rule).length;
    if (chars > RULE_LIMITS.ruleChars)
      ctx.addIssue({ code: 'custom', message: `the rule is ${chars} characters as JSON; at most ${RULE_LIMITS.ruleChars}`, path: [] });
  });
export type RuleInput = z.input<typeof RuleSchema>;
export type Rule = z.output<typeof RuleSchema>;

/**
 * Checks one rule as a whole: the schema (ids, limits, operators, regexes) and, when the known steps
 * are given, that every slip step is served. Throws nothing: returns the rule or every problem.
 */
export function checkRule(input: unknown, knownSteps?: readonly string[]): { ok: true; rule: Rule } | { ok: false; problems: string[] } {
  const parsed = RuleSchema.safeParse(input);
  if (!parsed.success)
    return { ok: false, problems: parsed.error.issues.map((issue) => `${issue.path.join('.') || '(rule)'}: ${issue.message}`) };
  const problems = knownSteps ? slipProblems(parsed.data.action, knownSteps) : [];
  return problems.length > 0 ? { ok: false, problems } : { ok: true, rule: parsed.data };
}

/** A rules file: `{ "rules": [...] }` or a bare array. */
export const RulesFileSchema = z.union([
  z.object({ rules: z.array(RuleSchema) }).loose(),
  z.array(RuleSchema).transform((rules) => ({ rules })),
]);

// ------------------------------------------------------------------------------ custom operators

/** The data of the evaluation in progress; evaluation is synchronous, so one slot is enough. */
let current: EvaluationData | undefined;

const regexCache = new Map<string, RE2JS | null>();

/** A pattern compiled for RE2 (linear time: no catastrophic backtracking), or null when it cannot be. */
function compileRegex(pattern: string, flags: string): RE2JS | null {
  const key = `${flags}\u0000${pattern}`;
  let compiled = regexCache.get(key);
  if (compiled === undefined) {
    // `g`/`y` make no sense for a yes/no match and RE2 is always Unicode-aware, so only i, m, s count.
    const bits =
      (flags.includes('i') ? RE2JS.CASE_INSENSITIVE : 0) |
      (flags.includes('m') ? RE2JS.MULTILINE : 0) |
      (flags.includes('s') ? RE2JS.DOTALL : 0);
    try {
      compiled = pattern.length > RULE_LIMITS.patternLength ? null : RE2JS.compile(pattern, bits);
    } catch {
      compiled = null;
    }
    if (regexCache.size > 1_000) regexCache.clear();
    regexCache.set(key, compiled);
  }
  return compiled;
}

function userOf(arg: unknown): { role: string; roles: string[] } | undefined {
  if (typeof arg === 'string') return { role: arg, roles: [arg] };
  if (arg && typeof arg === 'object') {
    const user = arg as { role?: unknown; roles?: unknown };
    if (typeof user.role === 'string') return { role: user.role, roles: Array.isArray(user.roles) ? user.roles.map(String) : [user.role] };
  }
  return undefined;
}

/** `has_role` semantics: at least the role in the order; `banned` and `trusted` must be held exactly. */
export function hasRole(user: { role: string; roles: string[] }, wanted: string): boolean {
  if (wanted === Role.banned) return user.role === Role.banned;
  if (wanted === Role.trusted) return user.role === Role.trusted || user.roles.includes(Role.trusted);
  return roleAtLeast(user.role, wanted);
}

function annotationsOf(self: unknown): Annotation[] {
  if (current) return current.annotations;
  const annotations = (self as { annotations?: unknown } | undefined)?.annotations;
  return Array.isArray(annotations) ? (annotations as Annotation[]) : [];
}

jsonLogic.add_operation('has_role', function (this: unknown, a: unknown, b?: unknown) {
  // {"has_role": "moderator"} uses the evaluated user; {"has_role": [user-or-role, "moderator"]} is explicit.
  const explicit = b !== undefined;
  const user = explicit ? userOf(a) : (current?.user ?? userOf((this as { user?: unknown } | undefined)?.user));
  const wanted = explicit ? b : a;
  return !!user && typeof wanted === 'string' && hasRole(user, wanted);
});

jsonLogic.add_operation('has_annotation', function (this: unknown, kind: unknown, label?: unknown) {
  return annotationsOf(this).some(
    (annotation) => annotation.kind === kind && (label === undefined || label === null || annotation.label === label),
  );
});

jsonLogic.add_operation('annotation_value', function (this: unknown, kind: unknown) {
  const found = annotationsOf(this)
    .filter((annotation) => annotation.kind === kind)
    .at(-1);
  return found ? (found.value ?? found.score ?? found.label ?? null) : null;
});

jsonLogic.add_operation('regex', (text: unknown, pattern: unknown, flags?: unknown) => {
  if (typeof text !== 'string' || typeof pattern !== 'string') return false;
  const compiled = compileRegex(pattern, typeof flags === 'string' ? flags : '');
  return compiled ? compiled.matcher(text).find() : false;
});

jsonLogic.add_operation(
  'starts_with',
  (text: unknown, prefix: unknown) => typeof text === 'string' && typeof prefix === 'string' && text.startsWith(prefix),
);

jsonLogic.add_operation('lower', (value: unknown) => (typeof value === 'string' ? value.toLowerCase() : ''));

// ------------------------------------------------------------------------------------ evaluation

/** Builds the evaluation data for an envelope at a stage. */
export function evaluationData(
  envelope: Envelope,
  stage: Stage,
  botName: string,
  capabilities: { llm: boolean } = { llm: true },
): EvaluationData {
  const annotations = envelope.annotations ?? [];
  const annotationLabels: Record<string, string> = {};
  for (const annotation of annotations) if (annotation.label !== undefined) annotationLabels[annotation.kind] = annotation.label;
  const text = messageText(envelope) ?? '';
  const user = envelope.user;
  return {
    type: envelope.type,
    text,
    command: envelope.message?.command ?? null,
    args: envelope.message?.args ?? [],
    user: {
      id: user.id,
      role: user.role,
      roles: Array.isArray(user.roles) ? (user.roles as unknown[]).map(String) : [user.role],
      login: user.name,
      name: user.displayName || user.name,
      permissions: user.permissions ?? [],
    },
    source: envelope.source,
    annotations,
    annotationLabels,
    stage,
    botName,
    capabilities,
    payload: envelope.payload,
    event: envelope.externalEvent ? { kind: envelope.externalEvent.kind, source: envelope.externalEvent.source } : null,
    kind: envelope.externalEvent?.kind ?? null,
  };
}

export interface CompiledRule extends Rule {
  /** Position in the sorted list (0 = evaluated first). */
  order: number;
}

export interface RuleSet {
  readonly rules: readonly CompiledRule[];
  /** Rules that failed validation, with the reason (they are ignored). */
  readonly rejected: ReadonlyArray<{ id: string; error: string }>;
}

/** Validates rules, drops disabled and invalid ones, and orders them: higher priority first, then id. */
export function compileRules(inputs: readonly unknown[]): RuleSet {
  const valid: Rule[] = [];
  const rejected: Array<{ id: string; error: string }> = [];
  for (const input of inputs) {
    const parsed = RuleSchema.safeParse(input);
    if (!parsed.success) {
      const id = (input as { id?: unknown } | null)?.id;
      rejected.push({
        id: typeof id === 'string' ? id : '(no id)',
        error: parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; '),
      });
      continue;
    }
    if (parsed.data.enabled) valid.push(parsed.data);
  }
  valid.sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { rules: valid.map((rule, order) => ({ ...rule, order })), rejected };
}

export interface RuleMatch {
  rule: CompiledRule;
  action: RuleAction;
}

/**
 * The first rule (by priority) whose logic is truthy for the data. A rule whose evaluation throws is
 * treated as not matching and reported through `onError`.
 */
export function matchRule(
  ruleSet: RuleSet,
  data: EvaluationData,
  onError?: (rule: CompiledRule, error: unknown) => void,
): RuleMatch | undefined {
  for (const rule of ruleSet.rules) {
    let result: unknown;
    current = data;
    try {
      result = typeof rule.logic === 'boolean' ? rule.logic : jsonLogic.apply(rule.logic as jsonLogic.RulesLogic, data);
    } catch (error) {
      onError?.(rule, error);
      continue;
    } finally {
      current = undefined;
    }
    if (jsonLogic.truthy(result)) return { rule, action: rule.action };
  }
  return undefined;
}
