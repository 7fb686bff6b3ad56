import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';

/** Prometheus metrics the runtime records for every service and topic. */
export interface RuntimeMetrics {
  readonly registry: Registry;
  readonly consumed: Counter<'service' | 'topic'>;
  readonly published: Counter<'service' | 'topic'>;
  readonly failed: Counter<'service' | 'topic' | 'code'>;
  readonly retried: Counter<'service' | 'topic'>;
  readonly deadLettered: Counter<'service' | 'topic' | 'code'>;
  readonly duplicates: Counter<'service' | 'topic'>;
  readonly handlerSeconds: Histogram<'service' | 'topic'>;
  /** What the bus's server keeps (NATS stream), and its limit (0: none). */
  readonly busStoredBytes: Gauge;
  readonly busMaxBytes: Gauge;
  /** Ingress messages a connector could not hand to the bus (buffer full, or not flushed at shutdown). */
  readonly ingressLost: Counter<'service' | 'platform' | 'reason'>;
  /** Events received but not finalized within STALLED_AFTER_MS (as last counted). */
  readonly eventsStalled: Gauge;
  /** Connectors, egress, LLM and moderation: what the dashboards in deploy/observability read. */
  readonly platform: PlatformMetrics;
  /**
   * Runs `refresh` before every scrape (to set gauges from a live snapshot, e.g. a queue's depth);
   * returns a function that removes it.
   */
  onCollect(refresh: () => void): () => void;
}

/**
 * The platform's own metrics. Every process registers them (a series appears once something counts), so
 * dashboards and alerts can rely on the names; labels: `platform` (twitch, discord, …), `channel`.
 */
export interface PlatformMetrics {
  /** Chat messages received from a platform. */
  readonly chatReceived: Counter<'platform' | 'channel'>;
  /** Chat messages (reply parts) sent to a platform. */
  readonly chatSent: Counter<'platform' | 'channel'>;
  /** Connector reconnects after a lost connection. */
  readonly connectorReconnects: Counter<'platform'>;
  /** 1 while the connector is connected, 0 otherwise. */
  readonly connectorConnected: Gauge<'platform'>;
  /** Twitch EventSub notifications (by subscription type: channel.follow, stream.online, …). */
  readonly eventsubNotifications: Counter<'subscription_type'>;
  /** Replies waiting in a channel's egress queue. */
  readonly egressQueueDepth: Gauge<'platform' | 'channel'>;
  /** Replies by result: `delivered` or the delivery failure code (RATE_LIMITED, DEADLINE, …). */
  readonly egressReplies: Counter<'platform' | 'result'>;
  /** Replies refused because the platform's rate limit (or the queue in front of it) was full. */
  readonly egressRateLimited: Counter<'platform' | 'channel'>;
  /** LLM requests by result (`ok` or the error code). */
  readonly llmRequests: Counter<'provider' | 'model' | 'result'>;
  /** LLM tokens by direction (`input`, `output`). */
  readonly llmTokens: Counter<'provider' | 'model' | 'direction'>;
  /** Estimated LLM spend in US dollars (LLM_PRICES). */
  readonly llmCostUsd: Counter<'provider' | 'model'>;
  /** Moderation actions taken (suppressed spam today; timeouts and bans once a moderation service exists). */
  readonly moderationActions: Counter<'platform' | 'action' | 'reason'>;
}

/** One labelled series of a counter, incremented on the hot path. */
export interface CounterChild {
  inc(): void;
}

interface PendingSeries {
  readonly labels: LabelValues<string>;
  count: number;
}

/** Counters whose series may count locally: they hand their counts to prom-client when read. */
const deferred = new WeakMap<Counter<string>, PendingSeries[]>();

function flushInto(counter: Counter<string>) {
  const series = deferred.get(counter);
  if (!series) return;
  for (const entry of series) {
    if (entry.count === 0) continue;
    const count = entry.count;
    entry.count = 0;
    counter.inc(entry.labels, count);
  }
}

/**
 * A counter whose labelled series are incremented as plain numbers: prom-client's `inc(labels)` hashes
 * and validates the labels on every call. The counts are added to the metric whenever it is read
 * (`registry.metrics()`, `get()`), so every read sees every increment made before it.
 */
function deferredCounter<T extends string>(config: ConstructorParameters<typeof Counter<T>>[0]): Counter<T> {
  const counter: Counter<T> = new Counter<T>({
    ...config,
    collect() {
      flushInto(counter as unknown as Counter<string>);
    },
  });
  deferred.set(counter as unknown as Counter<string>, []);
  const reset = counter.reset.bind(counter);
  counter.reset = () => {
    for (const entry of deferred.get(counter as unknown as Counter<string>) ?? []) entry.count = 0;
    reset();
  };
  return counter;
}

