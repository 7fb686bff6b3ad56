import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { exchangeCode, getTokenInfo } from '@twurple/auth';
import { z } from 'zod';
import { BitBratError } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { defineService, type ServiceContext } from '../../runtime/service.js';
import { safeTwitchErrorMessage } from '../../platforms/twitch/token-store.js';

const SERVICE = 'oauth-flow';

/** Scopes asked for by default: chat for the bot, EventSub (follows, subs, bits, redemptions) and raid shoutouts for the broadcaster. */
export const DEFAULT_TWITCH_OAUTH_SCOPES =
  'chat:read chat:edit user:read:chat user:write:chat moderator:read:followers channel:read:subscriptions bits:read channel:read:redemptions moderator:manage:shoutouts';
export const TWITCH_AUTHORIZE_URL = 'https://id.twitch.tv/oauth2/authorize';
/** How long a /start link stays valid. */
export const STATE_TTL_MS = 10 * 60_000;
export const OAuthRole = { bot: 'bot', broadcaster: 'broadcaster' } as const;
export type OAuthRole = (typeof OAuthRole)[keyof typeof OAuthRole];
const ROLES: readonly OAuthRole[] = Object.values(OAuthRole);

const ConfigSchema = z.object({
  /** Space- or comma-separated. */
  TWITCH_OAUTH_SCOPES: env.string(DEFAULT_TWITCH_OAUTH_SCOPES),
  /** Must match a redirect URL of the Twitch app; default http://localhost:<PORT>/oauth/twitch/callback. */
  OAUTH_REDIRECT_URL: env.url(),
});
type OAuthFlowConfig = z.infer<typeof ConfigSchema>;

// ------------------------------------------------------------------------------------------- state

export type StateCheck = { ok: true; role: OAuthRole; nonce: string } | { ok: false; reason: string };

/** `base64url(json).base64url(hmac)`: the role and an expiry, signed so a callback cannot be forged. */
export function signState(secret: string, role: OAuthRole, now = Date.now(), ttlMs = STATE_TTL_MS): string {
  const body = Buffer.from(JSON.stringify({ r: role, e: now + ttlMs, n: randomBytes(12).toString('base64url') })).toString('base64url');
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

export function verifyState(secret: string, state: string | undefined, now = Date.now()): StateCheck {
  if (!state) return { ok: false, reason: 'the state parameter is missing' };
  const [body, signature, extra] = state.split('.');
  if (!body || !signature || extra !== undefined) return { ok: false, reason: 'the state parameter is malformed' };
  const expected = createHmac('sha256', secret).update(body).digest();
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'the state parameter has an invalid signature' };
  let parsed: { r?: unknown; e?: unknown; n?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as typeof parsed;
  } catch {
    return { ok: false, reason: 'the state parameter is malformed' };
  }
  if (!ROLES.includes(parsed.r as OAuthRole) || typeof parsed.e !== 'number' || typeof parsed.n !== 'string') return { ok: false, reason: 'the state parameter is malformed' };
  if (parsed.e < now) return { ok: false, reason: 'the authorization link expired; start again' };
  return { ok: true, role: parsed.r as OAuthRole, nonce: parsed.n };
}

// ---------------------------------------------------------------------------------------- settings

interface Settings {
  clientId?: string;
  clientSecret?: string;
  stateSecret?: string;
  scopes: string[];
}

const settingsByContext = new WeakMap<object, Promise<Settings>>();

/** Secrets are read once per service instance; a missing state secret is generated only in the embedded (single-process) topology. */
function settings(ctx: ServiceContext<OAuthFlowConfig>): Promise<Settings> {
  let loaded = settingsByContext.get(ctx);
  if (!loaded) {
    loaded = (async () => {
      const [clientId, clientSecret, configuredStateSecret] = await Promise.all([
        ctx.secrets.get('TWITCH_CLIENT_ID'),
        ctx.secrets.get('TWITCH_CLIENT_SECRET'),
        ctx.secrets.get('OAUTH_STATE_SECRET'),
      ]);
      const embedded = ctx.platform.STORE_DRIVER === 'pglite';
      const stateSecret = configuredStateSecret ?? (embedded ? randomBytes(32).toString('hex') : undefined);
      ctx.registerSecret(clientSecret);
      ctx.registerSecret(stateSecret);
      return { clientId, clientSecret, stateSecret, scopes: (ctx.config.TWITCH_OAUTH_SCOPES ?? DEFAULT_TWITCH_OAUTH_SCOPES).split(/[\s,]+/).filter(Boolean) };
    })();
    settingsByContext.set(ctx, loaded);
  }
  return loaded;
}

