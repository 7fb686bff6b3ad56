import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { BitBratError, Topic } from '../core/index.js';

const ServiceManifestSchema = z.object({
  description: z.string().default(''),
  entry: z.string().min(1),
  consumes: z.array(z.string()).default([]),
  publishes: z.array(z.string()).default([]),
  paths: z.array(z.string()).default([]),
  env: z.array(z.string()).default([]),
  secrets: z.array(z.string()).default([]),
  scaling: z.object({ min: z.number().int().min(0), max: z.number().int().min(1) }),
  expose: z.boolean().default(false),
});

export const ArchitectureSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  defaults: z.object({
    port: z.number().int().default(8080),
    health: z.array(z.string()).default([]),
    env: z.array(z.string()).default([]),
    secrets: z.array(z.string()).default([]),
  }),
  services: z.record(z.string(), ServiceManifestSchema),
});

export type ServiceManifest = z.infer<typeof ServiceManifestSchema>;
export type Architecture = z.infer<typeof ArchitectureSchema>;

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** True when this is the compiled build in dist/src/ (bin/bitbrat.js runs it when it matches src/). */
export const COMPILED = path.basename(HERE) === 'dist';

/** The repository root (where architecture.yaml lives), from the sources or from the compiled build. */
export const PROJECT_ROOT = COMPILED ? path.dirname(HERE) : HERE;

/**
 * The file that runs for a source path the manifest names (`src/…/index.ts`): the source itself, or its
 * compiled twin `dist/src/…/index.js` when this process runs the build.
 */
export function runnableFile(sourcePath: string): string {
  return COMPILED ? path.join(PROJECT_ROOT, 'dist', sourcePath.replace(/\.ts$/, '.js')) : path.join(PROJECT_ROOT, sourcePath);
}

let cached: Architecture | undefined;

/** Loads and validates architecture.yaml (cached). */
export function loadArchitecture(file = path.join(PROJECT_ROOT, 'architecture.yaml')): Architecture {
  if (cached && file === path.join(PROJECT_ROOT, 'architecture.yaml')) return cached;
  const parsed = ArchitectureSchema.safeParse(parse(readFileSync(file, 'utf8')));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw new BitBratError('CONFIG_INVALID', `architecture.yaml is invalid: ${problems}`);
  }
  if (file === path.join(PROJECT_ROOT, 'architecture.yaml')) cached = parsed.data;
  return parsed.data;
}

/** One service's manifest entry, or UNKNOWN_SERVICE listing the known names. */
export function serviceManifest(name: string, architecture = loadArchitecture()): ServiceManifest {
  const manifest = architecture.services[name];
  if (!manifest) {
    throw new BitBratError(
      'UNKNOWN_SERVICE',
      `unknown service "${name}"; known services: ${Object.keys(architecture.services).join(', ')}`,
    );
  }
  return manifest;
}

/** Replaces `{instanceId}` in a manifest topic. */
export function resolveTopic(topic: string, instanceId: string): string {
  return topic.replaceAll('{instanceId}', instanceId);
}

/** Topics that are fixed pipeline stages, not routing-slip steps (see docs: topics). */
const NON_STEP_TOPICS: ReadonlySet<string> = new Set([Topic.ingress, Topic.authenticated, Topic.egress, Topic.finalizer, Topic.deadletter]);
const STEP_TOPIC = /^internal\.(.+)\.v1$/;

/**
 * The routing-slip steps some service in the architecture serves, sorted: the `<step>` of every consumed
 * `internal.<step>.v1` topic that is not a fixed stage (ingress, authenticated, egress, finalizer,
 * deadletter) nor a per-instance topic. A slip that names any other step would publish to a topic
 * nobody reads. Given several architectures (architecture.yaml and the services a test hosts), the
 * steps of all of them; given none, architecture.yaml's.
 */
export function knownSteps(...architectures: Architecture[]): string[] {
  const steps = new Set<string>();
  for (const architecture of architectures.length > 0 ? architectures : [loadArchitecture()]) {
    for (const manifest of Object.values(architecture.services)) {
      for (const topic of manifest.consumes) {
        if (NON_STEP_TOPICS.has(topic) || topic.includes('{instanceId}')) continue;
        const match = STEP_TOPIC.exec(topic);
        if (match) steps.add(match[1]!);
      }
    }
  }
  return [...steps].sort();
}
