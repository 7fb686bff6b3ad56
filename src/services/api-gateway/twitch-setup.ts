/**
 * What the dashboard's Twitch card needs to say exactly what is missing and what to do next: each
 * setting that is not set (by name), the bot and broadcaster accounts with their scopes and token
 * health, and where to start the OAuth flow. Token values never leave the store; the secrets are only
 * checked for presence.
 *
 * The gateway reports what its own process sees: in a split deployment ingress-egress and oauth-flow
 * must be given the same settings (the compose file and Terraform pass them to each).
 */
import type { OAuthToken } from '../../store/index.js';

/** One setting the Twitch connection needs that is not set. */
export interface MissingSetting {
  name: string;
  /** What it is for, in a few words. */
  why: string;
  kind: 'secret' | 'environment';
}

/** Health of a connected account's token. */
export interface TwitchAccount {
  identity: 'bot' | 'broadcaster';
  connected: boolean;
  login?: string | null;
  scopes?: string[];
  /** Scopes BitBrat asks for that this token lacks (features needing them stay off). */
  missingScopes?: string[];
  expiresAt?: string | null;
  obtainedAt?: string;
  /** `ok`, `expiring` (within an hour), `expired` (refreshable or not), or `missing`. */
  health: 'ok' | 'expiring' | 'expired' | 'missing';
  refreshable?: boolean;
  /** For humans: what the health means and what to do. */
  detail: string;
}

/** GET /api/twitch. */
export interface TwitchSetup {
  /** App credentials are set: the connect buttons can work. */
  appConfigured: boolean;
  missing: MissingSetting[];
  accounts: TwitchAccount[];
  /** Where the dashboard sends the owner to connect an account (oauth-flow). */
  connectUrls: { bot: string; broadcaster: string };
  /** The next thing to do, in one sentence. */
  nextStep: string;
}

export interface TwitchSetupInput {
  clientId: boolean;
  clientSecret: boolean;
  botUsername?: string | undefined;
  channels: readonly string[];
  /** A bot token given as a secret (TWITCH_ACCESS_TOKEN) instead of through the OAuth flow. */
  botTokenSecret: boolean;
  tokens: { bot?: OAuthToken | undefined; broadcaster?: OAuthToken | undefined };
  wantedScopes: readonly string[];
  now?: number;
}

const HOUR_MS = 3_600_000;

function account(identity: 'bot' | 'broadcaster', token: OAuthToken | undefined, wanted: readonly string[], now: number): TwitchAccount {
  if (!token) {
    const detail =
      identity === 'bot'
        ? 'not connected: the bot cannot read or send chat'
        : 'not connected: follows, subs, cheers, raids and redemptions need the broadcaster';
    return { identity, connected: false, health: 'missing', detail };
  }
  const expires = token.expiresAt ? Date.parse(token.expiresAt) : Number.NaN;
  const refreshable = Boolean(token.refreshToken);
  const health =
    Number.isFinite(expires) && expires <= now ? 'expired' : Number.isFinite(expires) && expires - now < HOUR_MS ? 'expiring' : 'ok';
  const missingScopes = wanted.filter((scope) => !token.scopes.includes(scope));
  const detail =
    health === 'expired'
      ? refreshable
        ? 'expired; it is refreshed on next use'
        : 'expired and cannot be refreshed: connect the account again'
      : health === 'expiring'
        ? refreshable
          ? 'expires within the hour; it is refreshed on use'
          : 'expires within the hour: connect the account again'
        : missingScopes.length
          ? `working, without ${missingScopes.join(', ')}`
          : 'working';
  return {
    identity,
    connected: true,
    login: token.login ?? null,
    scopes: token.scopes,
    missingScopes,
    expiresAt: token.expiresAt ?? null,
    obtainedAt: token.obtainedAt,
    health,
    refreshable,
    detail,
  };
}

/** The Twitch card's facts from presence checks and stored tokens (pure). */
export function twitchSetup(input: TwitchSetupInput): TwitchSetup {
  const now = input.now ?? Date.now();
  const missing: MissingSetting[] = [];
  if (!input.clientId)
    missing.push({
      name: 'TWITCH_CLIENT_ID',
      why: 'the Twitch application id (dev.twitch.tv → Your Console → Applications)',
      kind: 'secret',
    });
  if (!input.clientSecret) missing.push({ name: 'TWITCH_CLIENT_SECRET', why: 'the Twitch application secret', kind: 'secret' });
  if (!input.botUsername)
    missing.push({ name: 'TWITCH_BOT_USERNAME', why: 'the login of the account the bot chats as', kind: 'environment' });
  if (input.channels.length === 0)
    missing.push({ name: 'TWITCH_CHANNELS', why: 'the channels to join, comma-separated', kind: 'environment' });
  const accounts = [
    account('bot', input.tokens.bot, input.wantedScopes, now),
    account('broadcaster', input.tokens.broadcaster, input.wantedScopes, now),
  ];
  if (input.botTokenSecret && !accounts[0]!.connected) {
    accounts[0] = {
      identity: 'bot',
      connected: true,
      health: 'ok',
      detail: 'given as the TWITCH_ACCESS_TOKEN secret (not through the dashboard)',
    };
  }
  const appConfigured = input.clientId && input.clientSecret;
  const dead = (entry: TwitchAccount) => entry.health === 'expired' && !entry.refreshable;
  // Chat first (the bot), then platform events (the broadcaster); a token that cannot refresh is as good as none.
  const nextStep = missing.length
    ? `Set ${missing.map((setting) => setting.name).join(', ')} and restart.`
    : !accounts[0]!.connected
      ? 'Connect the bot account.'
      : dead(accounts[0]!)
        ? 'Connect the bot account again: its token expired.'
        : !accounts[1]!.connected
          ? 'Connect the broadcaster account for follows, subs, cheers, raids and redemptions.'
          : dead(accounts[1]!)
            ? 'Connect the broadcaster account again: its token expired.'
            : 'Twitch is set up.';
  return {
    appConfigured,
    missing,
    accounts,
    connectUrls: { bot: '/oauth/twitch/start?identity=bot', broadcaster: '/oauth/twitch/start?identity=broadcaster' },
    nextStep,
  };
}
