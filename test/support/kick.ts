/**
 * Kick test data as Kick's webhooks and API carry it: the streamer's channel (user 1001, `streamer`), a
 * viewer (user 3003), the bot (user 2002), and the webhook events BitBrat subscribes to.
 */
import type { FakeKick, FakeKickChannel, FakeKickSubscription } from '../fakes/kick.js';

/** The webhook events BitBrat subscribes to for every channel (all version 1). */
export const KICK_EVENTS = [
  'chat.message.sent',
  'channel.followed',
  'channel.subscription.new',
  'channel.subscription.renewal',
  'channel.subscription.gifts',
  'livestream.status.updated',
];

/** A chatter's colour and badges in a webhook. */
export interface KickIdentity {
  username_color: string;
  badges: Array<{ text: string; type: string; count?: number }>;
}

/** A Kick user as a webhook names one (broadcaster, sender, follower, …); the channel slug is the lower-cased name. */
export const kickUser = (userId: number, username: string, identity: KickIdentity | null, verified = false) => ({
  is_anonymous: false,
  user_id: userId,
  username,
  is_verified: verified,
  profile_picture: '',
  channel_slug: username.toLowerCase(),
  identity,
});

/** The streamer as a webhook names the broadcaster. */
export const KICK_BROADCASTER = kickUser(1001, 'Streamer', null, true);

/** The viewer `Viewer_Vic` (user 3003) with the chat identity given. */
export const kickViewer = (identity: KickIdentity) => kickUser(3003, 'Viewer_Vic', identity);

/** Gives the fake the streamer and the bot as users, and the streamer's channel with `stream` as its state. */
export function seedKickStreamer(fake: FakeKick, stream: FakeKickChannel['stream']): void {
  fake.users.set(1001, { user_id: 1001, name: 'Streamer' });
  fake.users.set(2002, { user_id: 2002, name: 'BratBot' });
  fake.channels.set('streamer', { broadcaster_user_id: 1001, slug: 'streamer', stream_title: 'Speedruns', stream });
}

/** A webhook subscription the fake holds from an earlier configuration. */
export const staleKickSubscription = (fake: FakeKick, id: string, broadcaster: number, event: string): FakeKickSubscription => ({
  id,
  app_id: fake.clientId,
  broadcaster_user_id: broadcaster,
  event,
  version: 1,
  method: 'webhook',
  created_at: '',
  updated_at: '',
});
