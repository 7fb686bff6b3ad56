import jsonLogic from 'json-logic-js';
import { z } from 'zod';
import type { Annotation, Envelope } from '../../core/index.js';
import { messageText } from '../../core/index.js';
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

/** A rule as written in a rules file or stored in the `rules` table. */
export const RuleSchema = z.object({
  id: z.string().min(1),
  description: z.string().optional(),
  priority: z.number().int().default(0),
  enabled: z.boolean().default(true),
  logic: z.unknown().refine((logic) => typeof logic === 'boolean' || jsonLogic.is_logic(logic), { message: 'logic must be a JsonLogic expression or a boolean' }),
  action: RuleActionSchema,
});
export type RuleInput = z.input<typeof RuleSchema>;
export type Rule = z.output<typeof RuleSchema>;

/** A rules file: `{ "rules": [...] }` or a bare array. */
export const RulesFileSchema = z.union([z.object({ rules: z.array(RuleSchema) }).loose(), z.array(RuleSchema).transform((rules) => ({ rules }))]);

// ------------------------------------------------------------------------------ custom operators

/** The data of the evaluation in progress; evaluation is synchronous, so one slot is enough. */
let current: EvaluationData | undefined;

const MAX_PATTERN_LENGTH = 500;
const regexCache = new Map<string, RegExp | null>();

function compileRegex(pattern: string, flags: string): RegExp | null {
  const key = `${flags}\u0000${pattern}`;
  let compiled = regexCache.get(key);
  if (compiled === undefined) {
    // `g`/`y` make test() stateful across calls; they are meaningless for a yes/no match.
    const safeFlags = [...new Set(flags.replace(/[^imsu]/g, ''))].join('');
    try {
      compiled = pattern.length > MAX_PATTERN_LENGTH ? null : new RegExp(pattern, safeFlags);
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
  return annotationsOf(this).some((annotation) => annotation.kind === kind && (label === undefined || label === null || annotation.label === label));
});

jsonLogic.add_operation('annotation_value', function (this: unknown, kind: unknown) {
  const found = annotationsOf(this).filter((annotation) => annotation.kind === kind).at(-1);
  return found ? (found.value ?? found.score ?? found.label ?? null) : null;
});

jsonLogic.add_operation('regex', (text: unknown, pattern: unknown, flags?: unknown) => {
  if (typeof text !== 'string' || typeof pattern !== 'string') return false;
  const compiled = compileRegex(pattern, typeof flags === 'string' ? flags : '');
  return compiled ? compiled.test(text) : false;
});

jsonLogic.add_operation('starts_with', (text: unknown, prefix: unknown) => typeof text === 'string' && typeof prefix === 'string' && text.startsWith(prefix));

jsonLogic.add_operation('lower', (value: unknown) => (typeof value === 'string' ? value.toLowerCase() : ''));

// ------------------------------------------------------------------------------------ evaluation

/** Builds the evaluation data for an envelope at a stage. */
export function evaluationData(envelope: Envelope, stage: Stage, botName: string, capabilities: { llm: boolean } = { llm: true }): EvaluationData {
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
      rejected.push({ id: typeof id === 'string' ? id : '(no id)', error: parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ') });
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
export function matchRule(ruleSet: RuleSet, data: EvaluationData, onError?: (rule: CompiledRule, error: unknown) => void): RuleMatch | undefined {
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
