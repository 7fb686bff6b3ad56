/**
 * Twitch shoutouts (Helix `POST /chat/shoutouts`) within Twitch's limits: one per channel every 2 minutes,
 * and the same target at most once every 60 minutes. The limits are claimed in the store first, so several
 * instances never send one Twitch would refuse, and a refusal is a value, never thrown.
 */
import type { Tracing } from '../../runtime/tracing.js';
import type { Store } from '../../store/index.js';
import { createStoredTokenSources } from './auth.js';
import { TwitchTokenId, safeTwitchErrorMessage } from './token-store.js';

/** Twitch's shoutout cooldowns. */
export const SHOUTOUT_LIMITS = { globalMs: 2 * 60_000, perTargetMs: 60 * 60_000 } as const;

export type ShoutoutResult = { sent: true; moderatorId: string } | { sent: false; reason: string };

export interface ShoutoutSender {
  /** Shouts out `to` in the channel `from`. */
  shoutout(from: { id: string; login: string }, to: { id: string; login: string }): Promise<ShoutoutResult>;
}

/** A sender using the broadcaster's stored token for its own channel, else the bot's (it must be a moderator with moderator:manage:shoutouts). */
export function createShoutoutSender(options: {
  clientId?: string;
  clientSecret?: string;
  store: Store;
  logger: { warn: (obj: unknown, msg?: string) => void };
  /** The host's tracer: the Helix calls are then spans. */
  tracing?: Tracing;
}): ShoutoutSender {
  const sources = createStoredTokenSources(options, [TwitchTokenId.broadcaster, TwitchTokenId.bot]);
  return {
    async shoutout(from, to) {
      if (!options.clientId || !options.clientSecret)
        return { sent: false, reason: 'twitch is not configured (TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET)' };
      if (from.id === to.id) return { sent: false, reason: 'a channel cannot shout itself out' };
      const clientId = options.clientId;
      // Twurple comes with the first shoutout, not at start-up: most channels never send one.
      const [{ createHelixClient }, { createIdentityAuthProvider, heldIdentities }] = await Promise.all([
        import('./helix.js'),
        import('./connect-eventsub.js'),
      ]);
      const identities = await heldIdentities(sources, clientId);
      const moderator =
        identities.find((identity) => identity.userId === from.id) ??
        identities.find((identity) => identity.scopes.includes('moderator:manage:shoutouts'));
      if (!moderator)
        return {
          sent: false,
          reason: 'no connected token may send shoutouts (needs the broadcaster, or the bot as moderator with moderator:manage:shoutouts)',
        };
      if (!(await options.store.claimKey('twitch-shoutout', `channel:${from.id}`, SHOUTOUT_LIMITS.globalMs)))
        return { sent: false, reason: 'Twitch allows one shoutout every 2 minutes' };
      if (!(await options.store.claimKey('twitch-shoutout', `target:${from.id}:${to.id}`, SHOUTOUT_LIMITS.perTargetMs)))
        return { sent: false, reason: `#${to.login} was shouted out within the last 60 minutes` };
      const apiClient = createHelixClient({ authProvider: createIdentityAuthProvider(clientId, identities), tracing: options.tracing });
      try {
        await apiClient.asUser(moderator.userId, async (ctx) => await ctx.chat.shoutoutUser(from.id, to.id));
        return { sent: true, moderatorId: moderator.userId };
      } catch (error) {
        const reason = safeTwitchErrorMessage(error);
        options.logger.warn({ from: from.login, to: to.login, error: reason }, 'twitch shoutout failed');
        return { sent: false, reason };
      }
    },
  };
}
