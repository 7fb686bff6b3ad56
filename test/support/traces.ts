/** Reading the traces a fake OTLP collector received. */
import { Topic } from '../../src/core/index.js';
import type { FakeOtlpCollector, ReceivedSpan } from '../fakes/otlp.js';

/**
 * The spans of trace `traceId` once it is whole: the finalizer's span has arrived, a span of each of
 * `services` (by `bitbrat.service`), and every parent a span names (exporters flush on their own schedule,
 * process by process).
 */
export async function wholeTrace(
  collector: FakeOtlpCollector,
  traceId: string,
  options: { services?: readonly string[]; timeoutMs?: number } = {},
): Promise<ReceivedSpan[]> {
  const mine = (spans: readonly ReceivedSpan[]) => spans.filter((span) => span.traceId === traceId);
  const spans = await collector.waitFor((all) => {
    const trace = mine(all);
    const ids = new Set(trace.map((span) => span.spanId));
    const services = new Set(trace.map((span) => span.attributes['bitbrat.service']));
    return (
      trace.some((span) => span.attributes['bitbrat.service'] === 'finalizer' && span.name.includes(Topic.finalizer)) &&
      (options.services ?? []).every((service) => services.has(service)) &&
      trace.every((span) => span.parentSpanId === '' || ids.has(span.parentSpanId))
    );
  }, options.timeoutMs);
  return mine(spans);
}

/** The spans of routing-slip steps. */
export const stepSpans = (spans: readonly ReceivedSpan[]) => spans.filter((span) => span.attributes['bitbrat.step'] !== undefined);

/** `service/step#attempt:outcome` of every step span, sorted: what a trace did, in one comparable list. */
export const stepOutcomes = (spans: readonly ReceivedSpan[]) =>
  stepSpans(spans)
    .map(
      (span) =>
        `${span.attributes['bitbrat.service']}/${span.attributes['bitbrat.step']}#${span.attributes['bitbrat.attempt']}:${span.attributes['bitbrat.outcome']}`,
    )
    .sort();

/** The services of a `!ping` through the test pipeline (test/support/pipeline.ts), each of which must have spans in its trace. */
export const PING_SERVICES = [
  'chat-source',
  'auth',
  'persistence',
  'event-router',
  'query-analyzer',
  'moderation',
  'commands',
  'test-egress',
  'finalizer',
] as const;

/** The step spans of a `!ping`: one each, the first attempt, all continuing. */
export const PING_STEPS = [
  'commands/commands#1:continue',
  'event-router/router#1:continue',
  'moderation/moderation#1:continue',
  'query-analyzer/query-analyzer#1:continue',
].sort();

/** What a Helix span's attributes say about a successful call to `path` on the fake Twitch API at `port`. */
export const helixCallAttributes = (port: number, path: string, method = 'GET') => ({
  'http.request.method': method,
  'server.address': 'localhost',
  'server.port': port,
  'url.full': `http://localhost:${port}/mock${path}`,
  'http.response.status_code': 200,
  'bitbrat.platform': 'twitch',
});
