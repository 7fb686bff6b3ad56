import { EventType, type Envelope } from '../../core/index.js';
import type { EgressOutcome, ReplySender } from '../../platforms/twitch/egress.js';
import type { TwitchChatSnapshot } from '../../platforms/twitch/chat.js';
import type { PlatformMetrics, RuntimeMetrics } from '../../runtime/metrics.js';

const PLATFORM = 'twitch';

/**
 * The Twitch connector's numbers in /metrics (bitbrat_chat_*, bitbrat_connector_*, bitbrat_egress_*,
 * bitbrat_eventsub_*), fed from the connector's events and snapshots in this service, so the connector
 * itself (src/platforms/twitch) stays free of metrics.
 */
export function createTwitchMetrics(metrics: RuntimeMetrics) {
  const platform: PlatformMetrics = metrics.platform;
  let reconnectsSeen = 0;
  let stopCollect: (() => void) | undefined;
  let lastEventSubId: string | undefined;
  return {
    received(channel: string) {
      platform.chatReceived.inc({ platform: PLATFORM, channel: channel.replace(/^#/, '').toLowerCase() });
    },
    /** On every connector state change: the connected gauge, and reconnects since the last change. */
    state(snapshot: TwitchChatSnapshot) {
      platform.connectorConnected.set({ platform: PLATFORM }, snapshot.status === 'connected' ? 1 : 0);
      const reconnects = snapshot.counters.reconnects;
      if (reconnects > reconnectsSeen) platform.connectorReconnects.inc({ platform: PLATFORM }, reconnects - reconnectsSeen);
      reconnectsSeen = reconnects;
    },
    /** A reply's delivery: parts sent, and the result (RATE_LIMITED also counted on its own). */
    delivery(envelope: Envelope, outcome: EgressOutcome) {
      const result = outcome.result;
      if (!result) return;
      const channel = envelope.source.channel.replace(/^#/, '').toLowerCase();
      if (result.partsSent > 0) platform.chatSent.inc({ platform: PLATFORM, channel }, result.partsSent);
      platform.egressReplies.inc({ platform: PLATFORM, result: result.delivered ? 'delivered' : (result.reason ?? 'failed') });
      if (result.reason === 'RATE_LIMITED') platform.egressRateLimited.inc({ platform: PLATFORM, channel });
    },
    /** Each EventSub notification once: the connector retries a publish with the same envelope. */
    eventsub(envelope: Envelope) {
      if (envelope.type !== EventType.twitchEventSub || envelope.id === lastEventSubId) return;
      lastEventSubId = envelope.id;
      platform.eventsubNotifications.inc({ subscription_type: envelope.externalEvent?.kind ?? 'unknown' });
    },
    /** Reads each channel's queue depth at every scrape. */
    watchQueue(sender: ReplySender) {
      stopCollect?.();
      stopCollect = metrics.onCollect(() => {
        for (const [channel, queue] of Object.entries(sender.snapshot()))
          platform.egressQueueDepth.set({ platform: PLATFORM, channel }, queue.queued);
      });
    },
    stop() {
      stopCollect?.();
      stopCollect = undefined;
      platform.connectorConnected.set({ platform: PLATFORM }, 0);
    },
  };
}

export type TwitchMetrics = ReturnType<typeof createTwitchMetrics>;
