import type { Store } from '../../store/index.js';

/** Deletes events and dead letters older than `days` (before `now`); returns how many of each went. */
export async function pruneOlderThan(ctx: { store: Store }, days: number, now = Date.now()) {
  const before = new Date(now - days * 86_400_000).toISOString();
  const events = await ctx.store.pruneEvents(before);
  const deadLetters = await ctx.store.pruneDeadLetters(before);
  return { before, events, deadLetters };
}
