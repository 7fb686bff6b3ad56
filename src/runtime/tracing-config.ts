import { z } from 'zod';
import { BitBratError } from '../core/index.js';
import { env } from './config.js';

/**
 * Tracing settings, read only from the standard OpenTelemetry environment variables
 * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/). The host passes
 * the environment it read (config.ts); this module never touches process.env itself, and the SDK is
 * handed every setting explicitly so it has nothing left to read either.
 */

/** The samplers of OTEL_TRACES_SAMPLER that make sense without a remote sampling server. */
export const TraceSampler = {
  always_on: 'always_on',
  always_off: 'always_off',
  traceidratio: 'traceidratio',
  parentbased_always_on: 'parentbased_always_on',
  parentbased_always_off: 'parentbased_always_off',
  parentbased_traceidratio: 'parentbased_traceidratio',
} as const;
export type TraceSampler = (typeof TraceSampler)[keyof typeof TraceSampler];

/** OTLP over HTTP: protobuf (the OpenTelemetry default) or JSON. */
export const OtlpProtocol = { protobuf: 'http/protobuf', json: 'http/json' } as const;
export type OtlpProtocol = (typeof OtlpProtocol)[keyof typeof OtlpProtocol];

const protocol = () =>
  z.preprocess(
    (value) => (value === '' ? undefined : value),
    z
      .enum(['http/protobuf', 'http/json'], {
        error: 'must be http/protobuf or http/json (grpc is not supported: point it at the OTLP/HTTP port, usually 4318)',
      })
      .optional(),
  );

const TracingEnvSchema = z.object({
  OTEL_SDK_DISABLED: env.bool(false),
  /** `otlp` (default) or `none`. */
  OTEL_TRACES_EXPORTER: env.enumOf(['otlp', 'none'] as const, 'otlp'),
  OTEL_EXPORTER_OTLP_ENDPOINT: env.url(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: env.url(),
  OTEL_EXPORTER_OTLP_PROTOCOL: protocol(),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol(),
  OTEL_EXPORTER_OTLP_HEADERS: env.string(),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: env.string(),
  OTEL_SERVICE_NAME: env.string(),
  OTEL_RESOURCE_ATTRIBUTES: env.string(),
  OTEL_TRACES_SAMPLER: env.enumOf(Object.values(TraceSampler) as [TraceSampler, ...TraceSampler[]], 'parentbased_always_on'),
  OTEL_TRACES_SAMPLER_ARG: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z.coerce.number({ error: 'must be a number' }).min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1').optional(),
  ),
  OTEL_BSP_SCHEDULE_DELAY: env.int(5_000, { min: 0 }),
  OTEL_BSP_MAX_QUEUE_SIZE: env.int(2_048, { min: 1 }),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: env.int(512, { min: 1 }),
  OTEL_BSP_EXPORT_TIMEOUT: env.int(30_000, { min: 1 }),
  /** Cloud Run names the service and revision; they become resource attributes. */
  K_SERVICE: env.string(),
  K_REVISION: env.string(),
});

/** Tracing is off, or on with everything the SDK needs. */
export type TracingConfig =
  | { readonly enabled: false }
  | {
      readonly enabled: true;
      /** Where spans are POSTed (the `/v1/traces` URL). */
      readonly url: string;
      readonly protocol: OtlpProtocol;
      readonly headers: Readonly<Record<string, string>>;
      /** OTEL_SERVICE_NAME; the host falls back to the process's service name. */
      readonly serviceName?: string;
      readonly resourceAttributes: Readonly<Record<string, string>>;
      readonly sampler: TraceSampler;
      /** The ratio of the `traceidratio` samplers (default 1). */
      readonly samplerRatio: number;
      readonly batch: {
        readonly scheduledDelayMillis: number;
        readonly maxQueueSize: number;
        readonly maxExportBatchSize: number;
        readonly exportTimeoutMillis: number;
      };
    };

