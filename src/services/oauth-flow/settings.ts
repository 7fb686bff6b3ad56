import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BitBratError } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import type { ServiceContext } from '../../runtime/service.js';

/** Scopes asked for by default: chat for the bot, EventSub (follows, subs, bits, redemptions) and raid shoutouts for the broadcaster, deleting messages and timeouts/bans for moderation (the bot, as a moderator, or the broadcaster). */
export const DEFAULT_TWITCH_OAUTH_SCOPES =
  'chat:read chat:edit user:read:chat user:write:chat moderator:read:followers channel:read:subscriptions bits:read channel:read:redemptions moderator:manage:shoutouts moderator:manage:chat_messages moderator:manage:banned_users';
export const TWITCH_AUTHORIZE_URL = 'https://id.twitch.tv/oauth2/authorize';

/** The oauth-flow env. */
export const ConfigSchema = z.object({
  /** Space- or comma-separated. */
  TWITCH_OAUTH_SCOPES: env.string(DEFAULT_TWITCH_OAUTH_SCOPES),
  /** Must match a redirect URL of the Twitch app; default http://localhost:<PORT>/oauth/twitch/callback. */
  OAUTH_REDIRECT_URL: env.url(),
  /** The Kick app's client id; unset: the Kick flow says what to configure. */
  KICK_CLIENT_ID: env.string(),
  /** Default https://id.kick.com. */
  KICK_AUTH_URL: env.url(),
  /** Default https://api.kick.com (the flow reads the authorized user from it). */
  KICK_API_URL: env.url(),
  /** Space- or comma-separated; default `user:read channel:read chat:write events:subscribe`. */
  KICK_OAUTH_SCOPES: env.string(),
  /** Must match a redirect URL of the Kick app; default http://localhost:<PORT>/oauth/kick/callback. */
  KICK_OAUTH_REDIRECT_URL: env.url(),
});
export type OAuthFlowConfig = z.infer<typeof ConfigSchema>;

/** The Twitch app's credentials and the state secret, read once per instance. */
export interface Settings {
  clientId?: string;
  clientSecret?: string;
  stateSecret?: string;
  scopes: string[];
}

/** Reads the secrets; a missing state secret is generated only in the embedded (single-process) topology. */
export async function loadSettings(ctx: ServiceContext<OAuthFlowConfig>): Promise<Settings> {
  const [clientId, clientSecret, configuredStateSecret] = await Promise.all([
    ctx.secrets.get('TWITCH_CLIENT_ID'),
    ctx.secrets.get('TWITCH_CLIENT_SECRET'),
    ctx.secrets.get('OAUTH_STATE_SECRET'),
  ]);
  const embedded = ctx.platform.STORE_DRIVER === 'pglite';
  const stateSecret = configuredStateSecret ?? (embedded ? randomBytes(32).toString('hex') : undefined);
  ctx.registerSecret(clientSecret);
  ctx.registerSecret(stateSecret);
  return {
    clientId,
    clientSecret,
    stateSecret,
    scopes: (ctx.config.TWITCH_OAUTH_SCOPES ?? DEFAULT_TWITCH_OAUTH_SCOPES).split(/[\s,]+/).filter(Boolean),
  };
}

/** Where Twitch sends the operator back: OAUTH_REDIRECT_URL, else this server's callback on localhost. */
export function redirectUri(app: FastifyInstance, ctx: ServiceContext<OAuthFlowConfig>): string {
  if (ctx.config.OAUTH_REDIRECT_URL) return ctx.config.OAUTH_REDIRECT_URL;
  const address = app.server.address() as AddressInfo | string | null;
  const port = address && typeof address === 'object' ? address.port : ctx.platform.PORT;
  return `http://localhost:${port}/oauth/twitch/callback`;
}

/** The credentials, or a NOT_CONFIGURED error that says what to set up. */
export function requireConfigured(current: Settings, redirect: string): { clientId: string; clientSecret: string; stateSecret: string } {
  if (!current.clientId || !current.clientSecret) {
    throw new BitBratError(
      'NOT_CONFIGURED',
      `Twitch OAuth is not configured: register an application at https://dev.twitch.tv/console/apps with the OAuth redirect URL ${redirect}, ` +
        'then set the secrets TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET and restart.',
    );
  }
  if (!current.stateSecret) {
    throw new BitBratError(
      'NOT_CONFIGURED',
      'OAUTH_STATE_SECRET is not set; it is required when oauth-flow runs outside the embedded topology (any long random string, the same on every instance).',
    );
  }
  return { clientId: current.clientId, clientSecret: current.clientSecret, stateSecret: current.stateSecret };
}
