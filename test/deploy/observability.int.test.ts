/**
 * The ready-made dashboard and alert rules in deploy/observability only name metrics a running platform
 * exposes: every service of architecture.yaml hosted in one process (the all-in-one), /metrics scraped.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createHost, PROJECT_ROOT, type Host } from '../../src/runtime/index.js';
import { loadServices, serviceNames } from '../../src/services/registry.js';
import { createStore, type Store } from '../../src/store/index.js';

const DIR = path.join(PROJECT_ROOT, 'deploy', 'observability');

/** Metric names in a PromQL expression (histogram series map to their histogram). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(bitbrat_[a-z0-9_]+)\b/g)].map((match) => match[1]!.replace(/_(bucket|sum|count)$/, ''));
}

async function dashboardExprs(): Promise<string[]> {
  const dashboard = JSON.parse(await readFile(path.join(DIR, 'grafana', 'dashboards', 'bitbrat.json'), 'utf8')) as {
    panels: Array<{ targets?: Array<{ expr: string }> }>;
  };
  return dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
}

async function alertExprs(): Promise<string[]> {
  const rules = parseYaml(await readFile(path.join(DIR, 'alerts.yml'), 'utf8')) as {
    groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
  };
  return rules.groups.flatMap((group) => group.rules.map((rule) => rule.expr));
}

describe('deploy/observability against a running platform', () => {
  let dataDir: string;
  let store: Store;
  let host: Host;
  let exposed: Set<string>;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'bitbrat-observability-'));
    store = await createStore({ driver: 'pglite', dataDir: 'memory://', embedded: true });
    host = await createHost({
      services: await loadServices(serviceNames()),
      env: { LOG_LEVEL: 'silent', PORT: '0', DATA_DIR: dataDir },
      store,
      listen: false,
    });
    await host.start();
    const response = await host.app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    exposed = new Set([...response.body.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]!));
  }, 120_000);
  afterAll(async () => {
    await host?.stop();
    await store?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('exposes every metric the Grafana dashboard queries', async () => {
    const used = new Set((await dashboardExprs()).flatMap(metricsIn));
    expect(used.size).toBeGreaterThan(15);
    expect([...used].filter((name) => !exposed.has(name))).toEqual([]);
  });

  it('exposes every metric the alert rules use', async () => {
    const used = new Set((await alertExprs()).flatMap(metricsIn));
    expect(used.size).toBeGreaterThan(10);
    expect([...used].filter((name) => !exposed.has(name))).toEqual([]);
  });

  it('names the platform metrics consistently: bitbrat_ prefix, snake case, _total only on counters', async () => {
    const response = await host.app.inject({ method: 'GET', url: '/metrics' });
    const types = [...response.body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((match) => ({ name: match[1]!, type: match[2]! }));
    // bitbrat_process_* are prom-client's default Node.js collectors, named by prom-client.
    for (const { name, type } of types.filter((entry) => !entry.name.startsWith('bitbrat_process_'))) {
      expect(name).toMatch(/^bitbrat_[a-z0-9]+(_[a-z0-9]+)*$/);
      expect(name.endsWith('_total'), `${name} (${type})`).toBe(type === 'counter');
    }
    for (const name of [
      'bitbrat_chat_messages_received_total',
      'bitbrat_chat_messages_sent_total',
      'bitbrat_connector_reconnects_total',
      'bitbrat_connector_connected',
      'bitbrat_eventsub_notifications_total',
      'bitbrat_egress_queue_depth',
      'bitbrat_egress_rate_limited_total',
      'bitbrat_llm_tokens_total',
      'bitbrat_llm_cost_usd_total',
      'bitbrat_moderation_actions_total',
    ]) {
      expect(exposed).toContain(name);
    }
  });

  it('gives every alert a severity and a summary', async () => {
    const rules = parseYaml(await readFile(path.join(DIR, 'alerts.yml'), 'utf8')) as {
      groups: Array<{ rules: Array<{ alert: string; labels?: { severity?: string }; annotations?: { summary?: string } }> }>;
    };
    for (const rule of rules.groups.flatMap((group) => group.rules)) {
      expect(['critical', 'warning', 'info'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
    }
  });
});
