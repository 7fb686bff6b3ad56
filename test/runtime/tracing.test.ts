import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/runtime/manifest.js';
import { loadTracingConfig, tracesUrl } from '../../src/runtime/tracing-config.js';
import {
  createTracing,
  currentSpan,
  httpClientAttributes,
  parseTraceparent,
  runInSpan,
  traced,
  tracedCall,
  type RuntimeSpan,
  type StartSpanOptions,
  type Tracing,
} from '../../src/runtime/tracing.js';

interface Recorded {
  name: string;
  options: StartSpanOptions;
  attributes: Record<string, unknown>;
  failed?: string;
  failure?: string;
  exceptions: Array<{ error: unknown; message?: string }>;
  ended: boolean;
}

/** A Tracing that records what it was asked, for testing the runtime side without the SDK. */
function recordingTracing() {
  const started: Recorded[] = [];
  let next = 0;
  const tracing: Tracing = {
    startSpan(name, options = {}) {
      const entry: Recorded = { name, options, attributes: { ...options.attributes }, exceptions: [], ended: false };
      started.push(entry);
      next += 1;
      const spanId = next.toString(16).padStart(16, '0');
      const span: RuntimeSpan = {
        traceId: 'a'.repeat(32),
        spanId,
        traceparent: `00-${'a'.repeat(32)}-${spanId}-01`,
        setAttributes: (attributes) => {
          Object.assign(entry.attributes, attributes);
        },
        rename: (renamed) => {
          entry.name = renamed;
        },
        fail: (code, message) => {
          entry.failed = code;
          entry.failure = message;
        },
        recordException: (error, message) => {
          entry.exceptions.push({ error, message });
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

  it('records a failure of traced work as an exception event too', async () => {
    const { tracing, started } = recordingTracing();
    const error = Object.assign(new Error('store down'), { code: 'STORE_UNAVAILABLE' });
    await expect(
      runInSpan(tracing, tracing.startSpan('step'), () => traced('store getUser', {}, async () => Promise.reject(error))),
    ).rejects.toBe(error);
    expect(started[1]).toMatchObject({
      failed: 'STORE_UNAVAILABLE',
      failure: 'store down',
      exceptions: [{ error, message: 'store down' }],
    });
  });
});

describe('tracedCall, the spans of a connector’s API calls', () => {
  it('does no work with tracing off: the work is called with no span, attributes are never built, its value comes back as is', async () => {
    let built = 0;
    const options = {
      attributes: () => {
        built += 1;
        return { 'http.request.method': 'GET' };
      },
      describeError: () => {
        built += 1;
        return { type: 'x', message: 'x' };
      },
    };
    const spans: Array<RuntimeSpan | undefined> = [];
    const promise = Promise.resolve('live');
    expect(
      tracedCall(undefined, 'twitch.helix GET /streams', options, (span) => {
        spans.push(span);
        return promise;
      }),
    ).toBe(promise);
    expect(tracedCall(undefined, 'sync', options, () => 7)).toBe(7);
    const error = new Error('refused');
    const rejected = Promise.reject(error);
    expect(tracedCall(undefined, 'rejects', options, () => rejected)).toBe(rejected);
    await expect(rejected).rejects.toBe(error);
    expect(() =>
      tracedCall(undefined, 'throws', options, () => {
        throw error;
      }),
    ).toThrow(error);
    expect(spans).toEqual([undefined]);
    expect(built).toBe(0);
    expect(currentSpan()).toBeUndefined();
  });

  it('makes a root client span on the given tracer outside a message, current while the work runs', async () => {
    const { tracing, started } = recordingTracing();
    const value = await tracedCall(
      tracing,
      'twitch.helix GET /streams',
      { attributes: () => ({ 'bitbrat.platform': 'twitch' }) },
      async (span) => {
        expect(span).toBeDefined();
        expect(currentSpan()).toBe(span);
        span!.setAttributes({ 'http.response.status_code': 200 });
        return 'live';
      },
    );
    expect(value).toBe('live');
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({
      name: 'twitch.helix GET /streams',
      options: { kind: 'client' },
      attributes: { 'bitbrat.platform': 'twitch', 'http.response.status_code': 200 },
      ended: true,
    });
    expect(started[0]!.options.parent).toBeUndefined();
    expect(currentSpan()).toBeUndefined();
  });

  it('makes a child of the message’s span inside a message, on the message’s tracer', async () => {
    const host = recordingTracing();
    const message = recordingTracing();
    const parent = message.tracing.startSpan('moderation moderation');
    await runInSpan(message.tracing, parent, () =>
      tracedCall(host.tracing, 'twitch.helix DELETE /moderation/chat', {}, async (span) => {
        expect(currentSpan()).toBe(span);
      }),
    );
    expect(host.started).toEqual([]);
    expect(message.started[1]).toMatchObject({
      name: 'twitch.helix DELETE /moderation/chat',
      options: { kind: 'client', parent },
      ended: true,
    });
  });

  it('keeps synchronous work synchronous and takes another kind when asked', () => {
    const { tracing, started } = recordingTracing();
    expect(tracedCall(tracing, 'obs request', { kind: 'internal' }, () => 'now')).toBe('now');
    expect(started[0]).toMatchObject({ options: { kind: 'internal' }, ended: true });
  });

  it('marks a failed call as an error with the described type and message, records the exception and rethrows it as is', async () => {
    const { tracing, started } = recordingTracing();
    const error = Object.assign(new Error('Encountered HTTP status code 403 ... URL: https://api.twitch.tv/helix/x?secret'), {
      statusCode: 403,
    });
    const describeError = (failure: unknown) => ({
      type: String((failure as { statusCode: number }).statusCode),
      message: 'Twitch answered HTTP 403',
    });
    await expect(
      tracedCall(tracing, 'twitch.helix POST /moderation/bans', { describeError }, async () => Promise.reject(error)),
    ).rejects.toBe(error);
    expect(() =>
      tracedCall(tracing, 'sync', {}, () => {
        throw Object.assign(new Error('bad'), { code: 'CONFIG_INVALID' });
      }),
    ).toThrow('bad');
    expect(started.map((entry) => [entry.name, entry.failed, entry.failure, entry.exceptions.map((e) => e.message), entry.ended])).toEqual([
      ['twitch.helix POST /moderation/bans', '403', 'Twitch answered HTTP 403', ['Twitch answered HTTP 403'], true],
      ['sync', 'CONFIG_INVALID', 'bad', ['bad'], true],
    ]);
  });

  it('describes an HTTP request in OpenTelemetry’s terms, without the query string', () => {
    expect(httpClientAttributes('get', 'https://api.twitch.tv/helix/users?login=someone')).toEqual({
      'http.request.method': 'GET',
      'server.address': 'api.twitch.tv',
      'server.port': 443,
      'url.full': 'https://api.twitch.tv/helix/users',
    });
    expect(httpClientAttributes('POST', new URL('http://[::1]:8080/public/v1/chat'))).toMatchObject({
      'server.address': '::1',
      'server.port': 8080,
    });
    expect(httpClientAttributes('get', 'not a url')).toEqual({ 'http.request.method': 'GET' });
  });
});
