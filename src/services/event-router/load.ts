import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { BitBratError } from '../../core/index.js';
import type { RuleRecord, Store } from '../../store/index.js';
import { RulesFileSchema, type Rule } from './rules.js';

/** The rules shipped with BitBrat, used when RULES_FILE is not set. */
export const DEFAULT_RULES_FILE = fileURLToPath(new URL('../../../config/rules.default.json', import.meta.url));

/** Reads and validates a rules file; any invalid rule fails the whole file (it is a start-up input). */
export async function readRulesFile(path: string): Promise<Rule[]> {
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
  const parsed = RulesFileSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ');
    throw new BitBratError('CONFIG_INVALID', `RULES_FILE ${path} is invalid: ${problems}`);
  }
  const ids = new Set<string>();
  for (const rule of parsed.data.rules) {
    if (ids.has(rule.id)) throw new BitBratError('CONFIG_INVALID', `RULES_FILE ${path} defines rule ${rule.id} twice`);
    ids.add(rule.id);
  }
  return parsed.data.rules;
}

/**
 * Seeds the `rules` table from a file when it holds no rules at all. Upserts are keyed by rule id, so two
 * instances seeding at once end with the same rules. Returns how many rules were written.
 */
export async function seedRules(store: Pick<Store, 'listRules' | 'upsertRule'>, path: string): Promise<number> {
  if ((await store.listRules()).length > 0) return 0;
  const rules = await readRulesFile(path);
  for (const rule of rules) {
    const record: Omit<RuleRecord, 'updatedAt'> = {
      id: rule.id,
      priority: rule.priority,
      enabled: rule.enabled,
      logic: rule.logic,
      action: rule.action as Record<string, unknown>,
      ...(rule.description ? { description: rule.description } : {}),
    };
    await store.upsertRule(record);
  }
  return rules.length;
}
