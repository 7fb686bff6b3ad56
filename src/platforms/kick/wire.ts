/**
 * Kick's wire shapes, as its public API documentation lays them out (docs.kick.com). Kept apart from the
 * rest of the connector and converted to envelopes in normalize.ts.
 */

/** A user as webhook payloads carry it (broadcaster, sender, follower, subscriber, gifter, giftee). */
export interface KickWireUser {
  is_anonymous?: boolean;
  user_id: number | null;
  username: string | null;
  is_verified?: boolean | null;
  profile_picture?: string | null;
  channel_slug?: string | null;
  identity?: { username_color?: string; badges?: Array<{ text: string; type: string; count?: number }> } | null;
}

/** `chat.message.sent` v1. */
export interface KickChatMessageEvent {
  message_id: string;
  replies_to?: { message_id: string; content?: string; sender?: KickWireUser } | null;
  broadcaster: KickWireUser;
  sender: KickWireUser;
  content: string;
  emotes?: Array<{ emote_id: string; positions: Array<{ s: number; e: number }> }> | null;
  created_at?: string;
}

/** `channel.followed` v1. */
export interface KickFollowEvent {
  broadcaster: KickWireUser;
  follower: KickWireUser;
}

/** `channel.subscription.new` and `channel.subscription.renewal` v1. */
export interface KickSubscriptionEvent {
  broadcaster: KickWireUser;
  subscriber: KickWireUser;
  /** Months subscribed. */
  duration: number;
  created_at?: string;
  expires_at?: string;
}

/** `channel.subscription.gifts` v1. */
export interface KickSubscriptionGiftsEvent {
  broadcaster: KickWireUser;
  gifter: KickWireUser;
  giftees: KickWireUser[];
  created_at?: string;
  expires_at?: string;
}

/** `livestream.status.updated` v1. */
export interface KickLivestreamStatusEvent {
  broadcaster: KickWireUser;
  is_live: boolean;
  title?: string | null;
  started_at?: string | null;
  ended_at?: string | null;
}

/** `GET /public/v1/users`. */
export interface KickUser {
  user_id: number;
  name: string;
  email?: string;
  profile_picture?: string;
}

/** `GET /public/v1/channels`. */
export interface KickChannel {
  broadcaster_user_id: number;
  slug: string;
  stream_title?: string;
  channel_description?: string;
  category?: { id: number; name: string } | null;
  stream?: { is_live?: boolean; start_time?: string; viewer_count?: number; language?: string } | null;
}

/** `POST /public/v1/chat`. */
export interface KickChatSent {
  is_sent: boolean;
  message_id: string;
}

/** `GET /public/v1/events/subscriptions`. */
export interface KickEventSubscription {
  id: string;
  app_id?: string;
  broadcaster_user_id: number;
  event: string;
  version: number;
  method: string;
  created_at?: string;
  updated_at?: string;
}

/** One entry of `POST /public/v1/events/subscriptions`. */
export interface KickSubscriptionCreated {
  name: string;
  version: number;
  subscription_id?: string;
  error?: string;
}

/** `POST id.kick.com/oauth/token`. */
export interface KickTokenResponse {
  access_token: string;
  token_type?: string;
  refresh_token?: string;
  /** Seconds; Kick's docs show it as a string in places. */
  expires_in?: number | string;
  scope?: string;
}

/** The webhook headers Kick sends with every event. */
export const KickHeader = {
  messageId: 'kick-event-message-id',
  subscriptionId: 'kick-event-subscription-id',
  signature: 'kick-event-signature',
  timestamp: 'kick-event-message-timestamp',
  type: 'kick-event-type',
  version: 'kick-event-version',
} as const;

/** The event types BitBrat subscribes to (all version 1). */
export const KickEventType = {
  chatMessage: 'chat.message.sent',
  follow: 'channel.followed',
  subscriptionNew: 'channel.subscription.new',
  subscriptionRenewal: 'channel.subscription.renewal',
  subscriptionGifts: 'channel.subscription.gifts',
  livestreamStatus: 'livestream.status.updated',
} as const;
export type KickEventType = (typeof KickEventType)[keyof typeof KickEventType];

export const KICK_EVENT_TYPES: readonly KickEventType[] = Object.values(KickEventType);
