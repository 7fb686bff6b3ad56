import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/runtime/manifest.js';
import { loadTracingConfig, tracesUrl } from '../../src/runtime/tracing-config.js';
import {
  createTracing,
  currentSpan,
  parseTraceparent,
  runInSpan,
  traced,
  type RuntimeSpan,
  type StartSpanOptions,
  type Tracing,
} from '../../src/runtime/tracing.js';

/** A Tracing that records what it was asked, for testing the runtime side without the SDK. */
function recordingTracing() {
  const started: Array<{ name: string; options: StartSpanOptions; failed?: string; ended: boolean }> = [];
  let next = 0;
  const tracing: Tracing = {
    startSpan(name, options = {}) {
      const entry: { name: string; options: StartSpanOptions; failed?: string; ended: boolean } = { name, options, ended: false };
      started.push(entry);
      next += 1;
      const spanId = next.toString(16).padStart(16, '0');
      const span: RuntimeSpan = {
        traceId: 'a'.repeat(32),
        spanId,
        traceparent: `00-${'a'.repeat(32)}-${spanId}-01`,
        setAttributes: () => undefined,
        rename: (renamed) => {
          entry.name = renamed;
        },
        fail: (code) => {
          entry.failed = code;
        },
        end: () => {
          entry.ended = true;
        },
      };
      return span;
    },
    flush: async () => undefined,
    shutdown: async () => undefined,
  };
  return { tracing, started };
}

describe('tracing configuration', () => {
  it('is off without an OTLP endpoint, and when the SDK or the exporter is disabled', () => {
    expect(loadTracingConfig({})).toEqual({ enabled: false });
    expect(loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' })).toEqual({
      enabled: false,
    });
    expect(loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_TRACES_EXPORTER: 'none' })).toEqual({
      enabled: false,
    });
  });

  it('posts to <endpoint>/v1/traces, or to the traces endpoint exactly as given', () => {
    expect(tracesUrl('http://collector:4318/', undefined)).toBe('http://collector:4318/v1/traces');
    expect(tracesUrl('http://collector:4318', 'https://otlp.example.com/custom/path')).toBe('https://otlp.example.com/custom/path');
    const config = loadTracingConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' });
    expect(config).toMatchObject({ enabled: true, url: 'http://collector:4318/v1/traces' });
  });

  it('defaults to http/protobuf and a parent-based always-on sampler, and reads the standard variables', () => {
    expect(loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toMatchObject({
      protocol: 'http/protobuf',
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
      batch: { scheduledDelayMillis: 5_000 },
    });
    const config = loadTracingConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-team=stream,authorization=Bearer%20abc',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-team=traces',
      OTEL_SERVICE_NAME: 'bot',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,owner=a%2Cb',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      K_SERVICE: 'bitbrat-auth',
      K_REVISION: 'bitbrat-auth-00007',
    });
    expect(config).toMatchObject({
      enabled: true,
      protocol: 'http/json',
      headers: { 'x-team': 'traces', authorization: 'Bearer abc' },
      serviceName: 'bot',
      resourceAttributes: {
        'deployment.environment.name': 'prod',
        owner: 'a,b',
        'cloud.platform': 'gcp_cloud_run',
        'faas.name': 'bitbrat-auth',
        'faas.version': 'bitbrat-auth-00007',
      },
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.25,
    });
  });

  it('fails listing every problem: grpc, a bad sampler ratio, a bad endpoint, malformed attributes', () => {
    let message = '';
    try {
      loadTracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTEL_TRACES_SAMPLER_ARG: '2',
        OTEL_TRACES_SAMPLER: 'jaeger_remote',
        OTEL_RESOURCE_ATTRIBUTES: 'novalue',
      });
    } catch (error) {
      message = (error as Error).message;
      expect((error as { code?: string }).code).toBe('CONFIG_INVALID');
    }
    for (const name of [
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_EXPORTER_OTLP_PROTOCOL',
      'grpc is not supported',
      'OTEL_TRACES_SAMPLER_ARG',
      'OTEL_TRACES_SAMPLER:',
      'OTEL_RESOURCE_ATTRIBUTES',
    ])
      expect(message).toContain(name);
  });
});

