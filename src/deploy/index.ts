import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT, type Architecture, type ServiceManifest } from '../runtime/manifest.js';
import { renderCompose, renderPrometheusConfig } from './compose.js';
import { renderTerraform } from './terraform.js';

/**
 * Deployment files generated from architecture.yaml: `compose.yaml` (NATS + PostgreSQL + every service
 * from one image) and `terraform/*.tf.json` (Google Cloud: Cloud Run, Pub/Sub, Firestore, Secret
 * Manager, VPC, internal and external load balancers). The output is a pure function of the manifest
 * and the options, so `checkInfra` can tell whether what is on disk is still in sync.
 */

export interface InfraOptions {
  /** Output directory. Default `<repo>/deploy`; a relative path is resolved against the working directory. */
  outDir?: string;
  /** Container image for Cloud Run (default: built from the Artifact Registry repository and `image_tag`). */
  image?: string;
  /** Default of the Terraform `project` variable (none: it must be given at apply time). */
  projectId?: string;
  /** Default of the Terraform `region` variable. Default `us-central1`. */
  region?: string;
  /** Repository root: the Docker build context and where service entry files are looked up. Default the repo. */
  root?: string;
  /**
   * Whether a service uses the store (PostgreSQL in compose, Firestore IAM in the cloud). Default: its
   * entry file declares `needsStore: true`.
   */
  needsStore?: (service: string, manifest: ServiceManifest) => boolean;
}

/** One generated file, relative to the output directory. */
export interface GeneratedFile {
  path: string;
  content: string;
}

export interface GenerateResult {
  outDir: string;
  /** Files written, relative to outDir. */
  files: string[];
  /** Stale generated files removed (e.g. a Terraform file no longer produced). */
  removed: string[];
  /** Things an operator should know (e.g. a pull consumer whose min instances was raised). */
  warnings: string[];
}

export interface InfraDifference {
  path: string;
  kind: 'missing' | 'changed' | 'extra';
}

export interface CheckResult {
  outDir: string;
  inSync: boolean;
  differences: InfraDifference[];
}

/** A service as the generators see it: the manifest plus the defaults it inherits. */
export interface DeployService {
  name: string;
  manifest: ServiceManifest;
  /** Default env names followed by the service's own, without duplicates. */
  env: string[];
  /** Default secrets followed by the service's own, without duplicates. */
  secrets: string[];
  /** Consumed topics without `{instanceId}` (one subscription each). */
  consumes: string[];
  /** Consumed per-instance topics (created at run time by the bus driver). */
  perInstanceConsumes: string[];
  /** Published topics without `{instanceId}`. */
  publishes: string[];
  needsStore: boolean;
}

export interface DeployModel {
  architecture: Architecture;
  services: DeployService[];
  /** Every topic of the manifest without `{instanceId}`, sorted. */
  topics: string[];
  /** Every secret named by the manifest (defaults and services), sorted. */
  secrets: string[];
  port: number;
  /** Relative path from the output directory to the repository root (compose build context). */
  buildContext: string;
  image?: string;
  projectId?: string;
  region: string;
}

export const DEFAULT_REGION = 'us-central1';
/** Files below outDir the generator owns; anything else there is left alone. */
const OWNED = [
  /^compose\.yaml$/,
  /^observability\/prometheus\.yml$/,
  /^README\.md$/,
  /^secrets\/\.gitignore$/,
  /^terraform\/[^/]+\.tf\.json$/,
];

const unique = (values: string[]) => [...new Set(values)];
const isPerInstance = (topic: string) => topic.includes('{instanceId}');

function entryNeedsStore(root: string, manifest: ServiceManifest): boolean {
  const file = path.join(root, manifest.entry);
  if (!existsSync(file)) return false;
  return /\bneedsStore\s*:\s*true\b/.test(readFileSync(file, 'utf8'));
}

function resolveOutDir(outDir: string | undefined): string {
  return outDir === undefined ? path.join(PROJECT_ROOT, 'deploy') : path.resolve(outDir);
}

