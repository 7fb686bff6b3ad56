import { stringify } from 'yaml';
import type { DeployModel, DeployService } from './index.js';

/**
 * compose.yaml for the containers topology: NATS JetStream, PostgreSQL and every service of the manifest
 * from one image (the repository Dockerfile), each started as `bitbrat service <name>`.
 */

export const COMPOSE_IMAGE = '${BITBRAT_IMAGE:-bitbrat:local}';
/** The nats:2 line on Alpine: the default (scratch) variant has no shell or wget for a health check. */
export const NATS_IMAGE = 'nats:2-alpine';
export const POSTGRES_IMAGE = 'postgres:16';
const POSTGRES_PASSWORD = '${POSTGRES_PASSWORD:-bitbrat}';
export const PROMETHEUS_IMAGE = 'prom/prometheus:v3.5.0';
export const GRAFANA_IMAGE = 'grafana/grafana:12.1.1';
export const JAEGER_IMAGE = 'jaegertracing/jaeger:2.9.0';
/** The compose profile that adds Prometheus, Grafana and Jaeger: `docker compose --profile observability up`. */
export const OBSERVABILITY_PROFILE = 'observability';

/** The compose secret name (and file name under deploy/secrets) of a secret. */
export function composeSecretName(secret: string): string {
  return secret.toLowerCase();
}

/**
 * The value each environment variable gets in compose. Topology settings are fixed; everything else is
 * taken from the operator's environment or `.env` (empty means "use the service's default").
 */
function envValue(name: string, service: DeployService, model: DeployModel): string {
  switch (name) {
    case 'MESSAGE_BUS_DRIVER':
      return 'nats';
    case 'NATS_URL':
      return 'nats://nats:4222';
    case 'STORE_DRIVER':
      return 'postgres';
    case 'DATABASE_URL':
      // The database is reachable only on the compose network (no published port).
      return `postgres://bitbrat:${POSTGRES_PASSWORD}@postgres:5432/bitbrat`;
    case 'DATA_DIR':
      return '/app/data';
    case 'SECRETS_PROVIDER':
      return 'file';
    case 'SECRETS_DIR':
      return '/run/secrets';
    case 'PORT':
      return String(model.port);
    case 'INSTANCE_ID':
      // One container per service: a stable id keeps its per-instance consumers across restarts.
      return service.name;
    case 'LOG_LEVEL':
      return '${LOG_LEVEL:-info}';
    case 'PUBLISH_MAX_RETRIES':
      return '${PUBLISH_MAX_RETRIES:-5}';
    default:
      return `\${${name}:-}`;
  }
}

/**
 * Prometheus (scraping every service, with deploy/observability/alerts.yml), Grafana (provisioned with
 * that Prometheus and the BitBrat dashboard) and Jaeger (an OTLP receiver with a trace UI), only started
 * with the `observability` profile. Traces reach Jaeger once OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318
 * is set for the services (docs/operating.md).
 */
function observabilityServices(): Record<string, unknown> {
  const profiles = [OBSERVABILITY_PROFILE];
  return {
    prometheus: {
      image: PROMETHEUS_IMAGE,
      profiles,
      restart: 'unless-stopped',
      command: ['--config.file=/etc/prometheus/prometheus.yml', '--storage.tsdb.path=/prometheus', '--storage.tsdb.retention.time=15d'],
      volumes: [
        './observability/prometheus.yml:/etc/prometheus/prometheus.yml:ro',
        './observability/alerts.yml:/etc/prometheus/alerts.yml:ro',
        'prometheus-data:/prometheus',
      ],
      ports: ['127.0.0.1:${BITBRAT_PROMETHEUS_PORT:-9090}:9090'],
    },
    grafana: {
      image: GRAFANA_IMAGE,
      profiles,
      restart: 'unless-stopped',
      environment: {
        GF_SECURITY_ADMIN_PASSWORD: '${GRAFANA_ADMIN_PASSWORD:-admin}',
        GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH: '/var/lib/grafana/dashboards/bitbrat.json',
      },
      volumes: [
        './observability/grafana/provisioning:/etc/grafana/provisioning:ro',
        './observability/grafana/dashboards:/var/lib/grafana/dashboards:ro',
        'grafana-data:/var/lib/grafana',
      ],
      ports: ['127.0.0.1:${BITBRAT_GRAFANA_PORT:-3000}:3000'],
      depends_on: ['prometheus'],
    },
    jaeger: {
      image: JAEGER_IMAGE,
      profiles,
      restart: 'unless-stopped',
      ports: ['127.0.0.1:${BITBRAT_JAEGER_PORT:-16686}:16686'],
    },
  };
}

