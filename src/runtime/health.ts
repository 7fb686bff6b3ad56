/** Readiness of the named components of a process (bus, store, consumers, twitch, …). */
export interface ComponentHealth {
  ready: boolean;
  /** Shown on /readyz and the dashboard; never secrets. */
  detail?: string;
  /** A not-configured optional connector is ready but shown as such. */
  configured?: boolean;
  since: string;
}

export interface HealthRegistry {
  set(component: string, ready: boolean, detail?: string, extra?: { configured?: boolean }): void;
  remove(component: string): void;
  isReady(): boolean;
  snapshot(): Record<string, ComponentHealth>;
  /** A view that prefixes component names (one per service in the all-in-one process). */
  scoped(prefix: string): HealthRegistry;
}

export function createHealthRegistry(): HealthRegistry {
  const components = new Map<string, ComponentHealth>();
  const make = (prefix: string): HealthRegistry => ({
    set(component, ready, detail, extra) {
      const key = prefix + component;
      const previous = components.get(key);
      const since = previous && previous.ready === ready ? previous.since : new Date().toISOString();
      components.set(key, {
        ready,
        since,
        ...(detail ? { detail } : {}),
        ...(extra?.configured !== undefined ? { configured: extra.configured } : {}),
      });
    },
    remove(component) {
      components.delete(prefix + component);
    },
    isReady() {
      for (const [key, health] of components) if (key.startsWith(prefix) && !health.ready) return false;
      return true;
    },
    snapshot() {
      const out: Record<string, ComponentHealth> = {};
      for (const [key, health] of components) if (key.startsWith(prefix)) out[key] = { ...health };
      return out;
    },
    scoped(more) {
      return make(prefix + more);
    },
  });
  return make('');
}