/** The manifest with defaults applied, as both generators use it. */
export function buildDeployModel(architecture: Architecture, options: InfraOptions = {}): DeployModel {
  const root = path.resolve(options.root ?? PROJECT_ROOT);
  const outDir = resolveOutDir(options.outDir);
  const needsStore = options.needsStore ?? ((_name: string, manifest: ServiceManifest) => entryNeedsStore(root, manifest));
  const services: DeployService[] = Object.entries(architecture.services).map(([name, manifest]) => ({
    name,
    manifest,
    env: unique([...architecture.defaults.env, ...manifest.env]),
    secrets: unique([...architecture.defaults.secrets, ...manifest.secrets]),
    consumes: unique(manifest.consumes.filter((topic) => !isPerInstance(topic))),
    perInstanceConsumes: unique(manifest.consumes.filter(isPerInstance)),
    publishes: unique(manifest.publishes.filter((topic) => !isPerInstance(topic))),
    needsStore: needsStore(name, manifest),
  }));
  const topics = unique(services.flatMap((service) => [...service.consumes, ...service.publishes])).sort();
  const secrets = unique(services.flatMap((service) => service.secrets)).sort();
  return {
    architecture,
    services,
    topics,
    secrets,
    port: architecture.defaults.port,
    buildContext: path.relative(outDir, root).split(path.sep).join('/') || '.',
    image: options.image,
    projectId: options.projectId,
    region: options.region ?? DEFAULT_REGION,
  };
}

/** Every generated file's content, without touching the disk. */
export function renderInfra(architecture: Architecture, options: InfraOptions = {}): { files: GeneratedFile[]; warnings: string[] } {
  const model = buildDeployModel(architecture, options);
  const compose = renderCompose(model);
  const terraform = renderTerraform(model);
  const files: GeneratedFile[] = [
    { path: 'compose.yaml', content: compose },
    { path: 'observability/prometheus.yml', content: renderPrometheusConfig(model) },
    {
      path: 'secrets/.gitignore',
      content: '# Secret files for compose (one per secret, lower-case name). Never commit them.\n*\n!.gitignore\n',
    },
    { path: 'README.md', content: renderReadme(model, terraform.warnings) },
    ...terraform.files.map((file) => ({ path: `terraform/${file.path}`, content: file.content })),
  ];
  return { files, warnings: terraform.warnings };
}

async function ownedFilesOnDisk(outDir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, prefix: string) => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (relative === 'secrets' || relative === 'terraform' || relative === 'observability')
          await walk(path.join(dir, entry.name), relative);
      } else if (OWNED.some((pattern) => pattern.test(relative))) {
        found.push(relative);
      }
    }
  };
  await walk(outDir, '');
  return found.sort();
}

/**
 * Writes deploy/compose.yaml, deploy/terraform/*.tf.json, deploy/README.md and deploy/secrets/.gitignore
 * from the manifest, and removes generated files it no longer produces. Secret files in deploy/secrets
 * and anything else in outDir are never touched.
 */
export async function generateInfra(architecture: Architecture, options: InfraOptions = {}): Promise<GenerateResult> {
  const outDir = resolveOutDir(options.outDir);
  const { files, warnings } = renderInfra(architecture, { ...options, outDir });
  const wanted = new Set(files.map((file) => file.path));
  for (const file of files) {
    const target = path.join(outDir, file.path);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, file.content);
  }
  const removed: string[] = [];
  for (const existing of await ownedFilesOnDisk(outDir)) {
    if (!wanted.has(existing)) {
      await rm(path.join(outDir, existing));
      removed.push(existing);
    }
  }
  return { outDir, files: files.map((file) => file.path), removed, warnings };
}

/**
 * Compares what `generateInfra` would write with the files in outDir (the `--check` mode): missing,
 * changed, and stale generated files are reported; `inSync` is true when there are none.
 */
export async function checkInfra(architecture: Architecture, options: InfraOptions = {}): Promise<CheckResult> {
  const outDir = resolveOutDir(options.outDir);
  const { files } = renderInfra(architecture, { ...options, outDir });
  const differences: InfraDifference[] = [];
  for (const file of files) {
    const onDisk = await readFile(path.join(outDir, file.path), 'utf8').catch(() => undefined);
    if (onDisk === undefined) differences.push({ path: file.path, kind: 'missing' });
    else if (onDisk !== file.content) differences.push({ path: file.path, kind: 'changed' });
  }
  const wanted = new Set(files.map((file) => file.path));
  for (const existing of await ownedFilesOnDisk(outDir)) if (!wanted.has(existing)) differences.push({ path: existing, kind: 'extra' });
  return { outDir, inSync: differences.length === 0, differences };
}

