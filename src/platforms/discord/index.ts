/** Discord connector: client (discord.js, loaded on start), normalize, egress, status and announcements. */
export {
  createDiscordConnector,
  DEFAULT_RETRY_INITIAL_MS,
  DISALLOWED_INTENTS_FIX,
  MESSAGE_CONTENT_FIX,
  type DiscordConnector,
  type DiscordConnectorOptions,
  type DiscordSnapshot,
  type DiscordStatus,
} from './client.js';
export {
  buildDiscordStatusEnvelope,
  DEFAULT_DISCORD_MAX_RESPONSE_MS,
  discordChannelLabel,
  discordSourceId,
  hasModRole,
  normalizeDiscordMessage,
  type DiscordChatMessage,
  type DiscordNormalizeOptions,
  type DiscordStatusInput,
} from './normalize.js';
export {
  deliverDiscordReply,
  discordErrorMessage,
  DISCORD_MESSAGE_MAX_LENGTH,
  neutralizeMassMentions,
  replyBodies,
  replyNonce,
  SAFE_ALLOWED_MENTIONS,
  splitDiscordMessage,
  type DiscordEgressOutcome,
  type DiscordMessageBody,
  type DiscordTransport,
} from './egress.js';
export {
  DEFAULT_ANNOUNCE_TEMPLATE,
  DEFAULT_ENDED_TEMPLATE,
  renderAnnouncement,
  streamFacts,
  streamKey,
  type StreamFacts,
} from './announce.js';
