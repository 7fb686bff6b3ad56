import type { exchangeCode, getTokenInfo } from '@twurple/auth';
import { defineService } from '../../runtime/service.js';
import { syncEndedSessions } from '../api-gateway/auth.js';
import { safeTwitchErrorMessage } from '../../platforms/twitch/token-store.js';
import { registerKickOAuth } from './kick.js';
import { STATE_TTL_MS, signState, startIdentity, verifyState } from './oauth-state.js';
import { parseCallbackQuery } from './callback-query.js';
import { bindBrowser, browserMatches, clearBinding, loadOwnerAuthenticator, requirePrincipal } from './owner.js';
import { page, tokenStatus } from './pages.js';
import {
  ConfigSchema,
  TWITCH_AUTHORIZE_URL,
  loadSettings,
  redirectUri,
  requireConfigured,
  type OAuthFlowConfig,
  type Settings,
} from './settings.js';

export { OAuthRole, STATE_TTL_MS, signState, startIdentity, verifyState, type StateCheck } from './oauth-state.js';
export { DEFAULT_TWITCH_OAUTH_SCOPES, TWITCH_AUTHORIZE_URL } from './settings.js';

const SERVICE = 'oauth-flow';

/**
 * Twitch OAuth2 authorization-code flow: `/oauth/twitch/start?identity=bot|broadcaster` sends the operator
 * to Twitch, `/oauth/twitch/callback` exchanges the code and stores the token (encrypted at rest) as
 * `twitch:<role>`, `/oauth/twitch/status` shows who is connected. Token values never leave the store.
 */
