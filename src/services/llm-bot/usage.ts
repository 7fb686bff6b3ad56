/**
 * Per-user and cost caps on LLM use, kept in store counters so every llm-bot instance shares them and the
 * api-gateway can report them. Windows are the UTC day (the day is part of the key); the TTL only cleans up.
 * The global token budget stays in limits.ts; this file adds what one viewer may spend and what the day may
 * cost in money.
 */
import { z } from 'zod';
import { env } from '../../runtime/config.js';
import type { Store } from '../../store/types.js';
import { budgetKey } from './limits.js';
import { configuredModel, costUsd, modelPrice, PricingSchema } from './pricing.js';

const DAY_MS = 86_400_000;
const KEY_TTL_MS = 2 * DAY_MS;

/** The caps' env, shared by llm-bot (enforces) and api-gateway (reports). 0 everywhere means no cap. */
export const UsageCapsSchema = z.object({
  /** Tokens per UTC day across all channels; 0 = unlimited. */
  LLM_DAILY_TOKEN_BUDGET: env.int(200_000, { min: 0 }),
  /** Tokens one user may spend per UTC day; 0 = unlimited. */
  LLM_USER_DAILY_TOKENS: env.int(0, { min: 0 }),
  /** US dollars one user may cost per UTC day; 0 = unlimited (needs prices). */
  LLM_USER_DAILY_COST_USD: env.number(0, { min: 0 }),
  /** US dollars all users together may cost per UTC day; 0 = unlimited (needs prices). */
  LLM_DAILY_COST_USD: env.number(0, { min: 0 }),
  /** What the model's tokens cost (see pricing.ts): the cost caps and the cost metric use the same price. */
  ...PricingSchema.shape,
});
export type UsageCaps = z.infer<typeof UsageCapsSchema>;

/** What one request used. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

/** Why a request was refused before reaching the model. */
export type CapDecision =
  | { capped: false }
  | { capped: true; scope: 'user-tokens' | 'user-cost' | 'daily-cost'; spent: number; cap: number };

const day = (now: number) => new Date(now).toISOString().slice(0, 10);

/** Counter keys; `user` is `<platform>:<user id>`. */
export const usageKeys = {
  userTokens: (now: number, user = '') => `llm-bot:user-tokens:${day(now)}:${user}`,
  userCost: (now: number, user = '') => `llm-bot:user-cost:${day(now)}:${user}`,
  cost: (now: number) => `llm-bot:cost:${day(now)}`,
};

/** Whether the configured model has a price, so that cost is tracked and the cost caps apply. */
const priced = (caps: UsageCaps) => modelPrice(caps) !== undefined;
const read = (store: Pick<Store, 'incrementCounter'>, key: string) => store.incrementCounter(key, 0, KEY_TTL_MS);

/**
 * Whether `user` may call the model now: the day's cost for everyone, then the user's tokens and cost.
 * Reads only the counters whose cap is set, so with no caps it costs nothing.
 */
export async function checkCaps(
  store: Pick<Store, 'incrementCounter'>,
  caps: UsageCaps,
  user: string,
  now = Date.now(),
): Promise<CapDecision> {
  const costing = priced(caps);
  if (costing && caps.LLM_DAILY_COST_USD > 0) {
    const spent = await read(store, usageKeys.cost(now));
    if (spent >= caps.LLM_DAILY_COST_USD) return { capped: true, scope: 'daily-cost', spent, cap: caps.LLM_DAILY_COST_USD };
  }
  if (caps.LLM_USER_DAILY_TOKENS > 0) {
    const spent = await read(store, usageKeys.userTokens(now, user));
    if (spent >= caps.LLM_USER_DAILY_TOKENS) return { capped: true, scope: 'user-tokens', spent, cap: caps.LLM_USER_DAILY_TOKENS };
  }
  if (costing && caps.LLM_USER_DAILY_COST_USD > 0) {
    const spent = await read(store, usageKeys.userCost(now, user));
    if (spent >= caps.LLM_USER_DAILY_COST_USD) return { capped: true, scope: 'user-cost', spent, cap: caps.LLM_USER_DAILY_COST_USD };
  }
  return { capped: false };
}

