/**
 * Twurple's RefreshingAuthProvider, refreshing a user's token once however many callers ask at the same
 * time. Twurple refreshes for every request Twitch answered 401 and whenever chat finds a token lacking
 * its scopes, so with several requests in flight (EventSub creating its subscriptions while chat connects)
 * several refreshes set off with one refresh token. Twitch may rotate refresh tokens: then all but the
 * first get 400, and Twurple refuses that user from then on (it caches the failure) until a restart.
 *
 * Here concurrent callers share the one refresh in flight, and a refresh asked for shortly after one
 * finished (the 401 of a request that still carried the replaced token) gets the token that refresh
 * produced instead of replacing it again.
 */
// Twurple is loaded when a provider is created, so a platform without Twitch configured never loads it.
import type { AccessTokenWithUserId, RefreshingAuthProvider, RefreshingAuthProviderConfig } from '@twurple/auth';

/** How long a refreshed token answers further refresh requests for its user. */
export const DEFAULT_REFRESH_REUSE_MS = 10_000;

export interface RefreshOnceOptions {
  /** Default DEFAULT_REFRESH_REUSE_MS. */
  reuseMs?: number;
}

type User = Parameters<RefreshingAuthProvider['refreshAccessTokenForUser']>[0];

const userIdOf = (user: User): string => (typeof user === 'object' ? user.id : String(user));

/** A RefreshingAuthProvider that never runs two refreshes of one user's token at once. */
export async function createRefreshingAuthProvider(
  config: RefreshingAuthProviderConfig,
  options: RefreshOnceOptions = {},
): Promise<RefreshingAuthProvider> {
  const { RefreshingAuthProvider, accessTokenIsExpired } = await import('@twurple/auth');
  const reuseMs = options.reuseMs ?? DEFAULT_REFRESH_REUSE_MS;

  class RefreshOnceAuthProvider extends RefreshingAuthProvider {
    readonly #inFlight = new Map<string, Promise<AccessTokenWithUserId>>();
    readonly #recent = new Map<string, { token: AccessTokenWithUserId; at: number }>();

    override addUser(...args: Parameters<RefreshingAuthProvider['addUser']>): void {
      // A token given from outside replaces whatever the last refresh produced.
      this.#recent.delete(userIdOf(args[0]));
      super.addUser(...args);
    }

    override removeUser(user: User): void {
      this.#recent.delete(userIdOf(user));
      super.removeUser(user);
    }

    // Twurple's own callers (the API client on a 401, chat, an expired token) all come through here.
    override refreshAccessTokenForUser(user: User): Promise<AccessTokenWithUserId> {
      const userId = userIdOf(user);
      const inFlight = this.#inFlight.get(userId);
      if (inFlight) return inFlight;
      const recent = this.#recent.get(userId);
      if (recent && Date.now() - recent.at < reuseMs && !accessTokenIsExpired(recent.token)) return Promise.resolve(recent.token);
      const refresh = super
        .refreshAccessTokenForUser(user)
        .then((token) => {
          this.#recent.set(userId, { token, at: Date.now() });
          return token;
        })
        .finally(() => this.#inFlight.delete(userId));
      this.#inFlight.set(userId, refresh);
      return refresh;
    }
  }

  return new RefreshOnceAuthProvider(config);
}
