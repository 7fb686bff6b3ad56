import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { BitBratError } from '../core/index.js';
import { loadArchitecture, runnableFile, serviceManifest, type Architecture } from '../runtime/manifest.js';
import type { ServiceDefinition } from '../runtime/service.js';

/** Every service name in the manifest, in manifest order. */
export function serviceNames(architecture: Architecture = loadArchitecture()): string[] {
  return Object.keys(architecture.services);
}

/** Loads a service's definition from the entry file the manifest names. */
export async function loadService(name: string, architecture: Architecture = loadArchitecture()): Promise<ServiceDefinition> {
  const manifest = serviceManifest(name, architecture);
  const file = runnableFile(manifest.entry);
  if (!existsSync(file)) throw new BitBratError('UNKNOWN_SERVICE', `service "${name}" has no entry file at ${manifest.entry}`);
  const module = (await import(pathToFileURL(file).href)) as { default?: ServiceDefinition; service?: ServiceDefinition };
  const definition = module.default ?? module.service;
  if (!definition || typeof definition.setup !== 'function') {
    throw new BitBratError('UNKNOWN_SERVICE', `${manifest.entry} does not export a service definition`);
  }
  if (definition.name !== name)
    throw new BitBratError('CONFIG_INVALID', `${manifest.entry} defines service "${definition.name}", but the manifest calls it "${name}"`);
  return definition;
}

/** Loads several services (all of the manifest by default). */
export async function loadServices(names: string[] = serviceNames()): Promise<ServiceDefinition[]> {
  return await Promise.all(names.map((name) => loadService(name)));
}
