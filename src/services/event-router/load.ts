import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BitBratError } from '../../core/index.js';
import type { RuleRecord, Store } from '../../store/index.js';
import type { Logger } from '../../runtime/logger.js';
import { PROJECT_ROOT } from '../../runtime/manifest.js';
import { checkRule, type Rule } from './rules.js';

/** The rules shipped with BitBrat, used when RULES_FILE is not set. */
export const DEFAULT_RULES_FILE = path.join(PROJECT_ROOT, 'config', 'rules.default.json');

/** A rule of a rules file that was not loaded, and why. */
export interface RejectedRule {
  /** Position in the file's list (0-based). */
  index: number;
  id: string;
  problems: string[];
}

export interface ReadRulesOptions {
  /** Step ids some service serves; when given, a rule whose slip names another step is rejected. */
  knownSteps?: readonly string[];
}

/**
 * Reads a rules file. A file that cannot be read, is not JSON or holds no list of rules fails as a whole
 * (it is a start-up input); each rule is then checked like one saved through the API, and a bad one is
 * returned in `rejected` instead of failing the others.
 */
export async function readRulesFile(path: string, options: ReadRulesOptions = {}): Promise<{ rules: Rule[]; rejected: RejectedRule[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new BitBratError('CONFIG_INVALID', `RULES_FILE ${path} cannot be read: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new BitBratError('CONFIG_INVALID', `RULES_FILE ${path} is not valid JSON: ${(error as Error).message}`);
  }
  const list = Array.isArray(json) ? json : (json as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(list))
    throw new BitBratError('CONFIG_INVALID', `RULES_FILE ${path} is invalid: expected { "rules": [...] } or a list of rules`);
  const rules: Rule[] = [];
  const rejected: RejectedRule[] = [];
  const ids = new Set<string>();
  for (const [index, input] of (list as unknown[]).entries()) {
    const rawId = (input as { id?: unknown } | null)?.id;
    const id = typeof rawId === 'string' ? rawId.slice(0, 100) : '(no id)';
    const checked = checkRule(input, options.knownSteps);
    if (!checked.ok) rejected.push({ index, id, problems: checked.problems });
    else if (ids.has(checked.rule.id))
      rejected.push({ index, id, problems: [`rule ${checked.rule.id} is defined twice; the first one is kept`] });
    else {
      ids.add(checked.rule.id);
      rules.push(checked.rule);
    }
  }
  return { rules, rejected };
}

/** The stored form of a checked rule (the store stamps `updatedAt`). */
export function ruleRecordOf(rule: Rule): Omit<RuleRecord, 'updatedAt'> {
  return {
    id: rule.id,
    priority: rule.priority,
    enabled: rule.enabled,
    logic: rule.logic,
    action: rule.action as Record<string, unknown>,
    ...(rule.description ? { description: rule.description } : {}),
  };
}

export interface SeedRulesOptions extends ReadRulesOptions {
  /** Told about each rule of the file that was skipped. */
  logger?: Pick<Logger, 'warn'>;
}

/**
 * Seeds the `rules` table from a file when it holds no rules at all. Upserts are keyed by rule id, so two
 * instances seeding at once end with the same rules. Invalid rules are reported and skipped. Returns how
 * many rules were written.
 */
export async function seedRules(
  store: Pick<Store, 'listRules' | 'upsertRule'>,
  path: string,
  options: SeedRulesOptions = {},
): Promise<number> {
  if ((await store.listRules()).length > 0) return 0;
  const { rules, rejected } = await readRulesFile(path, options);
  for (const bad of rejected)
    options.logger?.warn({ file: path, index: bad.index, rule: bad.id, problems: bad.problems }, 'skipping invalid rule in the rules file');
  for (const rule of rules) {
    await store.upsertRule(ruleRecordOf(rule));
  }
  return rules.length;
}
