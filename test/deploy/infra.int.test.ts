import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseHcl } from '@cdktf/hcl2json';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { pubsubSubscriptionId, pubsubTopicId } from '../../src/bus/pubsub.js';
import { checkInfra, generateInfra, renderInfra, type GenerateResult } from '../../src/deploy/index.js';
import { composeSecretName } from '../../src/deploy/compose.js';
import { CLOUD_RUN_OMITTED_ENV, subscriptionResourceName, tfName } from '../../src/deploy/terraform.js';
import { loadArchitecture, PROJECT_ROOT, type Architecture } from '../../src/runtime/manifest.js';
import { requireServer } from '../support/wait.js';
import { FIRESTORE_INDEXES } from '../../src/store/firestore-indexes.js';

const run = promisify(execFile);
const architecture = loadArchitecture();
const services = Object.entries(architecture.services);
const isPerInstance = (topic: string) => topic.includes('{instanceId}');
const staticTopics = [
  ...new Set(services.flatMap(([, manifest]) => [...manifest.consumes, ...manifest.publishes]).filter((topic) => !isPerInstance(topic))),
].sort();
const envOf = (name: string) => [...new Set([...architecture.defaults.env, ...architecture.services[name]!.env])];
const secretsOf = (name: string) => [...new Set([...architecture.defaults.secrets, ...architecture.services[name]!.secrets])];
const storeUsers = new Set(
  services
    .filter(([, manifest]) => /\bneedsStore\s*:\s*true\b/.test(readFileSync(path.join(PROJECT_ROOT, manifest.entry), 'utf8')))
    .map(([name]) => name),
);