function redirectUri(app: FastifyInstance, ctx: ServiceContext<OAuthFlowConfig>): string {
  if (ctx.config.OAUTH_REDIRECT_URL) return ctx.config.OAUTH_REDIRECT_URL;
  const address = app.server.address() as AddressInfo | string | null;
  const port = address && typeof address === 'object' ? address.port : ctx.platform.PORT;
  return `http://localhost:${port}/oauth/twitch/callback`;
}

function requireConfigured(current: Settings, redirect: string): { clientId: string; clientSecret: string; stateSecret: string } {
  if (!current.clientId || !current.clientSecret) {
    throw new BitBratError(
      'NOT_CONFIGURED',
      `Twitch OAuth is not configured: register an application at https://dev.twitch.tv/console/apps with the OAuth redirect URL ${redirect}, ` +
        'then set the secrets TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET and restart.',
    );
  }
  if (!current.stateSecret) {
    throw new BitBratError('NOT_CONFIGURED', 'OAUTH_STATE_SECRET is not set; it is required when oauth-flow runs outside the embedded topology (any long random string, the same on every instance).');
  }
  return { clientId: current.clientId, clientSecret: current.clientSecret, stateSecret: current.stateSecret };
}

// -------------------------------------------------------------------------------------------- pages

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!);

function page(reply: FastifyReply, status: number, title: string, lines: string[]): FastifyReply {
  const body = lines.map((line) => `<p>${escapeHtml(line)}</p>`).join('\n');
  return reply
    .status(status)
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(`<!doctype html>\n<html><head><meta charset="utf-8"><title>BitBrat – ${escapeHtml(title)}</title></head>\n<body><h1>${escapeHtml(title)}</h1>\n${body}\n</body></html>\n`);
}

function tokenStatus(token: Awaited<ReturnType<ServiceContext['store']['getToken']>>) {
  if (!token) return { connected: false };
  return {
    connected: true,
    login: token.login ?? null,
    userId: token.userId ?? null,
    scopes: token.scopes,
    expiresAt: token.expiresAt ?? null,
    obtainedAt: token.obtainedAt,
    expired: token.expiresAt ? Date.parse(token.expiresAt) <= Date.now() : false,
    refreshable: Boolean(token.refreshToken),
  };
}

/**
 * Which account `/oauth/twitch/start` authorizes: `?identity=bot|broadcaster` (default `bot`); `?role=` is
 * accepted as an alias. Both given must agree.
 */
