import { z } from 'zod';
import { env } from '../../runtime/config.js';
import type { ServiceContext } from '../../runtime/service.js';
import { DEFAULT_STREAM_POLL_MS } from '../../platforms/twitch/stream-status.js';

/** The ingress-egress env. */
export const ConfigSchema = z.object({
  TWITCH_BOT_USERNAME: env.string(),
  TWITCH_CHANNELS: env.csv(),
  /** e.g. ws://127.0.0.1:7000 (a local fake); default Twitch's wss endpoint. */
  TWITCH_IRC_URL: env.url(),
  TWITCH_BROADCASTER_LOGIN: env.string(),
  IRC_RECONNECT_INITIAL_MS: env.int(1_000, { min: 1 }),
  IRC_RECONNECT_MAX_MS: env.int(30_000, { min: 1 }),
  SOURCE_HEARTBEAT_MS: env.int(30_000, { min: 50 }),
  /** EventSub runs whenever Twitch credentials exist; `false` turns it off. */
  TWITCH_EVENTSUB_ENABLED: env.bool(true),
  /** How often stream title, game, viewers and start time are refreshed from Helix (ms). */
  STREAM_POLL_MS: env.int(DEFAULT_STREAM_POLL_MS, { min: 50 }),
});
export type Config = z.infer<typeof ConfigSchema>;
export type Ctx = ServiceContext<Config>;