/** `k1=v1,k2=v2` with percent-encoded values (the W3C baggage format both variables use). */
function parseKeyValues(text: string | undefined, name: string, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const part of text.split(',')) {
    if (part.trim() === '') continue;
    const at = part.indexOf('=');
    const key = at > 0 ? part.slice(0, at).trim() : '';
    if (!key) {
      problems.push(`  - ${name}: "${part.trim()}" is not key=value`);
      continue;
    }
    try {
      out[key] = decodeURIComponent(part.slice(at + 1).trim());
    } catch {
      problems.push(`  - ${name}: the value of ${key} is not valid percent-encoding`);
    }
  }
  return out;
}

/** The OTLP/HTTP traces URL: the signal-specific endpoint as given, or the base endpoint + `/v1/traces`. */
export function tracesUrl(base: string | undefined, signal: string | undefined): string | undefined {
  if (signal) return signal;
  if (!base) return undefined;
  return base.replace(/\/+$/, '') + '/v1/traces';
}

/**
 * Reads the tracing settings from `source`. With no endpoint (or the SDK disabled, or the exporter
 * `none`) tracing is off. Throws CONFIG_INVALID listing every problem.
 */
export function loadTracingConfig(source: Record<string, string | undefined>): TracingConfig {
  const parsed = TracingEnvSchema.safeParse(source);
  const problems: string[] = parsed.success ? [] : parsed.error.issues.map((issue) => `  - ${issue.path.join('.')}: ${issue.message}`);
  const value = parsed.success ? parsed.data : undefined;
  const headers = {
    ...parseKeyValues(source.OTEL_EXPORTER_OTLP_HEADERS, 'OTEL_EXPORTER_OTLP_HEADERS', problems),
    ...parseKeyValues(source.OTEL_EXPORTER_OTLP_TRACES_HEADERS, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS', problems),
  };
  const resourceAttributes = parseKeyValues(source.OTEL_RESOURCE_ATTRIBUTES, 'OTEL_RESOURCE_ATTRIBUTES', problems);
  if (problems.length > 0 || !value)
    throw new BitBratError('CONFIG_INVALID', `invalid tracing configuration:\n${problems.join('\n')}`, { details: { problems } });
  const url = tracesUrl(value.OTEL_EXPORTER_OTLP_ENDPOINT, value.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  if (!url || value.OTEL_SDK_DISABLED || value.OTEL_TRACES_EXPORTER === 'none') return Object.freeze({ enabled: false });
  if (value.K_SERVICE) {
    resourceAttributes['cloud.provider'] ??= 'gcp';
    resourceAttributes['cloud.platform'] ??= 'gcp_cloud_run';
    resourceAttributes['faas.name'] ??= value.K_SERVICE;
    if (value.K_REVISION) resourceAttributes['faas.version'] ??= value.K_REVISION;
  }
  return Object.freeze({
    enabled: true,
    url,
    protocol: value.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? value.OTEL_EXPORTER_OTLP_PROTOCOL ?? OtlpProtocol.protobuf,
    headers: Object.freeze(headers),
    ...(value.OTEL_SERVICE_NAME ? { serviceName: value.OTEL_SERVICE_NAME } : {}),
    resourceAttributes: Object.freeze(resourceAttributes),
    sampler: value.OTEL_TRACES_SAMPLER,
    samplerRatio: value.OTEL_TRACES_SAMPLER_ARG ?? 1,
    batch: Object.freeze({
      scheduledDelayMillis: value.OTEL_BSP_SCHEDULE_DELAY,
      maxQueueSize: value.OTEL_BSP_MAX_QUEUE_SIZE,
      maxExportBatchSize: Math.min(value.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, value.OTEL_BSP_MAX_QUEUE_SIZE),
      exportTimeoutMillis: value.OTEL_BSP_EXPORT_TIMEOUT,
    }),
  });
}
