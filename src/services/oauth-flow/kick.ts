/**
 * Kick's OAuth 2.1 authorization-code flow with PKCE (S256), for the bot or the broadcaster account.
 * `/oauth/kick/start` needs an owner token of the gateway (API_GATEWAY_TOKENS, or the embedded token file)
 * and sends the operator to id.kick.com; the signed state carries the identity, an expiry, a nonce and the
 * hash of a cookie nonce, so the callback is single-use and only finishes in the browser that started it.
 * The PKCE verifier never leaves the server: it is derived from the state secret and the state's nonce,
 * and only its S256 challenge goes to Kick. Tokens are stored encrypted as `kick:<identity>`.
 */
import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { BitBratError } from '../../core/index.js';
import type { ServiceContext } from '../../runtime/service.js';
import {
  DEFAULT_KICK_SCOPES,
  createKickClient,
  createPkcePair,
  exchangeKickCode,
  kickAuthorizeUrl,
  tokenRecord,
  KickTokenId,
} from '../../platforms/kick/index.js';
import type { Authenticator } from '../api-gateway/auth.js';
import { type OAuthRole, STATE_TTL_MS, signStateWithNonce, startIdentity, verifyState, type StateCheck } from './oauth-state.js';
import { KICK_BINDING, bindBrowser, browserMatches, clearBinding, requirePrincipal } from './owner.js';
import { page, tokenStatus } from './pages.js';
import type { OAuthFlowConfig } from './settings.js';

export { KICK_SESSION_COOKIE } from './owner.js';

export type KickStateCheck = StateCheck;

const hmac = (secret: string, text: string) => createHmac('sha256', secret).update(text).digest();

/** A signed state with purpose `kick`, so a Twitch state cannot be replayed here. */
export function signKickState(
  secret: string,
  role: OAuthRole,
  binding: string,
  now = Date.now(),
  ttlMs = STATE_TTL_MS,
): { state: string; nonce: string } {
  return signStateWithNonce(secret, role, binding, now, ttlMs, 'kick');
}

/** Checks a state made by signKickState: signature, purpose, shape and expiry. */
export function verifyKickState(secret: string, state: string | undefined, now = Date.now()): KickStateCheck {
  return verifyState(secret, state, now, 'kick');
}

/** The PKCE verifier of a state's nonce: 43 base64url characters only this server can compute. */
export function kickPkceVerifier(stateSecret: string, nonce: string): string {
  return hmac(stateSecret, `kick-pkce:${nonce}`).toString('base64url');
}

interface KickSettings {
  clientId?: string;
  clientSecret?: string;
  scopes: string[];
}

/**
 * The routes of the Kick flow, registered by the oauth-flow service. `stateSecret` is the service's;
 * `authenticator` is the owner check the Twitch flow uses too.
 */
