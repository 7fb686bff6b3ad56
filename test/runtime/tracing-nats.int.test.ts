/**
 * Traces across processes: the services of a `!ping` each in an OS process of its own (as `bitbrat up`
 * runs them) over NATS JetStream and PostgreSQL, every one exporting to the same fake OTLP collector.
 * The traceparent travels in the NATS headers, so the message is still one trace.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sendCommand } from '../../src/cli/send.js';
import { startUp, type UpHandle } from '../../src/cli/up.js';
import { startFakeOtlpCollector } from '../fakes/otlp.js';
import { startNatsServer } from '../support/nats-server.js';
import { sql } from '../support/pg-server.js';
import { runPostgresUrl } from '../support/run-postgres.js';
import { freePortBlock } from '../support/ports.js';

const SERVICES = ['api-gateway', 'auth', 'event-router', 'query-analyzer', 'moderation', 'commands', 'persistence', 'finalizer'];

describe('tracing with a process per service on NATS', () => {
  it('makes one trace of a !ping across every service process', async () => {
    const collector = await startFakeOtlpCollector();
    const nats = await startNatsServer();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-trace-'));
    const database = `bitbrat_trace_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;
    const lines: string[] = [];
    let up: UpHandle | undefined;
    try {
      up = await startUp({
        services: SERVICES,
        natsUrl: nats.url,
        databaseUrl: runPostgresUrl(database),
        basePort: await freePortBlock(SERVICES.length),
        dataDir,
        prefix: '',
        env: { ...process.env, LOG_LEVEL: 'warn', OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '100' },
        output: (line) => lines.push(line),
      });
      await up.ready(120_000);

      const out: string[] = [];
      const code = await sendCommand(
        ['!ping', '--user', 'tracy', '--url', up.apiUrl, '--token', up.token, '--timeout', '60000'],
        {},
        { stdout: { write: (text: string) => out.push(text) }, stderr: { write: (text: string) => out.push(text) } },
      );
      expect(out.join('').trim()).toBe('pong');
      expect(code).toBe(0);

      // The commands step's span names the trace; wait until every service's spans of it arrived and
      // every parent they name is among them (the exporters flush every 100 ms).
      const commands = await collector.waitFor((spans) => spans.some((span) => span.attributes['bitbrat.step'] === 'commands'), 60_000);
      const traceId = commands.find((span) => span.attributes['bitbrat.step'] === 'commands')!.traceId;
      const spans = (
        await collector.waitFor((all) => {
          const mine = all.filter((span) => span.traceId === traceId);
          const ids = new Set(mine.map((span) => span.spanId));
          const services = new Set(mine.map((span) => span.resource['service.name']));
          return (
            SERVICES.every((service) => services.has(service)) &&
            mine.every((span) => span.parentSpanId === '' || ids.has(span.parentSpanId))
          );
        }, 60_000)
      ).filter((span) => span.traceId === traceId);

      // One root (the gateway's publish of the chat message), every process's spans in the same tree.
      const roots = spans.filter((span) => span.parentSpanId === '');
      expect(roots).toHaveLength(1);
      expect(roots[0]!.resource['service.name']).toBe('api-gateway');
      expect(new Set(spans.map((span) => span.resource['service.name']))).toEqual(new Set(SERVICES));
      for (const span of spans.filter((candidate) => candidate.kind === 5)) expect(span.attributes['messaging.system']).toBe('nats');
      const steps = spans
        .filter((span) => span.attributes['bitbrat.step'] !== undefined)
        .map((span) => `${span.resource['service.name']}/${span.attributes['bitbrat.step']}:${span.attributes['bitbrat.outcome']}`);
      expect(steps).toEqual(
        expect.arrayContaining(['query-analyzer/query-analyzer:continue', 'event-router/router:continue', 'commands/commands:continue']),
      );
      expect(collector.requests.protobuf).toBeGreaterThan(0);
    } finally {
      await up?.stop();
      await nats.stop();
      await collector.close();
      await sql(runPostgresUrl(), `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 300_000);
});
