import { loadServices, serviceNames } from '../services/registry.js';
import { createHost, runUntilSignal } from '../runtime/host.js';

/**
 * Runs services in this process until SIGTERM/SIGINT: every service of the manifest (all-in-one, one
 * HTTP server whose health aggregates all of them) or the ones named.
 */
export async function runPlatform(options: {
  services?: string[];
  env: Record<string, string | undefined>;
  single?: boolean;
}): Promise<number> {
  const names = options.services && options.services.length > 0 ? options.services : serviceNames();
  const definitions = await loadServices(names);
  const host = await createHost({ services: definitions, env: options.env, processName: options.single ? names[0] : 'bitbrat' });
  await runUntilSignal(host, () => {
    const where = `http://${host.platform.HOST === '0.0.0.0' ? '127.0.0.1' : host.platform.HOST}:${host.port}`;
    host.logger.info(
      { url: where, services: names, bus: host.bus.driver, store: host.store?.driver ?? 'none' },
      `BitBrat is running at ${where} (health: ${where}/readyz)`,
    );
  });
  return 0;
}
