import type { MessageBus } from '../bus/index.js';
import type { HealthRegistry } from './health.js';
import type { Logger } from './logger.js';
import type { RuntimeMetrics } from './metrics.js';

/** How often the bus server's storage is read. */
export const BUS_STORAGE_POLL_MS = 30_000;
/** From this share of the size limit on, every reading logs a warning. */
export const BUS_STORAGE_WARN_SHARE = 0.8;

/** 1536 → "1.5 KB" (binary units, as the limit is usually set in them). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/**
 * For a bus whose server keeps the platform's messages (NATS): reads how much it holds now and every
 * `intervalMs`, as the `bus-storage` health component's detail (on /readyz), the `bitbrat_bus_stored_bytes`
 * and `bitbrat_bus_max_bytes` gauges, and a warning log from 80 % of the size limit: at the limit the
 * server refuses publishes until messages age out. A reading that fails keeps the last one (the `bus`
 * component reports the connection). Does nothing for drivers that cannot tell.
 */
export function watchBusStorage(
  bus: MessageBus,
  health: HealthRegistry,
  metrics: RuntimeMetrics,
  logger: Logger,
  intervalMs = BUS_STORAGE_POLL_MS,
): { stop(): void } {
  const storage = bus.storage?.bind(bus);
  if (!storage) return { stop: () => undefined };
  const read = async () => {
    let usage;
    try {
      usage = await storage();
    } catch (error) {
      logger.debug({ err: error }, 'could not read the bus storage');
      return;
    }
    metrics.busStoredBytes.set(usage.bytes);
    metrics.busMaxBytes.set(usage.maxBytes ?? 0);
    const share = usage.maxBytes ? usage.bytes / usage.maxBytes : 0;
    const limit = usage.maxBytes ? ` of ${formatBytes(usage.maxBytes)} (${Math.floor(share * 100)} %)` : ', no size limit';
    const detail = `${usage.name}: ${usage.messages} messages, ${formatBytes(usage.bytes)}${limit}`;
    health.set('bus-storage', true, detail);
    if (share >= BUS_STORAGE_WARN_SHARE) {
      logger.warn(
        { stream: usage.name, bytes: usage.bytes, maxBytes: usage.maxBytes },
        `the bus storage is ${Math.floor(share * 100)} % full: at the limit publishes are refused until messages age out (raise NATS_STREAM_MAX_BYTES or lower NATS_STREAM_MAX_AGE_MS)`,
      );
    }
  };
  void read();
  const timer = setInterval(() => void read(), intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
    },
  };
}
