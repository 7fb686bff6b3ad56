/**
 * Go-live announcements: the text of the post (a template with the stream's title, game and link),
 * the text it is edited to when the stream ends, and the key that makes it one post per stream. Pure.
 */
import type { Envelope } from '../../core/index.js';
import { neutralizeMassMentions, splitDiscordMessage } from './egress.js';

/** The default go-live post; `{channel}`, `{title}`, `{game}` and `{link}` are filled in. */
export const DEFAULT_ANNOUNCE_TEMPLATE = '🔴 **{channel}** is live now: {title}\nPlaying {game}\n{link}';
/** What the post becomes when the stream ends. */
export const DEFAULT_ENDED_TEMPLATE = '⚫ **{channel}** was live: {title}\nPlayed {game}. The stream has ended.\n{link}';

/** The stream facts an announcement is made of. */
export interface StreamFacts {
  channel: string;
  title: string;
  game: string;
  link: string;
}

/** The facts from a `system.stream.online` / `offline` envelope (Twitch's payload, seed 002). */
export function streamFacts(envelope: Envelope): StreamFacts {
  const payload = envelope.payload;
  const text = (value: unknown) => (typeof value === 'string' ? value.trim() : '');
  const channel = text(payload.channel) || envelope.source.channel.replace(/^#/, '');
  return {
    channel,
    title: text(payload.title) || 'no title yet',
    game: text(payload.game) || text(payload.gameName) || 'something',
    link: `https://twitch.tv/${encodeURIComponent(channel.toLowerCase())}`,
  };
}

/**
 * Which stream this is: Twitch's stream id, else the start time, else the event id. Two envelopes of
 * one stream (a redelivery, the same event after a restart) have the same key.
 */
export function streamKey(envelope: Envelope): string {
  const payload = envelope.payload;
  const channel = String(payload.channelId ?? envelope.source.channelId ?? '');
  if (typeof payload.streamId === 'string' && payload.streamId) return `${channel}:${payload.streamId}`;
  if (typeof payload.startedAt === 'string' && payload.startedAt) return `${channel}:${payload.startedAt}`;
  return `${channel}:${String(payload.eventSubMessageId ?? envelope.id)}`;
}

/**
 * Fills a template. Values are inserted as plain text (mass mentions neutralized) and the result is
 * cut to one Discord message.
 */
export function renderAnnouncement(template: string, facts: StreamFacts): string {
  const filled = template.replace(/\{(channel|title|game|link)\}/g, (_, key: keyof StreamFacts) => facts[key]);
  return splitDiscordMessage(neutralizeMassMentions(filled))[0] ?? '';
}