function renderReadme(model: DeployModel, warnings: string[]): string {
  const lines = [
    '# Deployment (generated)',
    '',
    'Generated from `architecture.yaml` by `bitbrat infra generate`; `bitbrat infra generate --check` fails when these',
    'files and the manifest disagree. Do not edit them by hand.',
    '',
    '## Containers (`compose.yaml`)',
    '',
    'NATS JetStream, PostgreSQL 16 and one container per service, all from the image the repository `Dockerfile` builds.',
    'Secrets are files: put each value in `deploy/secrets/<name in lower case>` (e.g. `deploy/secrets/token_encryption_key`);',
    'the services read them through `SECRETS_PROVIDER=file` from `/run/secrets`. Service settings such as',
    '`TWITCH_CHANNELS` are taken from your environment or a `.env` file next to `compose.yaml`.',
    '',
    '```sh',
    'docker compose -f deploy/compose.yaml up --build',
    '```',
    '',
    'With `--profile observability` it also starts Prometheus (http://127.0.0.1:9090, scraping every service with the',
    'alert rules in `observability/alerts.yml`), Grafana (http://127.0.0.1:3000, the BitBrat dashboard provisioned) and',
    'Jaeger (http://127.0.0.1:16686); set `OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318` to send it traces.',
    '',
    '## Google Cloud (`terraform/`)',
    '',
    'Terraform JSON for Cloud Run (one service per manifest entry, one service account each with only the grants it',
    'needs), Pub/Sub (topics, one pull subscription per consumer with retry and dead-letter policies), Firestore',
    "with the composite indexes the store's queries need (stalled events, dead letters, filtered event lists),",
    'Secret Manager, a VPC with a Serverless VPC Access connector, a regional internal application load balancer',
    'for internal traffic and a global external HTTPS load balancer for the services with `expose: true`.',
    '',
    '```sh',
    'cd deploy/terraform && terraform init && terraform apply -var project=MY_PROJECT -var \'domains=["bot.example.com"]\'',
    '```',
    '',
    'Secret values are not managed by Terraform: add a version to each secret (`gcloud secrets versions add NAME',
    '--data-file=-`) before the services start.',
    '',
    '### Notes',
    '',
    '- Services consume with streaming pull, not push. Cloud Run only runs a pull consumer while an instance exists',
    '  and only gives it CPU outside requests with `cpu_idle = false`, so consumers get `cpu_idle = false` and at least',
    '  one minimum instance. Scaling beyond the minimum follows CPU, not queue depth.',
    '- Per-instance egress topics (`internal.egress.{instanceId}.v1`) cannot be declared ahead: each Cloud Run instance',
    '  has its own random `INSTANCE_ID`, and the Pub/Sub bus driver creates its topic and subscription when it starts.',
    '  Their consumers therefore hold a project-level custom role to create topics and subscriptions, and services',
    '  that publish replies hold a project-level custom role with only `pubsub.topics.publish` (Pub/Sub IAM cannot be',
    '  scoped to topics that do not exist yet).',
    "- A per-instance subscription expires after a day without a consumer (Pub/Sub's minimum), so instances that are",
    '  gone leave no subscriptions behind. Their topics stay (an unused topic costs nothing, but counts towards the',
    "  project's topic quota); delete old `internal.egress.*` topics from time to time if instances churn a lot.",
    '- Pub/Sub has no server-side deduplication by message id; the driver deduplicates in memory within each process,',
    '  and consumers are idempotent.',
    `- Topics: ${model.topics.map((topic) => `\`${topic}\``).join(', ')}.`,
  ];
  if (warnings.length > 0) lines.push('', '### Warnings', '', ...warnings.map((warning) => `- ${warning}`));
  return `${lines.join('\n')}\n`;
}
