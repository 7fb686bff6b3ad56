/** Reading and changing reactions in the `rules` table (used by the API and the reactions service). */
import { BitBratError } from '../../core/index.js';
import type { Store } from '../../store/index.js';
import {
  REACTION_NAMES,
  applyReactionUpdate,
  defaultReactionRules,
  isReactionName,
  reactionFromRule,
  reactionRule,
  ruleId,
  type Reaction,
  type ReactionUpdate,
} from './reactions.js';

/** Every reaction with its current settings. */
export async function listReactions(store: Pick<Store, 'getRule'>): Promise<Reaction[]> {
  return await Promise.all(REACTION_NAMES.map(async (name) => reactionFromRule(name, await store.getRule(ruleId(name)))));
}

/** One reaction; NOT_FOUND for a name BitBrat has no reaction for. */
export async function getReaction(store: Pick<Store, 'getRule'>, name: string): Promise<Reaction> {
  if (!isReactionName(name)) throw new BitBratError('NOT_FOUND', `no reaction "${name}"; reactions are ${REACTION_NAMES.join(', ')}`);
  return reactionFromRule(name, await store.getRule(ruleId(name)));
}

/** Switches a reaction on or off, rewords it or sets the raid shoutout; writes its rule. */
export async function updateReaction(
  store: Pick<Store, 'getRule' | 'upsertRule'>,
  name: string,
  update: ReactionUpdate,
): Promise<Reaction> {
  const next = applyReactionUpdate(await getReaction(store, name), update);
  await store.upsertRule(reactionRule(next.name, next));
  return next;
}

/**
 * Adds the reaction rules an installation made before reactions existed lacks. Only when the table
 * already has rules: an empty table is the router's to seed from the defaults file (which has them).
 */
export async function ensureReactionRules(store: Pick<Store, 'listRules' | 'upsertRule'>): Promise<number> {
  const existing = await store.listRules();
  if (existing.length === 0) return 0;
  const ids = new Set(existing.map((rule) => rule.id));
  const missing = defaultReactionRules().filter((rule) => !ids.has(rule.id));
  for (const rule of missing) await store.upsertRule(rule);
  return missing.length;
}
