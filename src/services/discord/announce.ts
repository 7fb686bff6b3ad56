/**
 * The `discord` routing-slip step for stream events: `system.stream.online` posts the go-live
 * announcement in DISCORD_ANNOUNCE_CHANNEL, `system.stream.offline` edits it. One post per stream, also
 * across restarts and redeliveries: the post is remembered on the stream's own `sources` document
 * (`metadata.discordAnnouncement`, on every store driver), and the create carries a nonce Discord
 * enforces, covering a crash between posting and remembering.
 */
import { EventType, newId, type Envelope } from '../../core/index.js';
import { continueWith, failed, skip, type HandlerResult } from '../../runtime/service.js';
import type { Store } from '../../store/index.js';
import {
  DEFAULT_ENDED_TEMPLATE,
  discordErrorMessage,
  renderAnnouncement,
  replyNonce,
  streamFacts,
  streamKey,
  type DiscordConnector,
  type StreamFacts,
} from '../../platforms/discord/index.js';

/** The router rule that sends stream events through the `discord` step. */
export const GO_LIVE_RULE = {
  id: 'discord-go-live',
  description:
    'Stream online/offline go through the discord step: a go-live post in DISCORD_ANNOUNCE_CHANNEL, edited when the stream ends. Added by the discord service when DISCORD_ANNOUNCE_CHANNEL is set; disable it here rather than deleting it.',
  priority: 1100,
  enabled: true,
  logic: { and: [{ '==': [{ var: 'stage' }, 'ingress'] }, { in: [{ var: 'type' }, [EventType.streamOnline, EventType.streamOffline]] }] },
  // Up to 10 attempts (about two minutes of backoff): a go-live that arrives while the bot reconnects is still announced.
  action: { slip: [{ id: 'discord', maxAttempts: 10 }] },
} as const;

/** What the service remembers about the last announcement, on the stream's source document. */
export interface AnnouncementMemory {
  streamKey: string;
  channelId: string;
  messageId: string;
  postedAt: string;
  endedAt: string | null;
  /** Title, game and link as announced (the offline event carries none of them). */
  facts: StreamFacts;
}

export interface AnnounceDeps {
  store: Pick<Store, 'getSource' | 'mergeSource'>;
  connector: DiscordConnector | undefined;
  channelId: string | undefined;
  template: string;
  signal?: AbortSignal;
}

const annotate = (envelope: Envelope, label: string, payload: Record<string, unknown>): Envelope => ({
  ...envelope,
  annotations: [
    ...(envelope.annotations ?? []),
    { id: newId(), kind: 'discord-announcement', source: 'discord', createdAt: new Date().toISOString(), label, payload },
  ],
});

/** Runs the step for one stream event. */
export async function announceStreamEvent(envelope: Envelope, deps: AnnounceDeps): Promise<HandlerResult> {
  if (envelope.type !== EventType.streamOnline && envelope.type !== EventType.streamOffline) return skip();
  if (!deps.channelId)
    return skip(
      annotate(envelope, 'not-configured', { hint: 'set DISCORD_ANNOUNCE_CHANNEL (a channel id) to announce go-live in Discord' }),
    );
  if (!deps.connector)
    return skip(annotate(envelope, 'not-configured', { hint: 'set the DISCORD_BOT_TOKEN secret to announce go-live in Discord' }));
  if (deps.connector.snapshot().status !== 'connected') return failed('NOT_CONNECTED', 'discord is not connected yet', { retryable: true });

  const sourceId =
    typeof envelope.payload.sourceId === 'string'
      ? envelope.payload.sourceId
      : `${envelope.source.platform}:${envelope.source.channel.replace(/^#/, '')}`;
  const platform = String(envelope.payload.platform ?? envelope.source.platform);
  const memory = (await deps.store.getSource(sourceId))?.metadata?.discordAnnouncement as AnnouncementMemory | undefined;
  const key = streamKey(envelope);
  const facts = streamFacts(envelope);
  const destination = `discord:${deps.channelId}`;
  const delivered = (out: Envelope, messageId: string) => ({
    ...out,
    delivery: { delivered: true, at: new Date().toISOString(), destination, platformMessageIds: [messageId] },
  });

  if (envelope.type === EventType.streamOnline) {
    if (memory?.streamKey === key)
      return continueWith(annotate(envelope, 'already-posted', { messageId: memory.messageId, streamKey: key }));
    let messageId: string;
    try {
      const content = renderAnnouncement(deps.template, facts);
      messageId = (
        await deps.connector.post(
          deps.channelId,
          { content, allowed_mentions: { parse: [] }, nonce: replyNonce(`go-live:${key}`, 0), enforce_nonce: true },
          deps.signal,
        )
      ).id;
    } catch (error) {
      return failed('PROVIDER_ERROR', `the go-live post failed: ${discordErrorMessage(error)}`, { retryable: true });
    }
    const record: AnnouncementMemory = {
      streamKey: key,
      channelId: deps.channelId,
      messageId,
      postedAt: new Date().toISOString(),
      endedAt: null,
      facts,
    };
    await deps.store.mergeSource({ id: sourceId, platform, metadata: { discordAnnouncement: record } });
    return continueWith(delivered(annotate(envelope, 'posted', { messageId, streamKey: key }), messageId));
  }

  if (!memory || memory.endedAt)
    return skip(
      annotate(envelope, 'nothing-to-edit', { reason: memory ? 'the announcement was already edited' : 'no announcement was posted' }),
    );
  try {
    await deps.connector.edit(memory.channelId, memory.messageId, {
      content: renderAnnouncement(DEFAULT_ENDED_TEMPLATE, memory.facts ?? facts),
      allowed_mentions: { parse: [] },
    });
  } catch (error) {
    return failed('PROVIDER_ERROR', `editing the go-live post failed: ${discordErrorMessage(error)}`, { retryable: true });
  }
  await deps.store.mergeSource({
    id: sourceId,
    platform,
    metadata: { discordAnnouncement: { ...memory, endedAt: new Date().toISOString() } },
  });
  return continueWith(delivered(annotate(envelope, 'edited', { messageId: memory.messageId }), memory.messageId));
}
