/**
 * The OpenTelemetry SDK behind the runtime's Tracing interface. Imported only by `createTracing` when an
 * OTLP endpoint is configured. Spans go through a BatchSpanProcessor: ending a span only queues it, and
 * the export runs in the background, so a slow or absent collector never holds up a message.
 */
import { ROOT_CONTEXT, SpanKind as OtelSpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Span } from '@opentelemetry/api';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  RandomIdGenerator,
  TraceIdRatioBasedSampler,
  type IdGenerator,
  type Sampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { normalizeTraceId } from '../core/index.js';
import type { TracingConfig } from './tracing-config.js';
import { parseTraceparent, type RuntimeSpan, type SpanAttributes, type SpanKind, type StartSpanOptions, type Tracing } from './tracing.js';

const KINDS: Record<SpanKind, OtelSpanKind> = {
  internal: OtelSpanKind.INTERNAL,
  client: OtelSpanKind.CLIENT,
  producer: OtelSpanKind.PRODUCER,
  consumer: OtelSpanKind.CONSUMER,
};

const INVALID_TRACE_ID = '0'.repeat(32);

function samplerFor(config: Extract<TracingConfig, { enabled: true }>): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(config.samplerRatio);
  switch (config.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function attributesOf(attributes: SpanAttributes | undefined): Attributes | undefined {
  if (!attributes) return undefined;
  const out: Attributes = {};
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) out[key] = value;
  return out;
}

/** A sampled-out span still carries its ids, so the trace continues across the bus. */
function wrap(span: Span): RuntimeSpan {
  const context = span.spanContext();
  const flags = (context.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00';
  return {
    traceId: context.traceId,
    spanId: context.spanId,
    traceparent: `00-${context.traceId}-${context.spanId}-${flags}`,
    setAttributes: (attributes) => {
      const values = attributesOf(attributes);
      if (values) span.setAttributes(values);
    },
    rename: (name) => {
      span.updateName(name);
    },
    fail: (code, message) => {
      span.setAttribute('error.type', code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: message ? `${code}: ${message}` : code });
    },
    recordException: (error, message) => {
      const type = error instanceof Error ? error.name : typeof error;
      // Only the frames: the stack's first lines repeat the error's own message, which the caller may have chosen not to show.
      const frames = error instanceof Error && error.stack ? error.stack.split('\n').filter((line) => /^\s+at /.test(line)) : [];
      span.recordException({
        name: type,
        message: message ?? (error instanceof Error ? error.message : String(error)),
        ...(frames.length ? { stack: `${type}: ${message ?? ''}\n${frames.join('\n')}` } : {}),
      });
    },
    end: () => span.end(),
  };
}

/** The SDK's tracer provider, exporter and batch processor, configured only from `config`. */
export function createOtelTracing(
  config: Extract<TracingConfig, { enabled: true }>,
  defaults: { service: string; instanceId: string },
): Tracing {
  // A root span takes the envelope's trace id, so the id in every log line and in the finalizer's record
  // is the id of the trace. The SDK asks the id generator synchronously inside startSpan.
  const random = new RandomIdGenerator();
  let nextTraceId: string | undefined;
  const idGenerator: IdGenerator = {
    generateTraceId: () => {
      const id = nextTraceId;
      nextTraceId = undefined;
      return id ?? random.generateTraceId();
    },
    generateSpanId: () => random.generateSpanId(),
  };
  const exporterOptions = { url: config.url, headers: { ...config.headers }, timeoutMillis: config.batch.exportTimeoutMillis };
  const exporter = config.protocol === 'http/json' ? new OtlpJsonExporter(exporterOptions) : new OtlpProtoExporter(exporterOptions);
  const resource = defaultResource().merge(
    resourceFromAttributes({
      'service.instance.id': defaults.instanceId,
      ...config.resourceAttributes,
      [ATTR_SERVICE_NAME]: config.serviceName ?? defaults.service,
    }),
  );
  const provider = new BasicTracerProvider({
    resource,
    sampler: samplerFor(config),
    idGenerator,
    spanProcessors: [new BatchSpanProcessor(exporter, config.batch)],
  });
  const tracer = provider.getTracer('bitbrat');
  let stopped: Promise<void> | undefined;

  return {
    startSpan(name: string, options: StartSpanOptions = {}): RuntimeSpan {
      let parentContext = ROOT_CONTEXT;
      const parent = options.parent;
      if (parent !== undefined) {
        const remote =
          typeof parent === 'string'
            ? parseTraceparent(parent)
            : { traceId: parent.traceId, spanId: parent.spanId, sampled: parent.traceparent.endsWith('01') };
        // A parent from another trace than the envelope's (a republished envelope) does not adopt it.
        if (remote && (options.traceId === undefined || remote.traceId === normalizeTraceId(options.traceId))) {
          parentContext = trace.setSpanContext(ROOT_CONTEXT, {
            traceId: remote.traceId,
            spanId: remote.spanId,
            traceFlags: remote.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
            isRemote: typeof parent === 'string',
          });
        }
      }
      if (parentContext === ROOT_CONTEXT && options.traceId) {
        const id = normalizeTraceId(options.traceId);
        if (id !== INVALID_TRACE_ID) nextTraceId = id;
      }
      const span = tracer.startSpan(
        name,
        { kind: KINDS[options.kind ?? 'internal'], attributes: attributesOf(options.attributes) },
        parentContext,
      );
      nextTraceId = undefined;
      return wrap(span);
    },
    flush: () => provider.forceFlush(),
    shutdown: () => (stopped ??= provider.shutdown()),
  };
}
