import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { BitBratError } from '../core/index.js';

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

/** The repository root (where architecture.yaml lives). */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

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
    throw new BitBratError('UNKNOWN_SERVICE', `unknown service "${name}"; known services: ${Object.keys(architecture.services).join(', ')}`);
  }
  return manifest;
}

/** Replaces `{instanceId}` in a manifest topic. */
export function resolveTopic(topic: string, instanceId: string): string {
  return topic.replaceAll('{instanceId}', instanceId);
}
