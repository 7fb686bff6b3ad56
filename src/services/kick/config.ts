import { z } from 'zod';
import { env } from '../../runtime/config.js';
import type { ServiceContext } from '../../runtime/service.js';
import { parseKickPublicKey } from '../../platforms/kick/index.js';

/** A Kick channel slug as it appears in kick.com/<slug>. */
const SLUG = /^[A-Za-z0-9_-]{1,64}$/;

/** The kick service's env. Unset KICK_CHANNELS means Kick is not configured (the service stays ready and says so). */
export const ConfigSchema = z.object({
  /** Comma-separated channel slugs. */
  KICK_CHANNELS: env.csv().refine((slugs) => slugs.every((slug) => SLUG.test(slug)), {
    message: 'must be channel slugs (letters, digits, _ and -), comma-separated',
  }),
  /** The Kick app's client id (https://kick.com/settings/developer). */
  KICK_CLIENT_ID: env.string(),
  /** Default https://api.kick.com. */
  KICK_API_URL: env.url(),
  /** Default https://id.kick.com. */
  KICK_AUTH_URL: env.url(),
  /** Kick's webhook public key (PEM; `\n` escapes allowed); unset: fetched from GET {KICK_API_URL}/public/v1/public-key. */
  KICK_PUBLIC_KEY: (env.string() as z.ZodType<string | undefined>).refine(
    (pem: string | undefined) => {
      if (pem === undefined) return true;
      try {
        parseKickPublicKey(pem);
        return true;
      } catch {
        return false;
      }
    },
    { message: 'must be a PEM public key (-----BEGIN PUBLIC KEY----- …)' },
  ),
  /** Webhooks whose timestamp is older than this are refused as replays (ms). */
  KICK_WEBHOOK_MAX_AGE_MS: env.int(5 * 60_000, { min: 1_000 }),
  /** How often the source status is republished and a failed start retried (ms). */
  SOURCE_HEARTBEAT_MS: env.int(30_000, { min: 50 }),
});
export type Config = z.infer<typeof ConfigSchema>;
export type Ctx = ServiceContext<Config>;