export function startIdentity(query: Record<string, unknown>): OAuthRole {
  const pick = (name: string): string | undefined => {
    const value = query[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw new BitBratError('BAD_REQUEST', `${name} must be given once`);
    return value.trim().toLowerCase();
  };
  const identity = pick('identity');
  const alias = pick('role');
  if (identity !== undefined && alias !== undefined && identity !== alias) {
    throw new BitBratError('BAD_REQUEST', `identity=${identity} and role=${alias} disagree; use identity only`);
  }
  const wanted = identity ?? alias ?? OAuthRole.bot;
  if (!ROLES.includes(wanted as OAuthRole)) throw new BitBratError('BAD_REQUEST', `identity must be one of ${ROLES.join(', ')}`);
  return wanted as OAuthRole;
}

/**
 * Twitch OAuth2 authorization-code flow: `/oauth/twitch/start?identity=bot|broadcaster` sends the operator
 * to Twitch, `/oauth/twitch/callback` exchanges the code and stores the token (encrypted at rest) as
 * `twitch:<role>`, `/oauth/twitch/status` shows who is connected. Token values never leave the store.
 */
export const service = defineService<OAuthFlowConfig>({
  name: SERVICE,
  configSchema: ConfigSchema,
  needsStore: true,
  consumers: () => ({}),

  async start(ctx) {
    const current = await settings(ctx);
    const configured = Boolean(current.clientId && current.clientSecret);
    // Not configured is a state to show, not a failure: the rest of the platform runs without Twitch.
    ctx.health.set('twitch-oauth', true, configured ? undefined : 'TWITCH_CLIENT_ID / TWITCH_CLIENT_SECRET not set', { configured });
  },

  routes(app, ctx) {
    app.get('/oauth/twitch/start', async (request, reply) => {
      const role = startIdentity(request.query as Record<string, unknown>);
      const redirect = redirectUri(app, ctx);
      const current = await settings(ctx);
      const { clientId, stateSecret } = requireConfigured(current, redirect);
      const url = new URL(TWITCH_AUTHORIZE_URL);
      url.searchParams.set('client_id', clientId);
      url.searchParams.set('redirect_uri', redirect);
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('scope', current.scopes.join(' '));
      url.searchParams.set('state', signState(stateSecret, role));
      // The bot and the broadcaster are different accounts: always let the operator pick one.
      url.searchParams.set('force_verify', 'true');
      return reply.header('cache-control', 'no-store').redirect(url.toString(), 302);
    });

    app.get('/oauth/twitch/callback', async (request, reply) => {
      const query = request.query as Record<string, string | undefined>;
      const redirect = redirectUri(app, ctx);
      const { clientId, clientSecret, stateSecret } = requireConfigured(await settings(ctx), redirect);
      const state = verifyState(stateSecret, query.state);
      if (!state.ok) return page(reply, 400, 'Authorization failed', [`Invalid state: ${state.reason}.`, 'Start again from /oauth/twitch/start.']);
      if (query.error) {
        return page(reply, 400, 'Authorization failed', [`Twitch did not authorize the ${state.role} account: ${query.error_description ?? query.error}.`]);
      }
      if (!query.code) return page(reply, 400, 'Authorization failed', ['The code parameter is missing.']);
      if (!(await ctx.store.claimKey('oauth-state', state.nonce, STATE_TTL_MS))) {
        return page(reply, 400, 'Authorization failed', ['This authorization link was already used. Start again from /oauth/twitch/start.']);
      }

      let token: Awaited<ReturnType<typeof exchangeCode>>;
      let info: Awaited<ReturnType<typeof getTokenInfo>>;
      try {
        token = await exchangeCode(clientId, clientSecret, query.code, redirect);
        info = await getTokenInfo(token.accessToken, clientId);
      } catch (error) {
        const message = safeTwitchErrorMessage(error);
        ctx.logger.warn({ role: state.role, error: message }, 'twitch oauth code exchange failed');
        return page(reply, 502, 'Authorization failed', [`Exchanging the code with Twitch failed (${message}).`, 'Start again from /oauth/twitch/start.']);
      }
      if (!info.userId) return page(reply, 400, 'Authorization failed', ['Twitch returned a token without a user.']);
      ctx.registerSecret(token.accessToken);
      ctx.registerSecret(token.refreshToken ?? undefined);

      const obtainedAt = new Date(token.obtainmentTimestamp);
      const expiresAt = token.expiresIn == null ? (info.expiryDate?.toISOString() ?? null) : new Date(obtainedAt.getTime() + token.expiresIn * 1000).toISOString();
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

      const wanted = (await settings(ctx)).scopes;
      const missing = wanted.filter((scope) => !scopes.includes(scope));
      return page(reply, 200, 'Twitch connected', [
        `The ${state.role} account ${info.userName ?? info.userId} is connected.`,
        `Scopes: ${scopes.join(' ') || '(none)'}.`,
        ...(missing.length > 0 ? [`Not granted: ${missing.join(' ')}; features that need them stay off.`] : []),
        'You can close this page. Services pick the token up from the store.',
      ]);
    });

    app.get('/oauth/twitch/status', async () => {
      const current = await settings(ctx);
      const [bot, broadcaster] = await Promise.all([ctx.store.getToken('twitch:bot'), ctx.store.getToken('twitch:broadcaster')]);
      return { configured: Boolean(current.clientId && current.clientSecret), bot: tokenStatus(bot), broadcaster: tokenStatus(broadcaster) };
    });
  },
});

export default service;
