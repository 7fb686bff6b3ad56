import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { PlatformConfigSchema } from '../../src/runtime/config.js';
import { PROJECT_ROOT, loadArchitecture } from '../../src/runtime/manifest.js';
import { loadService } from '../../src/services/registry.js';
import { standaloneContext } from '../support/harness.js';

/** architecture.yaml is the single source of truth: the code must agree with it. */
describe('architecture.yaml agrees with the code', () => {
  const architecture = loadArchitecture();
  const platformKeys = new Set(Object.keys(PlatformConfigSchema.shape));

  for (const [name, manifest] of Object.entries(architecture.services)) {
    it(`${name}: entry exists, consumers and config match the manifest`, async () => {
      expect(existsSync(path.join(PROJECT_ROOT, manifest.entry)), manifest.entry).toBe(true);
      const definition = await loadService(name);
      expect(definition.name).toBe(name);
      // Setup acquires nothing (timers and connections start in start()), so it can run outside a host.
      const consumers = Object.keys((await definition.setup(standaloneContext(definition))).consumers).sort();
      expect(consumers).toEqual([...manifest.consumes].sort());
      const schema = definition.configSchema as z.ZodObject | undefined;
      const declared = new Set([...manifest.env, ...manifest.secrets, ...architecture.defaults.env, ...architecture.defaults.secrets]);
      const undeclared = Object.keys(schema?.shape ?? {}).filter((key) => !declared.has(key) && !platformKeys.has(key));
      expect(undeclared, `${name} reads env not listed in architecture.yaml`).toEqual([]);
      for (const topic of manifest.consumes) expect(topic).toMatch(/^internal\.[a-z0-9-]+(\.\{instanceId\})?\.v\d+$/);
    });
  }

  it('every consumed topic has a publisher, and per-instance egress is consumed by instance', () => {
    const published = new Set(Object.values(architecture.services).flatMap((service) => service.publishes));
    for (const [name, manifest] of Object.entries(architecture.services)) {
      for (const topic of manifest.consumes) {
        if (topic.includes('{instanceId}')) continue; // published by the runtime to the instance that holds the connection
        expect(published.has(topic), `${name} consumes ${topic} which nobody publishes`).toBe(true);
      }
    }
  });
});
