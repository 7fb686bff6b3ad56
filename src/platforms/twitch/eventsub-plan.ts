/**
 * Which token creates which EventSub subscription (pure; no I/O).
 *
 * Twitch's rules for WebSocket subscriptions: each is created with a user token; types that read private
 * channel data (subscriptions, cheers, redemptions) need the broadcaster's own authorization;
 * `channel.follow` needs a moderator's (or the broadcaster's) token naming them as moderator; stream and
 * channel-update and raid events need none. Per client id and user, Twitch allows 3 connections, 300
 * enabled subscriptions per connection and a total cost of 10, where a subscription costs 0 when the
 * channel authorized the app (its own token, or a type that needs authorization) and 1 otherwise.
 */
import { ALL_EVENTSUB_KINDS, type EventSubKind, type EventSubTarget } from './eventsub.js';

/** A Twitch account whose token BitBrat holds. */
export interface TwitchIdentity {
  userId: string;
  login: string;
  scopes: readonly string[];
}

/** Types the bot's token can subscribe to for any channel (no authorization needed, cost 1 each). */
export const PUBLIC_EVENTSUB_KINDS: readonly EventSubKind[] = ['stream.online', 'stream.offline', 'channel.update', 'channel.raid'];

/** Twitch's EventSub WebSocket limits per client id and user. */
export const EVENTSUB_WS_LIMITS = { connectionsPerUser: 3, subscriptionsPerConnection: 300, maxTotalCost: 10 } as const;

/** How to connect the broadcaster, in words an operator can act on. */
export const CONNECT_BROADCASTER_HINT =
  'connect the broadcaster at /oauth/twitch/start?identity=broadcaster (or set the TWITCH_BROADCASTER_ACCESS_TOKEN and TWITCH_BROADCASTER_REFRESH_TOKEN secrets)';

export interface EventSubPlanInput {
  /** Every channel in TWITCH_CHANNELS, resolved to ids. */
  channels: ReadonlyArray<{ id: string; login: string }>;
  bot?: TwitchIdentity;
  broadcaster?: TwitchIdentity;
  /** Default every kind BitBrat listens to. */
  kinds?: readonly EventSubKind[];
}

export interface EventSubPlan {
  targets: EventSubTarget[];
  /** Types per channel that wait for the broadcaster's authorization. */
  waiting: Array<{ channel: string; kinds: EventSubKind[] }>;
  /** Subscriptions left out because a Twitch limit would be exceeded, and why. */
  overLimit: Array<{ channel: string; kind: EventSubKind; reason: string }>;
}

const FOLLOWER_SCOPES = ['moderator:read:followers', 'moderator:manage:followers'];