/** The series of `counter` for `labels`; counted locally when the counter allows it. */
export function counterChild<T extends string>(counter: Counter<T>, labels: LabelValues<T>): CounterChild {
  const series = deferred.get(counter as unknown as Counter<string>);
  if (!series) {
    const child = counter.labels(labels);
    return { inc: () => child.inc() };
  }
  const entry: PendingSeries = { labels: labels as LabelValues<string>, count: 0 };
  series.push(entry);
  return {
    inc() {
      entry.count += 1;
    },
  };
}

export function createRuntimeMetrics(options: { defaultMetrics?: boolean } = {}): RuntimeMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'bitbrat_process_' });
  const labelNames = ['service', 'topic'] as const;
  const refreshers = new Set<() => void>();
  const registers = [registry];
  /** A counter or gauge on this registry (`labels`: its label names). */
  const counter = <T extends string>(name: string, help: string, labels: readonly T[]) =>
    new Counter<T>({ name, help, labelNames: labels, registers });
  const gauge = <T extends string>(name: string, help: string, labels: readonly T[]) =>
    new Gauge<T>({ name, help, labelNames: labels, registers });
  const platform: PlatformMetrics = {
    chatReceived: counter('bitbrat_chat_messages_received_total', 'Chat messages received from a platform.', ['platform', 'channel']),
    chatSent: counter('bitbrat_chat_messages_sent_total', 'Chat messages sent to a platform.', ['platform', 'channel']),
    connectorReconnects: counter('bitbrat_connector_reconnects_total', 'Platform connector reconnects after a lost connection.', [
      'platform',
    ]),
    connectorConnected: gauge('bitbrat_connector_connected', '1 while the platform connector is connected.', ['platform']),
    eventsubNotifications: counter('bitbrat_eventsub_notifications_total', 'Twitch EventSub notifications received.', [
      'subscription_type',
    ]),
    egressQueueDepth: new Gauge({
      name: 'bitbrat_egress_queue_depth',
      help: 'Replies waiting in a channel egress queue.',
      labelNames: ['platform', 'channel'] as const,
      registers,
      collect() {
        for (const refresh of refreshers) refresh();
      },
    }),
    egressReplies: counter('bitbrat_egress_replies_total', 'Replies by delivery result (delivered or the failure code).', [
      'platform',
      'result',
    ]),
    egressRateLimited: counter('bitbrat_egress_rate_limited_total', 'Replies refused with RATE_LIMITED.', ['platform', 'channel']),
    llmRequests: counter('bitbrat_llm_requests_total', 'LLM requests by result.', ['provider', 'model', 'result']),
    llmTokens: counter('bitbrat_llm_tokens_total', 'LLM tokens used, by direction (input, output).', ['provider', 'model', 'direction']),
    llmCostUsd: counter('bitbrat_llm_cost_usd_total', 'Estimated LLM spend in US dollars.', ['provider', 'model']),
    moderationActions: counter('bitbrat_moderation_actions_total', 'Moderation actions taken.', ['platform', 'action', 'reason']),
  };
  return {
    platform,
    onCollect(refresh) {
      refreshers.add(refresh);
      return () => refreshers.delete(refresh);
    },
    registry,
    consumed: deferredCounter({
      name: 'bitbrat_messages_consumed_total',
      help: 'Messages taken from the bus.',
      labelNames,
      registers: [registry],
    }),
    published: deferredCounter({
      name: 'bitbrat_messages_published_total',
      help: 'Messages published (by destination topic).',
      labelNames,
      registers: [registry],
    }),
    failed: counter('bitbrat_messages_failed_total', 'Handler failures (by error code).', ['service', 'topic', 'code']),
    retried: counter('bitbrat_messages_retried_total', 'Retryable failures redelivered after a backoff.', labelNames),
    deadLettered: counter('bitbrat_messages_deadlettered_total', 'Messages sent to the dead-letter topic (by reason).', [
      'service',
      'topic',
      'code',
    ]),
    duplicates: counter('bitbrat_messages_duplicate_total', 'Redelivered duplicates recognised and skipped.', labelNames),
    handlerSeconds: new Histogram({
      name: 'bitbrat_handler_duration_seconds',
      help: 'Handler latency.',
      labelNames,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    busStoredBytes: new Gauge({
      name: 'bitbrat_bus_stored_bytes',
      help: 'Bytes the bus server keeps for this platform (the NATS stream).',
      registers: [registry],
    }),
    busMaxBytes: new Gauge({ name: 'bitbrat_bus_max_bytes', help: 'Size limit of that storage (0: none).', registers: [registry] }),
    ingressLost: counter('bitbrat_ingress_lost_total', 'Ingress messages lost by a connector (by reason: buffer_full, shutdown).', [
      'service',
      'platform',
      'reason',
    ]),
    eventsStalled: new Gauge({
      name: 'bitbrat_events_stalled',
      help: 'Events received but not finalized within STALLED_AFTER_MS.',
      registers: [registry],
    }),
  };
}
