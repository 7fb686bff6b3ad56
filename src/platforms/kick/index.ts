/** The Kick connector (official public API, events by webhook): client, normalize, egress, status and auth. */
export { KickTokenId, createKickTokens, tokenRecord, type KickTokens, type KickTokensOptions } from './auth.js';
export {
  DEFAULT_KICK_API_URL,
  DEFAULT_KICK_AUTH_URL,
  DEFAULT_KICK_SCOPES,
  KickApiError,
  createKickClient,
  createPkcePair,
  exchangeKickCode,
  kickAuthorizeUrl,
  pkceChallenge,
  refreshKickToken,
  revokeKickToken,
  type KickClient,
  type KickClientOptions,
  type PkcePair,
} from './client.js';
export {
  DEFAULT_KICK_RATE_LIMITS,
  KICK_MESSAGE_MAX_LENGTH,
  createKickReplySender,
  deliverKickReply,
  splitKickMessage,
  type KickChatTransport,
  type KickRateLimits,
  type KickReplySender,
} from './egress.js';
export {
  KICK_EVENT_ENVELOPE_TYPE,
  KICK_EVENT_SOURCE,
  KICK_REACTION_KINDS,
  buildKickStreamEnvelope,
  kickChannelName,
  kickSourceId,
  normalizeKickChat,
  normalizeKickDelivery,
  normalizeKickEvent,
  normalizeKickStreamStatus,
  type KickDelivery,
  type NormalizedKickDelivery,
} from './normalize.js';
export { buildKickStatusEnvelope, type KickConnectionStatus, type KickStatusInput } from './status.js';
export { KICK_EVENT_VERSION, reconcileKickSubscriptions, type ReconcileResult } from './subscriptions.js';
export {
  DEFAULT_WEBHOOK_MAX_AGE_MS,
  parseKickPublicKey,
  parseKickTimestamp,
  verifyKickWebhook,
  type KickWebhookHeaders,
  type WebhookVerdict,
} from './webhook.js';
export { KICK_EVENT_TYPES, KickEventType, KickHeader } from './wire.js';
export type * from './wire.js';
