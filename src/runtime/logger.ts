import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Keys whose values are never logged, wherever they appear in a log object. */
const REDACT_KEYS = [
  'token', 'accessToken', 'refreshToken', 'access_token', 'refresh_token', 'password', 'secret', 'clientSecret',
  'client_secret', 'authorization', 'Authorization', 'apiKey', 'api_key', 'cookie', 'key',
];

const REDACT_PATHS = [...REDACT_KEYS, ...REDACT_KEYS.map((key) => `*.${key}`), ...REDACT_KEYS.map((key) => `*.*.${key}`), 'req.headers.authorization', 'headers.authorization'];

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

export interface LoggerOptions {
  level?: string;
  service: string;
  instanceId?: string;
  scrubber?: SecretScrubber;
  /** Where lines go; default stdout. */
  destination?: { write(line: string): void };
}

/** A pino logger with service/instance bindings, key-based redaction and secret-value scrubbing. */
export function createLogger(options: LoggerOptions): Logger {
  const scrubber = options.scrubber;
  const destination = options.destination ?? process.stdout;
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service, ...(options.instanceId ? { instanceId: options.instanceId } : {}) },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: scrubber ? { streamWrite: (line: string) => scrubber.scrub(line) } : undefined,
    },
    destination as never,
  );
}
