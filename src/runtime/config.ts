import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { DEFAULT_NATS_MAX_AGE_MS } from '../bus/types.js';
import { BitBratError } from '../core/index.js';

/**
 * The only module that reads process.env. Config is validated once at start-up against a zod schema;
 * every problem is reported in one error, and the result is frozen.
 */

/** A snapshot of the process environment. */
export function readEnv(): Record<string, string | undefined> {
  return { ...process.env };
}

/**
 * The port of Twurple's mock API when TWURPLE_MOCK_API_PORT is set (tests, `twitch mock-api`). Twurple
 * reads the variable itself on every call; this reads it the same way, so a span names the server the
 * call went to.
 */
export function twurpleMockApiPort(): string | undefined {
  return process.env.TWURPLE_MOCK_API_PORT || undefined;
}

const emptyToUndefined = (value: unknown) => (value === '' ? undefined : value);

interface Bounds {
  min?: number;
  max?: number;
}

/** A number from env (`number` coerces and checks its kind) within `bounds`, `fallback` when unset. */
const bounded = (number: z.ZodCoercedNumber, fallback: number, bounds: Required<Bounds>) =>
  z.preprocess(emptyToUndefined, number.min(bounds.min).max(bounds.max).default(fallback));

/** Environment helpers: strings from env coerced to typed values, '' treated as unset. */
export const env = {
  string: (fallback?: string) =>
    fallback === undefined
      ? z.preprocess(emptyToUndefined, z.string().optional())
      : z.preprocess(emptyToUndefined, z.string().default(fallback)),
  requiredString: () => z.preprocess(emptyToUndefined, z.string({ error: 'is required' }).min(1)),
  int: (fallback: number, options: Bounds = {}) =>
    bounded(z.coerce.number({ error: 'must be a number' }).int('must be an integer'), fallback, {
      min: options.min ?? Number.MIN_SAFE_INTEGER,
      max: options.max ?? Number.MAX_SAFE_INTEGER,
    }),
  /** A decimal number (prices, amounts of money). */
  number: (fallback: number, options: Bounds = {}) =>
    bounded(z.coerce.number({ error: 'must be a number' }).finite('must be a finite number'), fallback, {
      min: options.min ?? -Number.MAX_VALUE,
      max: options.max ?? Number.MAX_VALUE,
    }),
  bool: (fallback: boolean) =>
    z.preprocess(
      (value) => {
        const v = emptyToUndefined(value);
        if (v === undefined) return undefined;
        if (typeof v === 'boolean') return v;
        const s = String(v).toLowerCase();
        if (['true', '1', 'yes', 'on'].includes(s)) return true;
        if (['false', '0', 'no', 'off'].includes(s)) return false;
        return v;
      },
      z.boolean({ error: 'must be true or false' }).default(fallback),
    ),
  enumOf: <T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) =>
    z.preprocess(emptyToUndefined, z.enum(values, { error: `must be one of ${values.join(', ')}` }).default(fallback as never)),
  csv: (fallback: string[] = []) =>
    z.preprocess((value) => {
      const v = emptyToUndefined(value);
      if (v === undefined) return undefined;
      return String(v)
        .split(',')
        .map((part) => part.trim())
        .filter(Boolean);
    }, z.array(z.string()).default(fallback)),
  url: () => z.preprocess(emptyToUndefined, z.url({ error: 'must be a URL' }).optional()),
};