export function registerKickOAuth(
  app: FastifyInstance,
  ctx: ServiceContext<OAuthFlowConfig>,
  stateSecret: () => Promise<string | undefined>,
  authenticator: () => Promise<Authenticator>,
): void {
  let loaded: Promise<KickSettings> | undefined;
  const settings = () =>
    (loaded ??= (async () => {
      const clientSecret = await ctx.secrets.get('KICK_CLIENT_SECRET');
      ctx.registerSecret(clientSecret);
      return {
        clientId: ctx.config.KICK_CLIENT_ID,
        clientSecret,
        scopes: (ctx.config.KICK_OAUTH_SCOPES ?? DEFAULT_KICK_SCOPES).split(/[\s,]+/).filter(Boolean),
      };
    })());
  const requireOwner = async (request: Parameters<typeof requirePrincipal>[1], minimum: 'viewer' | 'owner') =>
    requirePrincipal(await authenticator(), request, minimum, KICK_BINDING);

  const redirectUri = () => {
    if (ctx.config.KICK_OAUTH_REDIRECT_URL) return ctx.config.KICK_OAUTH_REDIRECT_URL;
    const address = app.server.address() as AddressInfo | string | null;
    const port = address && typeof address === 'object' ? address.port : ctx.platform.PORT;
    return `http://localhost:${port}/oauth/kick/callback`;
  };

  const configured = async (): Promise<{ clientId: string; clientSecret: string; secret: string }> => {
    const current = await settings();
    if (!current.clientId || !current.clientSecret) {
      throw new BitBratError(
        'NOT_CONFIGURED',
        `Kick OAuth is not configured: create an app at https://kick.com/settings/developer with the redirect URL ${redirectUri()}, then set KICK_CLIENT_ID and the KICK_CLIENT_SECRET secret and restart.`,
      );
    }
    const secret = await stateSecret();
    if (!secret)
      throw new BitBratError(
        'NOT_CONFIGURED',
        'OAUTH_STATE_SECRET is not set; it is required when oauth-flow runs outside the embedded topology.',
      );
    return { clientId: current.clientId, clientSecret: current.clientSecret, secret };
  };

  app.get('/oauth/kick/start', async (request, reply) => {
    await requireOwner(request, 'owner');
    const role = startIdentity(request.query as Record<string, unknown>);
    const { clientId, secret } = await configured();
    const { state, nonce } = signKickState(secret, role, bindBrowser(request, reply, STATE_TTL_MS, KICK_BINDING));
    const pkce = createPkcePair(kickPkceVerifier(secret, nonce));
    const url = kickAuthorizeUrl({
      authUrl: ctx.config.KICK_AUTH_URL,
      clientId,
      redirectUri: redirectUri(),
      scopes: (await settings()).scopes,
      state,
      challenge: pkce.challenge,
    });
    // The start URL may carry ?token=: keep it out of any Referer.
    return reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').redirect(url, 302);
  });

  app.get('/oauth/kick/callback', async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    for (const name of ['code', 'state', 'error', 'error_description']) {
      if (query[name] !== undefined && typeof query[name] !== 'string')
        return page(reply, 400, 'Authorization failed', [`The ${name} parameter must be given once.`]);
    }
    const { clientId, clientSecret, secret } = await configured();
    const state = verifyKickState(secret, query.state as string | undefined);
    if (!state.ok)
      return page(reply, 400, 'Authorization failed', [`Invalid state: ${state.reason}.`, 'Start again from /oauth/kick/start.']);
    if (!browserMatches(request, state.binding, KICK_BINDING)) {
      ctx.logger.warn({ role: state.role }, 'kick oauth callback refused: started in another browser');
      return page(reply, 400, 'Authorization failed', [
        'This authorization was started in another browser (or its cookie expired).',
        'Start again from /oauth/kick/start in this browser.',
      ]);
    }
    clearBinding(reply, KICK_BINDING);
    if (query.error)
      return page(reply, 400, 'Authorization failed', [
        `Kick did not authorize the ${state.role} account: ${String(query.error_description ?? query.error)}.`,
      ]);
    if (!query.code) return page(reply, 400, 'Authorization failed', ['The code parameter is missing.']);
    if (!(await ctx.store.claimKey('oauth-state', `kick:${state.nonce}`, STATE_TTL_MS))) {
      return page(reply, 400, 'Authorization failed', ['This authorization link was already used. Start again from /oauth/kick/start.']);
    }
    let record: ReturnType<typeof tokenRecord>;
    try {
      const response = await exchangeKickCode({
        authUrl: ctx.config.KICK_AUTH_URL,
        clientId,
        clientSecret,
        code: query.code as string,
        redirectUri: redirectUri(),
        verifier: kickPkceVerifier(secret, state.nonce),
      });
      ctx.registerSecret(response.access_token);
      ctx.registerSecret(response.refresh_token);
      const client = createKickClient({
        apiUrl: ctx.config.KICK_API_URL,
        accessToken: async () => response.access_token,
        tracing: ctx.tracing,
      });
      const [user] = await client.getUsers();
      record = tokenRecord(state.role === 'bot' ? KickTokenId.bot : KickTokenId.broadcaster, response, {
        ...(user ? { userId: String(user.user_id), login: user.name } : {}),
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      ctx.logger.warn({ role: state.role, error: message }, 'kick oauth code exchange failed');
      return page(reply, 502, 'Authorization failed', [
        `Exchanging the code with Kick failed (${message}).`,
        'Start again from /oauth/kick/start.',
      ]);
    }
    await ctx.store.putToken(record);
    ctx.logger.info({ role: state.role, login: record.login, scopes: record.scopes }, 'kick account authorized');
    return page(reply, 200, 'Kick connected', [
      `The ${state.role} account ${record.login ?? record.userId ?? ''} is connected.`,
      `Scopes: ${record.scopes.join(' ') || '(none)'}.`,
      'You can close this page. The kick service picks the token up on its next start or retry.',
    ]);
  });

  app.get('/oauth/kick/status', async (request) => {
    await requireOwner(request, 'viewer');
    const current = await settings();
    const [bot, broadcaster] = await Promise.all([ctx.store.getToken(KickTokenId.bot), ctx.store.getToken(KickTokenId.broadcaster)]);
    return { configured: Boolean(current.clientId && current.clientSecret), bot: tokenStatus(bot), broadcaster: tokenStatus(broadcaster) };
  });
}
