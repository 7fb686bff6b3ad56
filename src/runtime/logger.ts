import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Keys whose values are never logged, wherever they appear in a log object. */
const REDACT_KEYS = [
  'token',
  'accessToken',
  'refreshToken',
  'access_token',
  'refresh_token',
  'password',
  'secret',
  'clientSecret',
  'client_secret',
  'authorization',
  'Authorization',
  'apiKey',
  'api_key',
  'cookie',
  'key',
];

const REDACT_PATHS = [
  ...REDACT_KEYS,
  ...REDACT_KEYS.map((key) => `*.${key}`),
  ...REDACT_KEYS.map((key) => `*.*.${key}`),
  'req.headers.authorization',
  'headers.authorization',
];

/**
 * Secret values registered here are scrubbed from every log line, so a secret that slips into an error
 * message or a URL still never reaches the log.
 */
export interface SecretScrubber {
  add(value: string | undefined): void;
  scrub(line: string): string;
}

export function createSecretScrubber(): SecretScrubber {
  const values = new Set<string>();
  return {
    add(value) {
      if (value && value.length >= 6) values.add(value);
    },
    scrub(line) {
      if (values.size === 0) return line;
      let out = line;
      for (const value of values) if (out.includes(value)) out = out.split(value).join('[REDACTED]');
      return out;
    },
  };
}

/** How log lines are written: JSON, one line per event for people, or pretty only on a terminal. */
export const LogFormat = { auto: 'auto', json: 'json', pretty: 'pretty' } as const;
export type LogFormat = (typeof LogFormat)[keyof typeof LogFormat];

/** Where log lines go: anything with `write`; `isTTY` as on process.stdout. */
export interface LogDestination {
  write(line: string): void;
  isTTY?: boolean;
}

export interface LoggerOptions {
  level?: string;
  /** The service of a one-service process; a process hosting several names itself with `process`. */
  service?: string;
  process?: string;
  instanceId?: string;
  scrubber?: SecretScrubber;
  /** Where lines go; default stdout. */
  destination?: LogDestination;
  /**
   * `json` (one JSON object per line, for collectors), `pretty` (one coloured line per event, for people;
   * colours only on a terminal), or `auto` (default): pretty when the destination is a terminal, else JSON.
   */
  format?: LogFormat;
}

/** Whether lines to `destination` are written pretty under `format`. */
export function usesPrettyLogs(format: LogFormat | undefined, destination: LogDestination): boolean {
  if (format === 'pretty') return true;
  if (format === 'json') return false;
  return destination.isTTY === true;
}

/**
 * A destination that turns each JSON line into one human line before writing it. It formats in this
 * thread, synchronously (no transport worker), so lines keep their order and the secret scrubbing that
 * already ran on the JSON line holds for the pretty one. pino-pretty is loaded only here, so JSON
 * logging never pays for it.
 */
function prettyDestination(destination: LogDestination): LogDestination {
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  const format = prettyFactory({
    colorize: destination.isTTY === true,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,instanceId,process,service',
    messageFormat: '{if service}{service}: {end}{msg}',
    // An error stays on its event's line (its stack as an escaped string) instead of a block below it.
    errorLikeObjectKeys: [],
  });
  return { write: (line: string) => destination.write(format(line)), isTTY: destination.isTTY };
}

/** A pino logger with service/instance bindings, key-based redaction and secret-value scrubbing. */
export function createLogger(options: LoggerOptions): Logger {
  const scrubber = options.scrubber;
  const target: LogDestination = options.destination ?? process.stdout;
  const destination = usesPrettyLogs(options.format, target) ? prettyDestination(target) : target;
  return pino(
    {
      level: options.level ?? 'info',
      base: {
        ...(options.service ? { service: options.service } : {}),
        ...(options.process ? { process: options.process } : {}),
        ...(options.instanceId ? { instanceId: options.instanceId } : {}),
      },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Spread, not `hooks: undefined`: pino replaces its default hooks with whatever is passed.
      ...(scrubber ? { hooks: { streamWrite: (line: string) => scrubber.scrub(line) } } : {}),
    },
    destination as never,
  );
}

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);
const noop = () => undefined;

/**
 * A child logger that costs nothing until a line is actually written at an enabled level: the runtime
 * makes one per message (topic, envelope, step bindings), and most messages log nothing.
 */
export function lazyChild(base: Logger, bindings: Record<string, unknown>): Logger {
  let real: Logger | undefined;
  const materialize = () => (real ??= base.child(bindings));
  return new Proxy({} as Logger, {
    get(_target, property) {
      if (property === 'child') {
        return (more: Record<string, unknown>, options?: unknown) =>
          options === undefined && !real ? lazyChild(base, { ...bindings, ...more }) : materialize().child(more, options as never);
      }
      if (typeof property === 'string' && LEVELS.has(property) && !real && !base.isLevelEnabled(property)) return noop;
      const target = materialize();
      const value = (target as unknown as Record<string | symbol, unknown>)[property];
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