describe('the runtime side of tracing', () => {
  it('creates no tracer (and loads no SDK) when tracing is off', async () => {
    expect(await createTracing({ enabled: false }, { service: 'x', instanceId: 'i' })).toBeUndefined();
  });

  it('keeps the SDK behind one lazy import: only otel.ts imports @opentelemetry, and only through import()', () => {
    const files = (readdirSync(path.join(PROJECT_ROOT, 'src'), { recursive: true }) as string[]).filter((file) => file.endsWith('.ts'));
    const importing = files.filter((file) => /from '@opentelemetry\//.test(readFileSync(path.join(PROJECT_ROOT, 'src', file), 'utf8')));
    expect(importing.map((file) => file.split(path.sep).join('/'))).toEqual(['runtime/otel.ts']);
    const staticOtel = files.filter((file) =>
      /^import [^;]*from '\.\/otel\.js'/m.test(readFileSync(path.join(PROJECT_ROOT, 'src', file), 'utf8')),
    );
    expect(staticOtel).toEqual([]);
    expect(readFileSync(path.join(PROJECT_ROOT, 'src', 'runtime', 'tracing.ts'), 'utf8')).toContain("await import('./otel.js')");
  });

  it('parses W3C traceparent headers and refuses invalid ones', () => {
    expect(parseTraceparent(`00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`)).toEqual({
      traceId: 'ab'.repeat(16),
      spanId: 'cd'.repeat(8),
      sampled: true,
    });
    expect(parseTraceparent(`00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-00`)?.sampled).toBe(false);
    for (const bad of [
      undefined,
      '',
      'garbage',
      `00-${'0'.repeat(32)}-${'cd'.repeat(8)}-01`,
      `00-${'ab'.repeat(16)}-${'0'.repeat(16)}-01`,
      `ff-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`,
      `00-${'AB'.repeat(16)}-${'cd'.repeat(8)}-01`,
    ]) {
      expect(parseTraceparent(bad), String(bad)).toBeUndefined();
    }
  });

  it('runs traced work as a child of the current span, and only calls it outside a traced message', async () => {
    const { tracing, started } = recordingTracing();
    expect(traced('store getEvent', {}, (span) => span)).toBeUndefined();
    expect(started).toEqual([]);

    const parent = tracing.startSpan('auth internal.ingress.v1');
    const value = await runInSpan(tracing, parent, () =>
      traced('store getUser', { 'db.operation.name': 'getUser' }, async (span) => {
        expect(currentSpan()).toBe(span);
        return 42;
      }),
    );
    expect(value).toBe(42);
    expect(started[1]).toMatchObject({ name: 'store getUser', options: { kind: 'client', parent }, ended: true });
  });

  it('keeps synchronous work synchronous and records a thrown or rejected error code on the span', async () => {
    const { tracing, started } = recordingTracing();
    const parent = tracing.startSpan('step');
    runInSpan(tracing, parent, () => {
      expect(traced('sync', {}, () => 'now')).toBe('now');
      expect(() =>
        traced('throws', {}, () => {
          throw Object.assign(new Error('nope'), { code: 'STORE_UNAVAILABLE' });
        }),
      ).toThrow('nope');
    });
    await expect(
      runInSpan(tracing, parent, () =>
        traced('rejects', {}, async () => Promise.reject(Object.assign(new Error('slow'), { code: 'DEADLINE' }))),
      ),
    ).rejects.toThrow('slow');
    expect(started.slice(1).map((entry) => [entry.name, entry.failed, entry.ended])).toEqual([
      ['sync', undefined, true],
      ['throws', 'STORE_UNAVAILABLE', true],
      ['rejects', 'DEADLINE', true],
    ]);
  });
});