/**
 * deploy/observability/prometheus.yml: one scrape target per service container (its `service` label),
 * and the alert rules. `honor_labels` keeps the runtime's own `service` label on message metrics.
 */
export function renderPrometheusConfig(model: DeployModel): string {
  const document = {
    global: { scrape_interval: '15s', evaluation_interval: '15s' },
    rule_files: ['/etc/prometheus/alerts.yml'],
    scrape_configs: [
      {
        job_name: 'bitbrat',
        honor_labels: true,
        metrics_path: '/metrics',
        static_configs: model.services.map((service) => ({
          targets: [`${service.name}:${model.port}`],
          labels: { service: service.name },
        })),
      },
    ],
  };
  const header = '# Generated from architecture.yaml by `bitbrat infra generate` — do not edit; `--check` detects drift.\n';
  return header + stringify(document, { lineWidth: 0 });
}

/** `node -e` probe of /readyz (the image has node, not curl). */
export function readinessProbe(port: number): string[] {
  return ['CMD', 'node', '-e', `fetch('http://127.0.0.1:${port}/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`];
}

export function renderCompose(model: DeployModel): string {
  const services: Record<string, unknown> = {
    nats: {
      image: NATS_IMAGE,
      command: ['-js', '-sd', '/data', '-m', '8222'],
      restart: 'unless-stopped',
      volumes: ['nats-data:/data'],
      healthcheck: {
        test: ['CMD', 'wget', '-q', '-O', '-', 'http://127.0.0.1:8222/healthz?js-enabled-only=true'],
        interval: '5s',
        timeout: '3s',
        retries: 10,
        start_period: '5s',
      },
    },
    postgres: {
      image: POSTGRES_IMAGE,
      restart: 'unless-stopped',
      environment: { POSTGRES_USER: 'bitbrat', POSTGRES_PASSWORD, POSTGRES_DB: 'bitbrat' },
      volumes: ['postgres-data:/var/lib/postgresql/data'],
      healthcheck: {
        test: ['CMD-SHELL', 'pg_isready -U bitbrat -d bitbrat'],
        interval: '5s',
        timeout: '3s',
        retries: 10,
        start_period: '10s',
      },
    },
  };

  let hostPort = model.port;
  for (const service of model.services) {
    const environment: Record<string, string> = { HOST: '0.0.0.0' };
    for (const name of service.env) environment[name] = envValue(name, service, model);
    const dependsOn: Record<string, { condition: string }> = { nats: { condition: 'service_healthy' } };
    if (service.needsStore) dependsOn.postgres = { condition: 'service_healthy' };
    const definition: Record<string, unknown> = {
      image: COMPOSE_IMAGE,
      build: { context: model.buildContext, dockerfile: 'Dockerfile' },
      command: ['service', service.name],
      restart: 'unless-stopped',
      environment,
      ...(service.secrets.length > 0 ? { secrets: service.secrets.map(composeSecretName) } : {}),
      healthcheck: { test: readinessProbe(model.port), interval: '10s', timeout: '5s', retries: 5, start_period: '30s' },
      depends_on: dependsOn,
    };
    if (service.manifest.expose) {
      // Loopback only: put a reverse proxy in front to serve it to the world.
      definition.ports = [`127.0.0.1:\${BITBRAT_${service.name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_PORT:-${hostPort}}:${model.port}`];
      hostPort += 1;
    }
    services[service.name] = definition;
  }

  Object.assign(services, observabilityServices());
  const secrets = Object.fromEntries(
    model.secrets.map((secret) => [composeSecretName(secret), { file: `./secrets/${composeSecretName(secret)}` }]),
  );
  const document = { services, volumes: { 'nats-data': {}, 'postgres-data': {}, 'prometheus-data': {}, 'grafana-data': {} }, secrets };
  const header = [
    '# Generated from architecture.yaml by `bitbrat infra generate` — do not edit; `--check` detects drift.',
    '# Secrets: one file per secret in deploy/secrets/ (see deploy/README.md). Settings: your environment or .env.',
    '',
  ].join('\n');
  return header + stringify(document, { lineWidth: 0 });
}