export const service = defineService<OAuthFlowConfig>({
  name: SERVICE,
  configSchema: ConfigSchema,
  needsStore: true,
  setup(ctx) {
    // Read once per instance, on first use: a generated state secret must stay the same for its callbacks.
    let loaded: Promise<Settings> | undefined;
    const settings = () => (loaded ??= loadSettings(ctx));
    let owners: ReturnType<typeof loadOwnerAuthenticator> | undefined;
    // Each use first takes in the sessions signed out on the dashboard (in the store, see api-gateway/auth.ts),
    // so a signed-out cookie cannot start an OAuth flow; the OAuth routes are used rarely.
    const authenticator = async () => {
      const current = await (owners ??= loadOwnerAuthenticator(ctx));
      await syncEndedSessions(ctx.store, current);
      return current;
    };
    return {
      consumers: {},

      async start() {
        const current = await settings();
        const configured = Boolean(current.clientId && current.clientSecret);
        // Not configured is a state to show, not a failure: the rest of the platform runs without Twitch.
        ctx.health.set('twitch-oauth', true, configured ? undefined : 'TWITCH_CLIENT_ID / TWITCH_CLIENT_SECRET not set', { configured });
      },

      routes(app) {
        registerKickOAuth(app, ctx, async () => (await settings()).stateSecret, authenticator);
        app.get('/oauth/twitch/start', async (request, reply) => {
          requirePrincipal(await authenticator(), request, 'owner');
          const role = startIdentity(request.query as Record<string, unknown>);
          const redirect = redirectUri(app, ctx);
          const current = await settings();
          const { clientId, stateSecret } = requireConfigured(current, redirect);
          const url = new URL(TWITCH_AUTHORIZE_URL);
          url.searchParams.set('client_id', clientId);
          url.searchParams.set('redirect_uri', redirect);
          url.searchParams.set('response_type', 'code');
          url.searchParams.set('scope', current.scopes.join(' '));
          url.searchParams.set('state', signState(stateSecret, role, bindBrowser(request, reply, STATE_TTL_MS)));
          // The bot and the broadcaster are different accounts: always let the operator pick one.
          url.searchParams.set('force_verify', 'true');
          // The start URL may carry ?token=: keep it out of any Referer.
          return reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').redirect(url.toString(), 302);
        });

        app.get('/oauth/twitch/callback', async (request, reply) => {
          const query = parseCallbackQuery(request.query);
          const redirect = redirectUri(app, ctx);
          const { clientId, clientSecret, stateSecret } = requireConfigured(await settings(), redirect);
          const state = verifyState(stateSecret, query.state);
          if (!state.ok)
            return page(reply, 400, 'Authorization failed', [`Invalid state: ${state.reason}.`, 'Start again from /oauth/twitch/start.']);
          if (!browserMatches(request, state.binding)) {
            ctx.logger.warn({ role: state.role }, 'twitch oauth callback refused: the state was started in another browser');
            return page(reply, 400, 'Authorization failed', [
              'This authorization was started in another browser (or its cookie expired).',
              'Start again from /oauth/twitch/start in this browser.',
            ]);
          }
          clearBinding(reply);
          if (query.error) {
            return page(reply, 400, 'Authorization failed', [
              `Twitch did not authorize the ${state.role} account: ${query.error_description ?? query.error}.`,
            ]);
          }
          if (!query.code) return page(reply, 400, 'Authorization failed', ['The code parameter is missing.']);
          if (!(await ctx.store.claimKey('oauth-state', state.nonce, STATE_TTL_MS))) {
            return page(reply, 400, 'Authorization failed', [
              'This authorization link was already used. Start again from /oauth/twitch/start.',
            ]);
          }

          let token: Awaited<ReturnType<typeof exchangeCode>>;
          let info: Awaited<ReturnType<typeof getTokenInfo>>;
          try {
            // Twurple is loaded when a flow completes, not at start-up (it is large and rarely needed).
            const twurple = await import('@twurple/auth');
            token = await twurple.exchangeCode(clientId, clientSecret, query.code, redirect);
            info = await twurple.getTokenInfo(token.accessToken, clientId);
          } catch (error) {
            const message = safeTwitchErrorMessage(error);
            ctx.logger.warn({ role: state.role, error: message }, 'twitch oauth code exchange failed');
            return page(reply, 502, 'Authorization failed', [
              `Exchanging the code with Twitch failed (${message}).`,
              'Start again from /oauth/twitch/start.',
            ]);
          }
          if (!info.userId) return page(reply, 400, 'Authorization failed', ['Twitch returned a token without a user.']);
          ctx.registerSecret(token.accessToken);
          ctx.registerSecret(token.refreshToken ?? undefined);

          const obtainedAt = new Date(token.obtainmentTimestamp);
          const expiresAt =
            token.expiresIn == null
              ? (info.expiryDate?.toISOString() ?? null)
              : new Date(obtainedAt.getTime() + token.expiresIn * 1000).toISOString();
          const scopes = token.scope.length > 0 ? token.scope : info.scopes;
          await ctx.store.putToken({
            id: `twitch:${state.role}`,
            accessToken: token.accessToken,
            ...(token.refreshToken ? { refreshToken: token.refreshToken } : {}),
            scopes,
            expiresAt,
            obtainedAt: obtainedAt.toISOString(),
            userId: info.userId,
            ...(info.userName ? { login: info.userName } : {}),
          });
          ctx.logger.info({ role: state.role, login: info.userName, scopes }, 'twitch account authorized');

          const wanted = (await settings()).scopes;
          const missing = wanted.filter((scope) => !scopes.includes(scope));
          return page(reply, 200, 'Twitch connected', [
            `The ${state.role} account ${info.userName ?? info.userId} is connected.`,
            `Scopes: ${scopes.join(' ') || '(none)'}.`,
            ...(missing.length > 0 ? [`Not granted: ${missing.join(' ')}; features that need them stay off.`] : []),
            'You can close this page. Services pick the token up from the store.',
          ]);
        });

        app.get('/oauth/twitch/status', async (request) => {
          requirePrincipal(await authenticator(), request, 'viewer');
          const current = await settings();
          const [bot, broadcaster] = await Promise.all([ctx.store.getToken('twitch:bot'), ctx.store.getToken('twitch:broadcaster')]);
          return {
            configured: Boolean(current.clientId && current.clientSecret),
            bot: tokenStatus(bot),
            broadcaster: tokenStatus(broadcaster),
          };
        });
      },
    };
  },
});

export default service;