async function dockerComposeAvailable(): Promise<boolean> {
  try {
    await run('docker-compose', ['version'], { timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/** Splits a Terraform string template into literal text and `${…}` expressions (nested braces and quotes aware). */
function templateParts(value: string): Array<{ kind: 'literal' | 'expression'; text: string }> {
  const parts: Array<{ kind: 'literal' | 'expression'; text: string }> = [];
  let literal = '';
  let i = 0;
  while (i < value.length) {
    if (value.startsWith('$${', i)) {
      literal += '$${';
      i += 3;
      continue;
    }
    if (!value.startsWith('${', i)) {
      literal += value[i];
      i += 1;
      continue;
    }
    if (literal) parts.push({ kind: 'literal', text: literal });
    literal = '';
    let depth = 1;
    let j = i + 2;
    let inString = false;
    while (j < value.length && depth > 0) {
      const char = value[j]!;
      if (inString) {
        if (char === '\\') j += 1;
        else if (char === '"') inString = false;
      } else if (char === '"') inString = true;
      else if (char === '{') depth += 1;
      else if (char === '}') depth -= 1;
      j += 1;
    }
    if (depth !== 0) throw new Error(`unterminated \${ in ${JSON.stringify(value)}`);
    parts.push({ kind: 'expression', text: value.slice(i + 2, j - 1) });
    i = j;
  }
  if (literal) parts.push({ kind: 'literal', text: literal });
  return parts;
}

/** The references (`google_x.y`, `var.x`, `local.x`, `data.x.y`) an expression makes, string literals removed. */
function referencesIn(expression: string): string[] {
  const code = expression.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const found: string[] = [];
  for (const match of code.matchAll(
    /\b(?:(var|local)\.([A-Za-z_][\w-]*)|data\.([A-Za-z_]\w*)\.([A-Za-z_][\w-]*)|(google_[a-z0-9_]+)\.([A-Za-z_][\w-]*))/g,
  )) {
    if (match[1]) found.push(`${match[1]}.${match[2]}`);
    else if (match[3]) found.push(`data.${match[3]}.${match[4]}`);
    else found.push(`${match[5]}.${match[6]}`);
  }
  return found;
}

function walkStrings(value: unknown, visit: (text: string, pathKeys: string[]) => void, pathKeys: string[] = []): void {
  if (typeof value === 'string') visit(value, pathKeys);
  else if (Array.isArray(value)) for (const [index, item] of value.entries()) walkStrings(item, visit, [...pathKeys, String(index)]);
  else if (value && typeof value === 'object')
    for (const [key, item] of Object.entries(value)) walkStrings(item, visit, [...pathKeys, key]);
}

type Body = Record<string, any>;
interface Terraform {
  files: Record<string, Body>;
  resources: Record<string, Record<string, Body>>;
  data: Record<string, Record<string, Body>>;
  variables: Record<string, Body>;
  locals: Record<string, unknown>;
  outputs: Record<string, Body>;
}

/** Parses every file of the terraform directory: `*.tf.json` as JSON, `*.tf` with the HCL parser. */
async function loadTerraform(dir: string): Promise<Terraform> {
  const result: Terraform = { files: {}, resources: {}, data: {}, variables: {}, locals: {}, outputs: {} };
  const names = readdirSync(dir).sort();
  expect(names.length).toBeGreaterThan(0);
  for (const name of names) {
    const text = readFileSync(path.join(dir, name), 'utf8');
    let body: Body;
    if (name.endsWith('.tf.json')) body = JSON.parse(text) as Body;
    else if (name.endsWith('.tf')) body = (await parseHcl(name, text)) as Body;
    else throw new Error(`unexpected file in terraform/: ${name}`);
    result.files[name] = body;
    for (const [type, instances] of Object.entries((body.resource ?? {}) as Record<string, Record<string, Body>>)) {
      for (const [id, resource] of Object.entries(instances)) {
        expect(result.resources[type]?.[id], `${type}.${id} declared twice`).toBeUndefined();
        (result.resources[type] ??= {})[id] = resource;
      }
    }
    for (const [type, instances] of Object.entries((body.data ?? {}) as Record<string, Record<string, Body>>))
      Object.assign((result.data[type] ??= {}), instances);
    Object.assign(result.variables, body.variable ?? {});
    Object.assign(result.locals, body.locals ?? {});
    Object.assign(result.outputs, body.output ?? {});
  }
  return result;
}

const resourcesOf = (tf: Terraform, type: string) => Object.entries(tf.resources[type] ?? {});
const saMember = (service: string) => `serviceAccount:\${google_service_account.${tfName(service)}.email}`;

describe('generated deployment files', () => {
  let outDir: string;
  let generated: GenerateResult;
  let tf: Terraform;
  let compose: Body;

  beforeAll(async () => {
    outDir = mkdtempSync(path.join(tmpdir(), 'bitbrat-infra-'));
    generated = await generateInfra(architecture, { outDir });
    tf = await loadTerraform(path.join(outDir, 'terraform'));
    compose = parseYaml(readFileSync(path.join(outDir, 'compose.yaml'), 'utf8')) as Body;
  });

  afterAll(() => {
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  describe('compose.yaml', () => {
    it('is accepted by docker-compose config', async () => {
      requireServer('docker-compose', await dockerComposeAvailable(), 'apt-get install -y docker-compose');
      const { stdout } = await run('docker-compose', ['-f', path.join(outDir, 'compose.yaml'), 'config'], {
        cwd: outDir,
        timeout: 60_000,
        env: { PATH: process.env.PATH ?? '' },
      });
      const resolved = parseYaml(stdout) as Body;
      // docker-compose 1.x lists services of every profile; the observability ones start only with the profile.
      expect(Object.keys(resolved.services).sort()).toEqual(
        ['nats', 'postgres', 'prometheus', 'grafana', 'jaeger', ...Object.keys(architecture.services)].sort(),
      );
      // Interpolation defaults resolve: the database URL and image are concrete after `config`.
      expect(resolved.services.auth.environment.DATABASE_URL).toBe('postgres://bitbrat:bitbrat@postgres:5432/bitbrat');
      expect(resolved.services.auth.image).toBe('bitbrat:local');
      expect(resolved.services.auth.build.context).toBe(PROJECT_ROOT);
      expect(resolved.secrets.token_encryption_key.file).toBe(path.join(outDir, 'secrets', 'token_encryption_key'));
    });

    it('adds Prometheus, Grafana and Jaeger only under the observability profile, Prometheus scraping every service', () => {
      for (const name of ['prometheus', 'grafana', 'jaeger']) expect(compose.services[name].profiles, name).toEqual(['observability']);
      for (const [name, service] of Object.entries(compose.services) as Array<[string, { profiles?: string[] }]>)
        if (!['prometheus', 'grafana', 'jaeger'].includes(name)) expect(service.profiles, name).toBeUndefined();
      expect(compose.services.prometheus.volumes).toContain('./observability/alerts.yml:/etc/prometheus/alerts.yml:ro');
      expect(compose.services.grafana.volumes).toContain('./observability/grafana/dashboards:/var/lib/grafana/dashboards:ro');
      const prometheus = parseYaml(readFileSync(path.join(outDir, 'observability', 'prometheus.yml'), 'utf8')) as Body;
      const targets = prometheus.scrape_configs[0].static_configs.map((config: { targets: string[]; labels: { service: string } }) => [
        config.labels.service,
        config.targets[0],
      ]);
      expect(targets).toEqual(services.map(([name]) => [name, `${name}:${architecture.defaults.port}`]));
      expect(prometheus.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
    });

    it('runs NATS with JetStream and PostgreSQL 16, both with health checks', () => {
      expect(compose.services.nats.image).toMatch(/^nats:2/);
      expect(compose.services.nats.command).toContain('-js');
      expect(compose.services.nats.healthcheck.test.join(' ')).toContain('/healthz');
      expect(compose.services.postgres.image).toBe('postgres:16');
      expect(compose.services.postgres.healthcheck.test.join(' ')).toContain('pg_isready');
    });

    it('runs every manifest service from one image as `service <name>` with its env, secrets, readiness check and dependencies', () => {
      const images = new Set<string>();
      for (const [name, manifest] of services) {
        const service = compose.services[name];
        expect(service, name).toBeDefined();
        images.add(service.image);
        expect(service.build).toEqual({ context: path.relative(outDir, PROJECT_ROOT), dockerfile: 'Dockerfile' });
        expect(service.command).toEqual(['service', name]);
        for (const env of envOf(name)) expect(Object.keys(service.environment), `${name} ${env}`).toContain(env);
        expect(service.environment).toMatchObject({
          MESSAGE_BUS_DRIVER: 'nats',
          NATS_URL: 'nats://nats:4222',
          STORE_DRIVER: 'postgres',
          SECRETS_PROVIDER: 'file',
          SECRETS_DIR: '/run/secrets',
          HOST: '0.0.0.0',
        });
        expect(service.environment.DATABASE_URL).toMatch(/^postgres:\/\/bitbrat:.*@postgres:5432\/bitbrat$/);
        expect(service.secrets ?? []).toEqual(secretsOf(name).map(composeSecretName));
        for (const secret of secretsOf(name))
          expect(compose.secrets[composeSecretName(secret)]).toEqual({ file: `./secrets/${composeSecretName(secret)}` });
        expect(service.healthcheck.test.join(' ')).toContain(`http://127.0.0.1:${architecture.defaults.port}/readyz`);
        expect(service.depends_on.nats).toEqual({ condition: 'service_healthy' });
        if (storeUsers.has(name)) expect(service.depends_on.postgres).toEqual({ condition: 'service_healthy' });
        else expect(service.depends_on.postgres).toBeUndefined();
        if (manifest.expose) expect(service.ports).toHaveLength(1);
        else expect(service.ports).toBeUndefined();
      }
      expect(images.size).toBe(1);
      // No secret value or secret name leaks into the environment.
      for (const [name] of services)
        for (const secret of secretsOf(name)) expect(compose.services[name].environment[secret]).toBeUndefined();
    });
  });

  describe('terraform', () => {
    it('parses every file, and every expression is valid HCL that only references declared things', async () => {
      const declared = new Set<string>();
      for (const [type, instances] of Object.entries(tf.resources)) for (const id of Object.keys(instances)) declared.add(`${type}.${id}`);
      for (const [type, instances] of Object.entries(tf.data)) for (const id of Object.keys(instances)) declared.add(`data.${type}.${id}`);
      for (const name of Object.keys(tf.variables)) declared.add(`var.${name}`);
      for (const name of Object.keys(tf.locals)) declared.add(`local.${name}`);

      const templates: string[] = [];
      const unresolved: string[] = [];
      let references = 0;
      for (const [fileName, body] of Object.entries(tf.files)) {
        walkStrings(body, (text, keys) => {
          if (keys.at(-2) === 'depends_on') {
            references += 1;
            if (!declared.has(text)) unresolved.push(`${fileName}: depends_on ${text}`);
            return;
          }
          if (!text.includes('${')) return;
          templates.push(text);
          for (const part of templateParts(text)) {
            if (part.kind !== 'expression') continue;
            for (const reference of referencesIn(part.text)) {
              references += 1;
              const [head, second, third] = reference.split('.');
              const key = head === 'data' ? `data.${second}.${third}` : `${head}.${second}`;
              if (!declared.has(key)) unresolved.push(`${fileName}: ${reference}`);
            }
          }
        });
      }
      expect(unresolved).toEqual([]);
      expect(references).toBeGreaterThan(100);

      // Terraform's own HCL parser (hcl2json) accepts every template: literal text escaped, expressions as they are.
      const hcl = templates
        .map((text, index) => {
          const body = templateParts(text)
            .map((part) => (part.kind === 'expression' ? `\${${part.text}}` : part.text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')))
            .join('');
          return `t${index} = "${body}"`;
        })
        .join('\n');
      const parsed = (await parseHcl('templates.tf', `locals {\n${hcl}\n}\n`)) as { locals: Array<Record<string, string>> };
      expect(Object.keys(parsed.locals[0]!)).toHaveLength(templates.length);
    });

    it('declares the provider, the project/region/image variables and an Artifact Registry repository', () => {
      const main = tf.files['main.tf.json']!;
      expect(main.terraform.required_providers.google.source).toBe('hashicorp/google');
      expect(main.provider.google).toEqual({ project: '${var.project}', region: '${var.region}' });
      for (const name of ['project', 'region', 'image_tag', 'image', 'bus_prefix', 'domains'])
        expect(tf.variables[name], name).toBeDefined();
      const [[, repository]] = resourcesOf(tf, 'google_artifact_registry_repository') as [[string, Body]];
      expect(repository.format).toBe('DOCKER');
      expect(String(tf.locals.image)).toContain('google_artifact_registry_repository.bitbrat.repository_id');
      expect(String(tf.locals.image)).toContain('var.image_tag');
    });

    it('has a Cloud Run service per manifest service with scaling, connector, env, secret env and ingress from the manifest', () => {
      for (const [name, manifest] of services) {
        const service = tf.resources.google_cloud_run_v2_service?.[tfName(name)];
        expect(service, name).toBeDefined();
        const template = service!.template[0];
        const consumer = manifest.consumes.length > 0;
        expect(template.scaling[0].max_instance_count).toBe(manifest.scaling.max);
        expect(template.scaling[0].min_instance_count).toBe(consumer ? Math.max(1, manifest.scaling.min) : manifest.scaling.min);
        expect(template.vpc_access[0].connector).toBe('${google_vpc_access_connector.connector.id}');
        expect(template.service_account).toBe(`\${google_service_account.${tfName(name)}.email}`);
        expect(service!.ingress).toBe(manifest.expose ? 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER' : 'INGRESS_TRAFFIC_INTERNAL_ONLY');
        const container = template.containers[0];
        expect(container.image).toBe('${local.image}');
        expect(container.args).toEqual(['service', name]);
        expect(container.resources[0].cpu_idle).toBe(!consumer);
        expect(container.startup_probe[0].http_get[0].path).toBe('/readyz');
        const env = new Map<string, Body>(container.env.map((entry: Body) => [entry.name, entry]));
        for (const variable of envOf(name)) {
          if (variable in CLOUD_RUN_OMITTED_ENV) expect(env.has(variable), `${name} must not set ${variable}`).toBe(false);
          else expect(env.has(variable), `${name} ${variable}`).toBe(true);
        }
        expect(env.get('MESSAGE_BUS_DRIVER')?.value).toBe('pubsub');
        expect(env.get('STORE_DRIVER')?.value).toBe('firestore');
        // Tracing is set once for every service (var.otel), and per service where service_env says otherwise.
        expect(env.get('OTEL_EXPORTER_OTLP_ENDPOINT')?.value).toBe(
          `\${try(var.service_env["${name}"]["OTEL_EXPORTER_OTLP_ENDPOINT"], var.otel["OTEL_EXPORTER_OTLP_ENDPOINT"], "")}`,
        );
        for (const secret of secretsOf(name)) {
          expect(env.get(secret)?.value, `${name} ${secret} must come from Secret Manager`).toBeUndefined();
          expect(env.get(secret)?.value_source[0].secret_key_ref[0].secret).toBe(
            `\${google_secret_manager_secret.${tfName(secret)}.secret_id}`,
          );
        }
      }
      expect(Object.keys(tf.resources.google_cloud_run_v2_service!)).toHaveLength(services.length);
      expect(tf.variables.otel).toMatchObject({ type: 'map(string)', default: {} });
      expect(tf.resources.google_cloud_run_v2_service!['ingress_egress']!.template[0].scaling[0].max_instance_count).toBe(1);
    });

    it('has a Pub/Sub topic for every manifest topic, none for per-instance topics, named as the bus driver names them', () => {
      const topics = resourcesOf(tf, 'google_pubsub_topic');
      const names = topics.map(([, topic]) => String(topic.name).replace('${var.bus_prefix}', '')).sort();
      expect(names).toEqual([...staticTopics, 'internal.pubsub-deadletter'].sort());
      for (const topic of staticTopics)
        expect(tf.resources.google_pubsub_topic![tfName(topic)]!.name).toBe(`\${var.bus_prefix}${pubsubTopicId('', topic)}`);
      expect(names.some((name) => name.includes('{'))).toBe(false);
    });

    it('has one subscription per (service, consumed topic) with retry and dead-letter policies, named as the driver names them', () => {
      const expected = services.flatMap(([name, manifest]) =>
        manifest.consumes.filter((topic) => !isPerInstance(topic)).map((topic) => ({ name, topic })),
      );
      const subscriptions = tf.resources.google_pubsub_subscription!;
      for (const { name, topic } of expected) {
        const subscription = subscriptions[subscriptionResourceName(topic, name)];
        expect(subscription, `${name} on ${topic}`).toBeDefined();
        expect(subscription!.name).toBe(`\${var.bus_prefix}${pubsubSubscriptionId('', topic, name)}`);
        expect(subscription!.topic).toBe(`\${google_pubsub_topic.${tfName(topic)}.id}`);
        expect(subscription!.dead_letter_policy[0].dead_letter_topic).toBe('${google_pubsub_topic.deadletter.id}');
        expect(subscription!.retry_policy[0]).toMatchObject({ minimum_backoff: expect.any(String), maximum_backoff: expect.any(String) });
        expect(subscription!.push_config).toBeUndefined();
      }
      // Plus the subscription that keeps dead-lettered messages.
      expect(Object.keys(subscriptions)).toHaveLength(expected.length + 1);
    });

    it('grants each service account only what its service needs', () => {
      const byMember = (type: string) => resourcesOf(tf, type).map(([, grant]) => grant);
      for (const [name, manifest] of services) {
        const member = saMember(name);
        const published = byMember('google_pubsub_topic_iam_member').filter((grant) => grant.member === member);
        expect(published.every((grant) => grant.role === 'roles/pubsub.publisher')).toBe(true);
        expect(published.map((grant) => grant.topic).sort()).toEqual(
          [...new Set(manifest.publishes.filter((topic) => !isPerInstance(topic)))]
            .map((topic) => `\${google_pubsub_topic.${tfName(topic)}.name}`)
            .sort(),
        );
        const subscribed = byMember('google_pubsub_subscription_iam_member').filter((grant) => grant.member === member);
        expect(subscribed.map((grant) => grant.subscription).sort()).toEqual(
          manifest.consumes
            .filter((topic) => !isPerInstance(topic))
            .map((topic) => `\${google_pubsub_subscription.${subscriptionResourceName(topic, name)}.name}`)
            .sort(),
        );
        const secrets = byMember('google_secret_manager_secret_iam_member').filter((grant) => grant.member === member);
        expect(secrets.map((grant) => grant.secret_id).sort()).toEqual(
          secretsOf(name)
            .map((secret) => `\${google_secret_manager_secret.${tfName(secret)}.secret_id}`)
            .sort(),
        );
        const project = byMember('google_project_iam_member').filter((grant) => grant.member === member);
        expect(project.some((grant) => grant.role === 'roles/datastore.user')).toBe(storeUsers.has(name));
        expect(project.some((grant) => String(grant.role).includes('instance_egress_consumer'))).toBe(
          manifest.consumes.some(isPerInstance),
        );
        // No broad predefined roles anywhere.
        for (const grant of project)
          expect(['roles/owner', 'roles/editor', 'roles/pubsub.editor', 'roles/pubsub.admin']).not.toContain(grant.role);
      }
      const replyRole = tf.resources.google_project_iam_custom_role?.reply_publisher;
      expect(replyRole?.permissions).toEqual(['pubsub.topics.publish']);
    });

    it('declares a secret per manifest secret, Firestore, the VPC with connector and proxy-only subnet', () => {
      const secretIds = resourcesOf(tf, 'google_secret_manager_secret')
        .map(([, secret]) => secret.secret_id)
        .sort();
      expect(secretIds).toEqual([...new Set(services.flatMap(([name]) => secretsOf(name)))].sort());
      expect(resourcesOf(tf, 'google_firestore_database')).toHaveLength(1);
      // Production Firestore refuses a query without its composite index (the emulator does not): each is declared.
      const indexes = resourcesOf(tf, 'google_firestore_index').map(([, index]) => ({
        collection: index.collection,
        fields: (index.fields as Array<{ field_path: string; order: string }>).map((field) => ({
          field: field.field_path,
          order: field.order,
        })),
        database: index.database,
      }));
      expect(indexes.map(({ collection, fields }) => ({ collection, fields }))).toEqual(
        FIRESTORE_INDEXES.map((index) => ({ collection: index.collection, fields: index.fields })),
      );
      expect(new Set(indexes.map((index) => index.database))).toEqual(new Set(['${google_firestore_database.main.name}']));
      expect(indexes).toContainEqual(
        expect.objectContaining({
          collection: 'events',
          fields: [
            { field: 'finalizedAt', order: 'ASCENDING' },
            { field: 'receivedAt', order: 'ASCENDING' },
          ],
        }),
      );
      expect(resourcesOf(tf, 'google_compute_network')).toHaveLength(1);
      expect(resourcesOf(tf, 'google_vpc_access_connector')).toHaveLength(1);
      expect(resourcesOf(tf, 'google_compute_subnetwork').map(([, subnet]) => subnet.purpose ?? 'PRIVATE')).toContain(
        'REGIONAL_MANAGED_PROXY',
      );
    });

    it('routes the internal load balancer to every service and the external one only to exposed services and their paths', () => {
      const internal = tf.resources.google_compute_forwarding_rule!.internal!;
      expect(internal.load_balancing_scheme).toBe('INTERNAL_MANAGED');
      expect(resourcesOf(tf, 'google_compute_region_backend_service')).toHaveLength(services.length);

      const exposed = services.filter(([, manifest]) => manifest.expose).map(([name]) => name);
      const externalBackends = resourcesOf(tf, 'google_compute_backend_service');
      expect(externalBackends.map(([id]) => id).sort()).toEqual(exposed.map((name) => `external_${tfName(name)}`).sort());
      for (const [, backend] of externalBackends) expect(backend.load_balancing_scheme).toBe('EXTERNAL_MANAGED');
      const externalNegs = resourcesOf(tf, 'google_compute_region_network_endpoint_group').filter(([id]) => id.startsWith('external_'));
      expect(externalNegs.map(([, neg]) => neg.network_endpoint_type)).toEqual(exposed.map(() => 'SERVERLESS'));

      const urlMap = tf.resources.google_compute_url_map!.external!;
      const rules = urlMap.path_matcher[0].path_rule as Array<{ paths: string[]; service: string }>;
      const routed = rules.flatMap((rule) => rule.paths).sort();
      expect(routed).toEqual(
        services
          .filter(([, manifest]) => manifest.expose)
          .flatMap(([, manifest]) => manifest.paths)
          .sort(),
      );
      for (const rule of rules) {
        const owner = exposed.find((name) => rule.service === `\${google_compute_backend_service.external_${tfName(name)}.id}`);
        expect(owner, rule.service).toBeDefined();
        expect(rule.paths).toEqual(architecture.services[owner!]!.paths);
      }
      // Unlisted paths never reach a service.
      expect(urlMap.default_service).toBeUndefined();
      expect(urlMap.default_url_redirect[0].path_redirect).toBe('/');
      expect(tf.resources.google_compute_global_forwarding_rule!.https!.port_range).toBe('443');
      expect(tf.resources.google_compute_target_https_proxy!.external!.ssl_certificates).toEqual([
        '${google_compute_managed_ssl_certificate.external.id}',
      ]);
    });
  });

  it('reports the min-instance change for pull consumers with scaling.min 0', () => {
    const zeroMinConsumers = services
      .filter(([, manifest]) => manifest.consumes.length > 0 && manifest.scaling.min === 0)
      .map(([name]) => name);
    for (const name of zeroMinConsumers) expect(generated.warnings.some((warning) => warning.startsWith(`${name} `))).toBe(true);
  });
});

describe('infra --check', () => {
  it('finds the committed deploy/ directory in sync with architecture.yaml', async () => {
    const result = await checkInfra(architecture);
    expect(result.outDir).toBe(path.join(PROJECT_ROOT, 'deploy'));
    expect(result.differences).toEqual([]);
    expect(result.inSync).toBe(true);
    // And byte for byte: what is on disk is what the generator renders.
    const { files } = renderInfra(architecture);
    for (const file of files) expect(readFileSync(path.join(PROJECT_ROOT, 'deploy', file.path), 'utf8')).toBe(file.content);
  });

  it('reports changed, missing and stale files, and generate brings the directory back in sync', async () => {
    const outDir = mkdtempSync(path.join(tmpdir(), 'bitbrat-infra-check-'));
    try {
      await generateInfra(architecture, { outDir });
      expect((await checkInfra(architecture, { outDir })).inSync).toBe(true);

      writeFileSync(path.join(outDir, 'compose.yaml'), `${readFileSync(path.join(outDir, 'compose.yaml'), 'utf8')}# hand edit\n`);
      rmSync(path.join(outDir, 'terraform', 'pubsub.tf.json'));
      writeFileSync(path.join(outDir, 'terraform', 'old.tf.json'), '{}\n');
      writeFileSync(path.join(outDir, 'secrets', 'token_encryption_key'), 'not-generated\n');
      const drift = await checkInfra(architecture, { outDir });
      expect(drift.inSync).toBe(false);
      expect(drift.differences).toEqual(
        expect.arrayContaining([
          { path: 'compose.yaml', kind: 'changed' },
          { path: 'terraform/pubsub.tf.json', kind: 'missing' },
          { path: 'terraform/old.tf.json', kind: 'extra' },
        ]),
      );
      expect(drift.differences).toHaveLength(3);

      // A manifest change is drift too.
      const changed: Architecture = structuredClone(architecture);
      changed.services.auth!.consumes = [...changed.services.auth!.consumes, 'internal.extra.v1'];
      await generateInfra(architecture, { outDir });
      const manifestDrift = await checkInfra(changed, { outDir });
      expect(manifestDrift.differences.map((difference) => difference.path)).toEqual(
        expect.arrayContaining(['README.md', 'terraform/pubsub.tf.json', 'terraform/iam.tf.json']),
      );

      const regenerated = await generateInfra(changed, { outDir });
      expect(regenerated.removed).toEqual([]);
      expect((await checkInfra(changed, { outDir })).inSync).toBe(true);
      expect(
        JSON.parse(readFileSync(path.join(outDir, 'terraform', 'pubsub.tf.json'), 'utf8')).resource.google_pubsub_subscription
          .internal_extra_v1__auth,
      ).toBeDefined();
      // Secret files are the operator's: never removed or reported.
      expect(readFileSync(path.join(outDir, 'secrets', 'token_encryption_key'), 'utf8')).toBe('not-generated\n');
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  });

  it('removes a stale generated terraform file on generate', async () => {
    const outDir = mkdtempSync(path.join(tmpdir(), 'bitbrat-infra-stale-'));
    try {
      await generateInfra(architecture, { outDir });
      writeFileSync(path.join(outDir, 'terraform', 'stale.tf.json'), '{}\n');
      const result = await generateInfra(architecture, { outDir });
      expect(result.removed).toEqual(['terraform/stale.tf.json']);
      expect(readdirSync(path.join(outDir, 'terraform'))).not.toContain('stale.tf.json');
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  });
});
