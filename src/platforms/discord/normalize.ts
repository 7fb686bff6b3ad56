/**
 * Discord wire values → envelopes. Pure: takes what the client read off a MESSAGE_CREATE (and the
 * guild's cached roles) so it is testable without a socket.
 */
// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { EventType, Topic, createEnvelope, createSourceStatus, type Envelope } from '../../core/index.js';

/** Default reply deadline for Discord chat (R9), as for Twitch chat. */
export const DEFAULT_DISCORD_MAX_RESPONSE_MS = 30_000;

/** One guild text message as the client saw it. */
export interface DiscordChatMessage {
  id: string;
  channelId: string;
  channelName: string;
  guildId: string;
  guildName: string;
  /** The guild owner's user id (the owner is the broadcaster of a Discord community). */
  guildOwnerId: string;
  author: { id: string; username: string; globalName?: string | null; avatarUrl?: string };
  /** Empty when the MessageContent intent is not granted (Discord sends no error). */
  content: string;
  /** The author's roles in the guild (@everyone excluded). */
  roles: ReadonlyArray<{ id: string; name: string }>;
  /** Whether the author may manage messages in the channel (Discord's moderator permission). */
  canManageMessages: boolean;
  replyToMessageId?: string;
  receivedAt?: Date;
}

export interface DiscordNormalizeOptions {
  /** DISCORD_MOD_ROLES: role ids or names (case-insensitive) treated as moderator. */
  modRoles?: readonly string[];
  /** Topic the Discord egress of this instance consumes. Default the shared egress topic. */
  egressDestination?: string;
  maxResponseMs?: number;
}

/**
 * How a message's channel is named in envelopes: `<guild> #<channel>`. A Discord username can hold
 * neither a space nor `#`, so no chatter's login ever equals a channel name (auth treats a login equal to
 * the channel as the channel owner, which is right for Twitch only).
 */
export function discordChannelLabel(guildName: string, channelName: string): string {
  return `${guildName} #${channelName}`;
}

/** Whether one of the author's roles is named (by id or case-insensitive name) in `modRoles`. */
export function hasModRole(roles: DiscordChatMessage['roles'], modRoles: readonly string[] = []): boolean {
  if (modRoles.length === 0) return false;
  const wanted = new Set(modRoles.map((role) => role.trim().toLowerCase()).filter(Boolean));
  return roles.some((role) => wanted.has(role.id) || wanted.has(role.name.toLowerCase()));
}

/** Builds the ingress envelope for one Discord message (platform `discord`). */
export function normalizeDiscordMessage(input: DiscordChatMessage, options: DiscordNormalizeOptions = {}): Envelope {
  const isBroadcaster = input.author.id === input.guildOwnerId;
  const isMod = input.canManageMessages || hasModRole(input.roles, options.modRoles);
  const badges = [...(isBroadcaster ? ['broadcaster'] : []), ...(isMod ? ['moderator'] : [])];
  const envelope = createEnvelope({
    type: EventType.chatMessage,
    timestamp: input.receivedAt ?? new Date(),
    source: {
      platform: 'discord',
      channel: discordChannelLabel(input.guildName, input.channelName),
      channelId: input.channelId,
      egressDestination: options.egressDestination ?? Topic.egress,
      guildId: input.guildId,
    },
    user: {
      id: input.author.id,
      name: input.author.username,
      displayName: input.author.globalName || input.author.username,
      profileImageUrl: input.author.avatarUrl ?? '',
      role: '',
    },
    routingSlip: [],
    finalizationDestination: Topic.finalizer,
    payload: {
      text: input.content,
      messageId: input.id,
      badges,
      isMod,
      isBroadcaster,
      discord: {
        guildId: input.guildId,
        guildName: input.guildName,
        channelName: input.channelName,
        roles: input.roles.map((role) => ({ id: role.id, name: role.name })),
        manageMessages: input.canManageMessages,
      },
    },
  });
  envelope.message = {
    id: input.id,
    text: input.content,
    ...(input.replyToMessageId ? { replyToMessageId: input.replyToMessageId } : {}),
  };
  envelope.qos = { maxResponseMs: options.maxResponseMs ?? DEFAULT_DISCORD_MAX_RESPONSE_MS };
  return envelope;
}

/** Source id of a Discord guild connection; `discord:bot` while no guild is known. */
export function discordSourceId(guildId?: string): string {
  return `discord:${guildId || 'bot'}`;
}

/** Connection state of the bot in one guild (or of the bot itself before any guild is known). */
export interface DiscordStatusInput {
  guildId?: string;
  guildName?: string;
  status: 'connected' | 'disconnected' | 'connecting' | 'error' | 'not_configured';
  /** Guilds the bot is in (all of them, not only this one). */
  guilds: number;
  /** Channels listened to in this guild. */
  channels?: ReadonlyArray<{ id: string; name: string }>;
  /** `lost`: messages that could not reach the bus (ingress buffer full or not flushed at shutdown). */
  metrics: { messagesIn: number; messagesOut: number; errors: number; reconnects: number; lost?: number };
  latencyMs: number | null;
  lastError: { code: string; message: string; at: string } | null;
  /** What the operator must do (not configured, MessageContent missing, 4014); shown on the dashboard. */
  howToConnect?: string;
  authStatus: 'valid' | 'invalid' | 'missing' | 'unknown';
  at?: Date;
}

/** A `system.source.status` envelope for internal.ingress.v1 (persistence merges it into `sources`). */
export function buildDiscordStatusEnvelope(input: DiscordStatusInput): Envelope {
  return createSourceStatus({
    at: input.at ?? new Date(),
    source: { platform: 'discord', channel: input.guildName ?? '', channelId: input.guildId ?? '' },
    sourceId: discordSourceId(input.guildId),
    displayName: input.guildName ? `Discord · ${input.guildName}` : 'Discord bot',
    status: input.status,
    authStatus: input.authStatus,
    metrics: input.metrics,
    lastError: input.lastError,
    details: {
      latencyMs: input.latencyMs,
      metadata: {
        guilds: input.guilds,
        // The bot-level card stands in until a server is known; the dashboard hides it beside real ones.
        ...(input.guildId ? { guildId: input.guildId, guildName: input.guildName } : { placeholder: true }),
        ...(input.channels ? { channels: input.channels.map((channel) => `#${channel.name}`) } : {}),
        // Always written, so a fixed problem's hint is cleared from the merged document.
        howToConnect: input.howToConnect ?? null,
      },
    },
  });
}