/** The subscriptions to create and which token creates each, within Twitch's limits. */
export function planEventSub(input: EventSubPlanInput): EventSubPlan {
  const kinds = input.kinds ?? ALL_EVENTSUB_KINDS;
  const candidates: Array<EventSubTarget & { cost: number }> = [];
  const waiting: EventSubPlan['waiting'] = [];
  for (const channel of input.channels) {
    const owner = [input.broadcaster, input.bot].find((identity) => identity?.userId === channel.id);
    const waits: EventSubKind[] = [];
    for (const kind of kinds) {
      if (owner) {
        candidates.push({ kind, broadcaster: channel, tokenUserId: owner.userId, cost: 0 });
      } else if (input.bot && PUBLIC_EVENTSUB_KINDS.includes(kind)) {
        candidates.push({ kind, broadcaster: channel, tokenUserId: input.bot.userId, cost: 1 });
      } else if (input.bot && kind === 'channel.follow' && input.bot.scopes.some((scope) => FOLLOWER_SCOPES.includes(scope))) {
        // Twitch checks the moderator status when creating it; a refusal is reported as waiting.
        candidates.push({ kind, broadcaster: channel, tokenUserId: input.bot.userId, cost: 0 });
      } else {
        waits.push(kind);
      }
    }
    if (waits.length) waiting.push({ channel: channel.login, kinds: waits });
  }

  // Stream state matters most: take online/offline for every channel before updates and raids.
  const priority = (kind: EventSubKind) => (kind === 'stream.online' || kind === 'stream.offline' ? 0 : kind === 'channel.update' ? 1 : 2);
  const ordered = candidates
    .map((candidate, index) => ({ candidate, index }))
    .sort((a, b) => a.candidate.cost - b.candidate.cost || priority(a.candidate.kind) - priority(b.candidate.kind) || a.index - b.index);
  const used = new Map<string, { cost: number; count: number }>();
  const kept = new Set<number>();
  const overLimit: EventSubPlan['overLimit'] = [];
  for (const { candidate, index } of ordered) {
    const budget = used.get(candidate.tokenUserId) ?? { cost: 0, count: 0 };
    // Twurple opens one socket per token user, so one connection's 300 subscriptions is the cap here.
    if (budget.count + 1 > EVENTSUB_WS_LIMITS.subscriptionsPerConnection) {
      overLimit.push({
        channel: candidate.broadcaster.login,
        kind: candidate.kind,
        reason: `more than ${EVENTSUB_WS_LIMITS.subscriptionsPerConnection} subscriptions on one connection`,
      });
      continue;
    }
    if (budget.cost + candidate.cost > EVENTSUB_WS_LIMITS.maxTotalCost) {
      overLimit.push({
        channel: candidate.broadcaster.login,
        kind: candidate.kind,
        reason: `the bot's token reached Twitch's max_total_cost of ${EVENTSUB_WS_LIMITS.maxTotalCost}`,
      });
      continue;
    }
    used.set(candidate.tokenUserId, { cost: budget.cost + candidate.cost, count: budget.count + 1 });
    kept.add(index);
  }
  const targets = candidates.filter((_, index) => kept.has(index)).map(({ cost: _cost, ...target }) => target);
  return { targets, waiting, overLimit };
}

/**
 * The health detail for a plan and what Twitch answered: what is subscribed, which types wait for the
 * broadcaster and how to connect it, and any limit hit (an error).
 */
export function describeEventSubPlan(
  plan: EventSubPlan,
  refused: ReadonlyArray<{ kind: string; channel: string; error: string; httpStatus?: number }> = [],
): { ok: boolean; detail: string } {
  const parts: string[] = [];
  const limitRefusals = refused.filter((refusal) => refusal.httpStatus === 429);
  const followRefusals = refused.filter((refusal) => refusal.kind === 'channel.follow' && refusal.httpStatus === 403);
  const otherRefusals = refused.filter((refusal) => !limitRefusals.includes(refusal) && !followRefusals.includes(refusal));
  if (plan.overLimit.length) {
    const byReason = new Map<string, string[]>();
    for (const item of plan.overLimit) byReason.set(item.reason, [...(byReason.get(item.reason) ?? []), `${item.kind} #${item.channel}`]);
    for (const [reason, items] of byReason)
      parts.push(
        `EventSub limit: ${reason}; not subscribed: ${items.join(', ')} (connect each channel's broadcaster, whose own subscriptions cost 0, or list fewer channels)`,
      );
  }
  for (const refusal of limitRefusals) parts.push(`EventSub limit: Twitch refused ${refusal.kind} #${refusal.channel}: ${refusal.error}`);
  const waiting = plan.waiting.map((item) => ({ ...item, kinds: [...item.kinds] }));
  for (const refusal of followRefusals) {
    const entry = waiting.find((item) => item.channel === refusal.channel);
    if (entry) entry.kinds.unshift('channel.follow');
    else waiting.push({ channel: refusal.channel, kinds: ['channel.follow'] });
  }
  for (const item of waiting) {
    const follow = followRefusals.some((refusal) => refusal.channel === item.channel)
      ? ' (channel.follow also works when the bot is a moderator there with moderator:read:followers)'
      : '';
    parts.push(`waiting for the broadcaster connection on #${item.channel}: ${item.kinds.join(', ')}${follow}`);
  }
  if (waiting.length) parts.push(CONNECT_BROADCASTER_HINT);
  for (const refusal of otherRefusals) parts.push(`${refusal.kind} #${refusal.channel} refused: ${refusal.error}`);
  return { ok: plan.overLimit.length === 0 && limitRefusals.length === 0, detail: parts.join('; ') };
}
