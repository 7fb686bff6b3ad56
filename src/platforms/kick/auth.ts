/**
 * Kick user tokens in the encrypted token store (`oauth_tokens`): `kick:bot` (chat) and
 * `kick:broadcaster` (event subscriptions), written by the OAuth flow or seeded from the
 * KICK_ACCESS_TOKEN / KICK_REFRESH_TOKEN secrets. A token about to expire, or one Kick answers 401 to, is
 * refreshed and the new pair written back with compare-and-set, so two instances refreshing at once keep
 * one pair and neither silently loses a write (Kick rotates the refresh token on every refresh).
 */
import { createHash } from 'node:crypto';
import type { OAuthToken, Store } from '../../store/index.js';
import { KickApiError, refreshKickToken } from './client.js';
import type { KickTokenResponse } from './wire.js';

/** Store ids of the two Kick identities. */
export const KickTokenId = { bot: 'kick:bot', broadcaster: 'kick:broadcaster' } as const;
export type KickTokenId = (typeof KickTokenId)[keyof typeof KickTokenId];

/** A token this close to its expiry is refreshed before use. */
const REFRESH_MARGIN_MS = 60_000;
const CAS_ATTEMPTS = 5;
const SEED_PREFIX = 'seed:';

export interface KickTokensOptions {
  store: Pick<Store, 'getToken' | 'updateTokenIf'>;
  clientId?: string;
  clientSecret?: string;
  authUrl?: string;
  /** From the secrets; seeds `kick:bot` when the store has none. */
  seed?: { accessToken?: string; refreshToken?: string };
  /** Called with every token value seen, so logs can scrub it. */
  registerSecret?: (value: string | undefined) => void;
  logger?: { info: (obj: unknown, msg?: string) => void; warn: (obj: unknown, msg?: string) => void };
  now?: () => number;
  fetch?: typeof fetch;
}

export interface KickTokens {
  /** Writes the seed secrets into the store when it holds no newer token (compare-and-set). */
  seed(): Promise<void>;
  /** The stored token (secret values included; never log it). */
  get(id: KickTokenId): Promise<OAuthToken | undefined>;
  /** A usable access token for `id`: refreshed first when it is about to expire; undefined when none is stored. */
  accessToken(id: KickTokenId): Promise<string | undefined>;
  /**
   * Refreshes `id` after Kick refused `staleAccessToken`. When another writer already replaced it, their
   * token is returned instead of refreshing again. Undefined when there is nothing to refresh with.
   */
  refresh(id: KickTokenId, staleAccessToken: string): Promise<string | undefined>;
}

const seedMark = (accessToken: string) => `${SEED_PREFIX}${createHash('sha256').update(accessToken).digest('hex').slice(0, 16)}`;

/** The store record for a token response. */
export function tokenRecord(
  id: string,
  response: KickTokenResponse,
  identity: { userId?: string; login?: string },
  now = Date.now(),
): Omit<OAuthToken, 'version'> {
  const expiresIn = Number(response.expires_in);
  return {
    id,
    accessToken: response.access_token,
    ...(response.refresh_token ? { refreshToken: response.refresh_token } : {}),
    scopes: (response.scope ?? '').split(/\s+/).filter(Boolean),
    expiresAt: Number.isFinite(expiresIn) && expiresIn > 0 ? new Date(now + expiresIn * 1000).toISOString() : null,
    obtainedAt: new Date(now).toISOString(),
    ...(identity.userId ? { userId: identity.userId } : {}),
    ...(identity.login ? { login: identity.login } : {}),
  };
}

/** Creates the token access for one instance (refreshes are serialized per identity within it). */
export function createKickTokens(options: KickTokensOptions): KickTokens {
  const now = options.now ?? Date.now;
  const inFlight = new Map<string, Promise<string | undefined>>();

  const get = async (id: KickTokenId) => {
    const token = await options.store.getToken(id);
    if (token) {
      options.registerSecret?.(token.accessToken);
      options.registerSecret?.(token.refreshToken);
    }
    return token;
  };

  const doRefresh = async (id: KickTokenId, staleAccessToken: string): Promise<string | undefined> => {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt += 1) {
      const current = await get(id);
      if (!current) return undefined;
      if (current.accessToken !== staleAccessToken) return current.accessToken;
      if (!current.refreshToken || !options.clientId || !options.clientSecret) return undefined;
      let response: KickTokenResponse;
      try {
        response = await refreshKickToken({
          authUrl: options.authUrl,
          clientId: options.clientId,
          clientSecret: options.clientSecret,
          refreshToken: current.refreshToken,
          fetch: options.fetch,
        });
      } catch (error) {
        // Another instance may have used the (rotated) refresh token first: its pair is in the store.
        const after = await get(id);
        if (after && after.accessToken !== staleAccessToken) return after.accessToken;
        if (error instanceof KickApiError && error.status >= 400 && error.status < 500) {
          options.logger?.warn(
            { tokenId: id, status: error.status },
            `Kick refused to refresh ${id}; authorize it again at /oauth/kick/start`,
          );
          return undefined;
        }
        throw error;
      }
      options.registerSecret?.(response.access_token);
      options.registerSecret?.(response.refresh_token);
      const record = tokenRecord(id, response, { userId: current.userId, login: current.login }, now());
      // Scopes missing from a refresh answer are the ones granted before.
      if (record.scopes.length === 0) record.scopes = current.scopes.filter((scope) => !scope.startsWith(SEED_PREFIX));
      const written = await options.store.updateTokenIf(current.version, record);
      if (written) {
        options.logger?.info({ tokenId: id, version: written.version }, 'refreshed Kick token stored');
        return written.accessToken;
      }
    }
    throw new Error(`refreshed Kick token for ${id} not stored: compare-and-set kept conflicting`);
  };

  const refresh = (id: KickTokenId, stale: string): Promise<string | undefined> => {
    const key = `${id}:${stale}`;
    const running = inFlight.get(key);
    if (running) return running;
    const started = doRefresh(id, stale).finally(() => inFlight.delete(key));
    inFlight.set(key, started);
    return started;
  };

  return {
    async seed() {
      const accessToken = options.seed?.accessToken;
      if (!accessToken) return;
      options.registerSecret?.(accessToken);
      options.registerSecret?.(options.seed?.refreshToken);
      const stored = await get(KickTokenId.bot);
      const mark = seedMark(accessToken);
      // A token the OAuth flow stored or a refresh produced (no seed mark) is newer than any secret; a
      // token seeded from a secret that has since changed is replaced by the new secret.
      const seeded = stored?.scopes.some((scope) => scope.startsWith(SEED_PREFIX));
      if (stored && (!seeded || stored.scopes.includes(mark))) return;
      await options.store.updateTokenIf(stored?.version ?? 0, {
        id: KickTokenId.bot,
        accessToken,
        ...(options.seed?.refreshToken ? { refreshToken: options.seed.refreshToken } : {}),
        scopes: [mark],
        expiresAt: null,
        obtainedAt: new Date(now()).toISOString(),
      });
    },
    get,
    async accessToken(id) {
      const token = await get(id);
      if (!token) return undefined;
      const expiresAt = token.expiresAt ? Date.parse(token.expiresAt) : NaN;
      if (!Number.isNaN(expiresAt) && expiresAt - now() < REFRESH_MARGIN_MS && token.refreshToken) {
        return (await refresh(id, token.accessToken)) ?? token.accessToken;
      }
      return token.accessToken;
    },
    refresh,
  };
}
