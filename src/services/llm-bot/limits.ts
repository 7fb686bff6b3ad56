/**
 * Rate limits and the daily token budget, kept in the store so every llm-bot instance shares them.
 * Windows are fixed (the minute / the UTC day is part of the counter key); the TTL only cleans up.
 */
import type { Store } from '../../store/types.js';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

export interface RateLimits {
  /** Requests per user per minute; 0 = unlimited. */
  perUser: number;
  /** Requests per channel per minute; 0 = unlimited. */
  perChannel: number;
}

export interface RateDecision {
  limited: boolean;
  scope?: 'user' | 'channel';
  limit?: number;
  count?: number;
}

/**
 * Counts this request against the user's and the channel's minute windows. A request refused for the
 * user does not count against the channel, so one spammer cannot starve everyone else.
 */
export async function takeRateSlot(
  store: Pick<Store, 'incrementCounter'>,
  who: { platform: string; channel: string; userId: string },
  limits: RateLimits,
  now = Date.now(),
): Promise<RateDecision> {
  const minute = Math.floor(now / MINUTE_MS);
  if (limits.perUser > 0) {
    const count = await store.incrementCounter(`llm-bot:rate:user:${who.platform}:${who.userId}:${minute}`, 1, 2 * MINUTE_MS);
    if (count > limits.perUser) return { limited: true, scope: 'user', limit: limits.perUser, count };
  }
  if (limits.perChannel > 0) {
    const count = await store.incrementCounter(
      `llm-bot:rate:channel:${who.platform}:${who.channel.toLowerCase()}:${minute}`,
      1,
      2 * MINUTE_MS,
    );
    if (count > limits.perChannel) return { limited: true, scope: 'channel', limit: limits.perChannel, count };
  }
  return { limited: false };
}

/** Counter key of the UTC day's token spend. */
export function budgetKey(now = Date.now()): string {
  return `llm-bot:tokens:${new Date(now).toISOString().slice(0, 10)}`;
}

/** Tokens spent today (all channels, all instances). */
export async function tokensSpentToday(store: Pick<Store, 'incrementCounter'>, now = Date.now()): Promise<number> {
  return await store.incrementCounter(budgetKey(now), 0, 2 * DAY_MS);
}

/** Adds a request's usage to today's spend; returns the new total. */
export async function spendTokens(store: Pick<Store, 'incrementCounter'>, tokens: number, now = Date.now()): Promise<number> {
  if (!(tokens > 0)) return await tokensSpentToday(store, now);
  return await store.incrementCounter(budgetKey(now), Math.ceil(tokens), 2 * DAY_MS);
}

export interface BudgetGate {
  /** Whether today's budget is spent (0 = unlimited, never). */
  check(now?: number): Promise<{ exhausted: boolean; spent: number }>;
  /** Records a request's usage. */
  spend(tokens: number, now?: number): Promise<number>;
}

/**
 * The daily budget with a little local memory: while the last total this instance saw is recent and
 * well under the limit, the check needs no store round trip (the budget is a soft cap; near the limit
 * every check reads the shared counter, so instances stop together within one request each).
 */
export function createBudgetGate(
  store: Pick<Store, 'incrementCounter'>,
  limit: number,
  options: { staleMs?: number; headroom?: number } = {},
): BudgetGate {
  const staleMs = options.staleMs ?? 2_000;
  const headroom = options.headroom ?? 0.9;
  let known = { spent: 0, at: Number.NEGATIVE_INFINITY, key: '' };
  return {
    async check(now = Date.now()) {
      if (limit <= 0) return { exhausted: false, spent: known.spent };
      const key = budgetKey(now);
      if (known.key === key && now - known.at < staleMs && known.spent < limit * headroom) return { exhausted: false, spent: known.spent };
      const spent = await tokensSpentToday(store, now);
      known = { spent, at: now, key };
      return { exhausted: spent >= limit, spent };
    },
    async spend(tokens, now = Date.now()) {
      if (limit <= 0) return 0;
      const spent = await spendTokens(store, tokens, now);
      known = { spent, at: now, key: budgetKey(now) };
      return spent;
    },
  };
}