/** Settings every service shares (docs/operating.md, README "Configuration"). */
export const PlatformConfigSchema = z.object({
  MESSAGE_BUS_DRIVER: env.enumOf(['memory', 'nats', 'pubsub'] as const, 'memory'),
  NATS_URL: env.string('nats://127.0.0.1:4222'),
  /** How long the JetStream stream keeps every hop: how long a stopped service can be behind without loss. */
  NATS_STREAM_MAX_AGE_MS: env.int(DEFAULT_NATS_MAX_AGE_MS, { min: 60_000 }),
  /** Most bytes that stream holds (0: no limit); when full, publishes fail and are retried, nothing is dropped. */
  NATS_STREAM_MAX_BYTES: env.int(0, { min: 0 }),
  BUS_PREFIX: env.string(''),
  PUBLISH_MAX_RETRIES: env.int(5, { min: 0, max: 100 }),
  /** Ingress messages a connector holds while the bus refuses them; one more is lost and counted. */
  INGRESS_BUFFER_MAX: env.int(20_000, { min: 1, max: 10_000_000 }),
  /** An event not finalized this long after it was received is reported as stalled. */
  STALLED_AFTER_MS: env.int(300_000, { min: 1_000 }),
  MAX_IN_FLIGHT: env.int(64, { min: 1, max: 10_000 }),
  ACK_WAIT_MS: env.int(30_000, { min: 100 }),
  STORE_DRIVER: env.enumOf(['pglite', 'postgres', 'firestore'] as const, 'pglite'),
  DATABASE_URL: env.string(),
  DATA_DIR: env.string('./data'),
  GOOGLE_CLOUD_PROJECT: env.string(),
  PUBSUB_EMULATOR_HOST: env.string(),
  FIRESTORE_EMULATOR_HOST: env.string(),
  SECRETS_PROVIDER: env.enumOf(['env', 'file', 'gcp'] as const, 'env'),
  SECRETS_DIR: env.string('/run/secrets'),
  LOG_LEVEL: env.enumOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
  LOG_PRETTY: env.bool(false),
  /** auto: pretty coloured lines on a terminal, JSON otherwise; json: always JSON; pretty: always pretty. */
  LOG_FORMAT: env.enumOf(['auto', 'json', 'pretty'] as const, 'auto'),
  PORT: env.int(8080, { min: 0, max: 65_535 }),
  HOST: env.string('127.0.0.1'),
  INSTANCE_ID: env.string(),
  EVENTS_RETENTION_DAYS: env.int(30, { min: 1 }),
  SHUTDOWN_TIMEOUT_MS: env.int(15_000, { min: 100 }),
});
export type PlatformConfig = z.infer<typeof PlatformConfigSchema> & { INSTANCE_ID: string };

/** Validates `source` against a schema; throws CONFIG_INVALID listing every problem. */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  source: Record<string, unknown>,
  label = 'configuration',
): Readonly<z.infer<S>> {
  const parsed = schema.safeParse(source);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `  - ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new BitBratError('CONFIG_INVALID', `invalid ${label}:\n${problems.join('\n')}`, { details: { problems } });
  }
  return Object.freeze(parsed.data);
}

/** Platform config plus cross-field checks (e.g. postgres needs DATABASE_URL). */
export function loadPlatformConfig(source: Record<string, string | undefined> = readEnv()): Readonly<PlatformConfig> {
  const problems: string[] = [];
  const parsed = PlatformConfigSchema.safeParse(source);
  if (!parsed.success) problems.push(...parsed.error.issues.map((issue) => `  - ${issue.path.join('.')}: ${issue.message}`));
  const value = parsed.success ? parsed.data : undefined;
  if (value) {
    if (value.STORE_DRIVER === 'postgres' && !value.DATABASE_URL) problems.push('  - DATABASE_URL: is required when STORE_DRIVER=postgres');
    if (value.STORE_DRIVER === 'firestore' && !value.GOOGLE_CLOUD_PROJECT)
      problems.push('  - GOOGLE_CLOUD_PROJECT: is required when STORE_DRIVER=firestore');
    if (value.MESSAGE_BUS_DRIVER === 'pubsub' && !value.GOOGLE_CLOUD_PROJECT)
      problems.push('  - GOOGLE_CLOUD_PROJECT: is required when MESSAGE_BUS_DRIVER=pubsub');
    if (value.SECRETS_PROVIDER === 'gcp' && !value.GOOGLE_CLOUD_PROJECT)
      problems.push('  - GOOGLE_CLOUD_PROJECT: is required when SECRETS_PROVIDER=gcp');
  }
  if (problems.length > 0 || !value) {
    throw new BitBratError('CONFIG_INVALID', `invalid configuration:\n${problems.join('\n')}`, { details: { problems } });
  }
  return Object.freeze({ ...value, INSTANCE_ID: value.INSTANCE_ID ?? randomBytes(4).toString('hex') });
}

/** Collects problems from several config checks and throws once, listing them all. */
export function collectConfigProblems(checks: Array<() => unknown>): void {
  const problems: string[] = [];
  for (const check of checks) {
    try {
      check();
    } catch (error) {
      if (error instanceof BitBratError && error.code === 'CONFIG_INVALID') problems.push(error.message);
      else throw error;
    }
  }
  if (problems.length > 0) throw new BitBratError('CONFIG_INVALID', problems.join('\n'));
}
