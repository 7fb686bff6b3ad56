import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
}

export function createRuntimeMetrics(options: { defaultMetrics?: boolean } = {}): RuntimeMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'bitbrat_process_' });
  const labelNames = ['service', 'topic'] as const;
  return {
    registry,
    consumed: new Counter({ name: 'bitbrat_messages_consumed_total', help: 'Messages taken from the bus.', labelNames, registers: [registry] }),
    published: new Counter({ name: 'bitbrat_messages_published_total', help: 'Messages published (by destination topic).', labelNames, registers: [registry] }),
    failed: new Counter({ name: 'bitbrat_messages_failed_total', help: 'Handler failures (by error code).', labelNames: ['service', 'topic', 'code'] as const, registers: [registry] }),
    retried: new Counter({ name: 'bitbrat_messages_retried_total', help: 'Retryable failures redelivered after a backoff.', labelNames, registers: [registry] }),
    deadLettered: new Counter({ name: 'bitbrat_messages_deadlettered_total', help: 'Messages sent to the dead-letter topic (by reason).', labelNames: ['service', 'topic', 'code'] as const, registers: [registry] }),
    duplicates: new Counter({ name: 'bitbrat_messages_duplicate_total', help: 'Redelivered duplicates recognised and skipped.', labelNames, registers: [registry] }),
    handlerSeconds: new Histogram({
      name: 'bitbrat_handler_duration_seconds',
      help: 'Handler latency.',
      labelNames,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
}