/** Adds a request's use to the user's tokens and, when the model has a price, to the user's and the day's cost. */
export async function recordUsage(
  store: Pick<Store, 'incrementCounter'>,
  caps: UsageCaps,
  user: string,
  usage: Usage & { model?: string },
  now = Date.now(),
): Promise<{ tokens: number; costUsd: number }> {
  const tokens = Math.ceil(usage.inputTokens + usage.outputTokens);
  const cost = costUsd(caps, usage.model ?? configuredModel(caps), usage);
  const writes: Array<Promise<number>> = [];
  if (tokens > 0) writes.push(store.incrementCounter(usageKeys.userTokens(now, user), tokens, KEY_TTL_MS));
  if (cost > 0)
    writes.push(
      store.incrementCounter(usageKeys.userCost(now, user), cost, KEY_TTL_MS),
      store.incrementCounter(usageKeys.cost(now), cost, KEY_TTL_MS),
    );
  await Promise.all(writes);
  return { tokens, costUsd: cost };
}

/** Today's spend as `GET /api/llm/usage` reports it. */
export interface UsageReport {
  day: string;
  tokens: number;
  costUsd: number;
  topUsers: Array<{ user: string; tokens: number; costUsd: number }>;
  caps: {
    dailyTokens: number;
    dailyCostUsd: number;
    userDailyTokens: number;
    userDailyCostUsd: number;
    /** The configured model and its price; null when no price is known (cost is not tracked). */
    model: string | null;
    pricePerMTok: { input: number; output: number } | null;
  };
}

/** Today's global spend, the `top` users by tokens (and by cost), and the caps. */
export async function readUsage(
  store: Pick<Store, 'incrementCounter' | 'listCounters'>,
  caps: UsageCaps,
  top: number,
  now = Date.now(),
): Promise<UsageReport> {
  const userTokensPrefix = usageKeys.userTokens(now);
  const userCostPrefix = usageKeys.userCost(now);
  const [tokens, cost, byTokens, byCost] = await Promise.all([
    read(store, budgetKey(now)),
    read(store, usageKeys.cost(now)),
    store.listCounters(userTokensPrefix, top),
    store.listCounters(userCostPrefix, top),
  ]);
  const users = new Map<string, { user: string; tokens: number; costUsd: number }>();
  for (const entry of byTokens)
    if (entry.value > 0)
      users.set(entry.key.slice(userTokensPrefix.length), {
        user: entry.key.slice(userTokensPrefix.length),
        tokens: entry.value,
        costUsd: 0,
      });
  // A user in the top by cost but not by tokens still gets their token count (one read each, at most `top`).
  for (const entry of byCost) {
    if (!(entry.value > 0)) continue;
    const user = entry.key.slice(userCostPrefix.length);
    const known = users.get(user) ?? { user, tokens: await read(store, usageKeys.userTokens(now, user)), costUsd: 0 };
    known.costUsd = entry.value;
    users.set(user, known);
  }
  const missingCost = [...users.values()].filter((entry) => entry.costUsd === 0 && priced(caps));
  await Promise.all(missingCost.map(async (entry) => (entry.costUsd = await read(store, usageKeys.userCost(now, entry.user)))));
  return {
    day: day(now),
    tokens,
    costUsd: cost,
    topUsers: [...users.values()].sort((a, b) => b.tokens - a.tokens || b.costUsd - a.costUsd).slice(0, top),
    caps: {
      dailyTokens: caps.LLM_DAILY_TOKEN_BUDGET,
      dailyCostUsd: caps.LLM_DAILY_COST_USD,
      userDailyTokens: caps.LLM_USER_DAILY_TOKENS,
      userDailyCostUsd: caps.LLM_USER_DAILY_COST_USD,
      model: configuredModel(caps) ?? null,
      pricePerMTok: modelPrice(caps) ?? null,
    },
  };
}
