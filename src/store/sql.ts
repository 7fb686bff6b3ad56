/**
 * The one SQL implementation of the store, shared by PGlite and PostgreSQL. The drivers only provide
 * an executor (query + transaction); everything else — schema, migrations, idempotent writes, paging,
 * error mapping — lives here.
 */
import { BitBratError } from '../core/errors.js';
import { wellFormedText } from '../core/builders.js';
import type { Envelope } from '../core/envelope.js';
import {
  checkDocKey,
  chunks,
  compact,
  decodeCursor,
  docLimit,
  dedupe,
  encodeCursor,
  invalidCursor,
  pageSize,
  parseQueryTime,
} from './common.js';
import type { TokenCipher } from './crypto.js';
import { STALE_SOURCE_FIELDS } from './sources.js';
import type {
  CommandRecord,
  ConversationTurn,
  CreateStoreOptions,
  DeadLetterRecord,
  DocQuery,
  DocRecord,
  EventQuery,
  EventRecord,
  OAuthToken,
  Page,
  RuleRecord,
  SourceState,
  Store,
  TouchUserInput,
  UserRecord,
} from './types.js';

type Row = Record<string, any>;

export interface SqlQueryOptions {
  /**
   * The statement's text is constant and runs often: a driver that can keeps it parsed and planned on
   * each connection (a named prepared statement) instead of parsing and planning it every time.
   */
  prepare?: boolean;
}

/** Anything that runs one statement: the pool/database itself or a transaction. */
export interface SqlQueryable {
  query(sql: string, params?: unknown[], options?: SqlQueryOptions): Promise<{ rows: Row[] }>;
  /** Runs a multi-statement script without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/** What a SQL driver provides. */
export interface SqlExecutor extends SqlQueryable {
  /** Runs `fn` in one transaction (BEGIN … COMMIT, ROLLBACK on throw). */
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Two-key advisory lock namespace for migrations; the second key is the schema name's hash. */
export const MIGRATION_LOCK_KEY = 0x0b17b4a7;

/** Ordered, append-only: never edit a migration that has shipped, add a new one. */
/** A list of SQL string literals, for the field names migrations write into a function. */
const sqlList = (values: readonly string[]): string => values.map((value) => `'${value.replace(/'/g, "''")}'`).join(', ');

/**
 * The body of `bitbrat_merge_source`: top-level fields replace, metrics/permissions/metadata merge deeply;
 * `before` runs first (migration 5 drops a stale status there).
 */
function mergeSourceBody(before: string): string {
  return `DECLARE
  result jsonb;
  k text;
BEGIN
  IF a IS NULL THEN
    RETURN b;
  END IF;${before}
  result := a || b;
  FOREACH k IN ARRAY ARRAY['metrics', 'permissions', 'metadata'] LOOP
    IF jsonb_typeof(a -> k) = 'object' AND jsonb_typeof(b -> k) = 'object' THEN
      result := result || jsonb_build_object(k, bitbrat_jsonb_deep_merge(a -> k, b -> k));
    END IF;
  END LOOP;
  RETURN result;
END`;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
CREATE TABLE events (
  id text PRIMARY KEY,
  correlation_id text NOT NULL,
  type text NOT NULL,
  platform text,
  channel text,
  user_id text,
  user_name text,
  text text,
  received_at timestamptz NOT NULL,
  ingested boolean NOT NULL DEFAULT false,
  ingress jsonb,
  outcome text CHECK (outcome IN ('completed', 'handled', 'failed', 'unrouted')),
  finalized_at timestamptz,
  final jsonb,
  reply_delivered boolean,
  reply_text text,
  errors jsonb,
  latency_ms double precision
);
CREATE INDEX events_received_at_idx ON events (received_at DESC, id DESC);
CREATE INDEX events_type_idx ON events (type, received_at DESC);
CREATE INDEX events_outcome_idx ON events (outcome, received_at DESC);
CREATE INDEX events_user_name_idx ON events (user_name, received_at DESC);
CREATE INDEX events_user_id_idx ON events (user_id, received_at DESC);
CREATE INDEX events_channel_idx ON events (channel, received_at DESC);

CREATE TABLE deadletters (
  id text PRIMARY KEY,
  received_at timestamptz NOT NULL,
  dead_letter jsonb NOT NULL,
  replayed_at timestamptz,
  replay_count integer NOT NULL DEFAULT 0
);
CREATE INDEX deadletters_received_at_idx ON deadletters (received_at DESC, id DESC);

CREATE TABLE sources (
  id text PRIMARY KEY CHECK (id <> ''),
  platform text NOT NULL CHECK (platform <> ''),
  doc jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id text PRIMARY KEY,
  platform text NOT NULL,
  user_id text NOT NULL,
  login text NOT NULL,
  display_name text,
  roles jsonb NOT NULL DEFAULT '[]'::jsonb,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  message_count bigint NOT NULL DEFAULT 0
);
CREATE INDEX users_login_idx ON users (platform, lower(login));

CREATE TABLE rules (
  id text PRIMARY KEY CHECK (id <> ''),
  description text,
  priority integer NOT NULL,
  enabled boolean NOT NULL,
  logic jsonb,
  action jsonb NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE commands (
  name text PRIMARY KEY CHECK (name <> ''),
  response text NOT NULL,
  aliases jsonb NOT NULL DEFAULT '[]'::jsonb,
  min_role text NOT NULL,
  cooldown_sec double precision NOT NULL DEFAULT 0,
  user_cooldown_sec double precision NOT NULL DEFAULT 0,
  enabled boolean NOT NULL,
  uses bigint NOT NULL DEFAULT 0,
  created_by text,
  updated_at timestamptz NOT NULL
);

CREATE TABLE oauth_tokens (
  id text PRIMARY KEY CHECK (id <> ''),
  access_token text NOT NULL,
  refresh_token text,
  scopes jsonb NOT NULL DEFAULT '[]'::jsonb,
  expires_at timestamptz,
  obtained_at timestamptz NOT NULL,
  user_id text,
  login text,
  version integer NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE claims (
  namespace text NOT NULL,
  key text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (namespace, key)
);
CREATE INDEX claims_expires_at_idx ON claims (expires_at);

CREATE TABLE conversations (
  channel_key text PRIMARY KEY,
  turns jsonb NOT NULL DEFAULT '[]'::jsonb,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE counters (
  key text PRIMARY KEY,
  value double precision NOT NULL,
  expires_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Recursive object merge: objects merge key by key, anything else (arrays, scalars, null) replaces.
CREATE FUNCTION bitbrat_jsonb_deep_merge(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
  result jsonb;
  k text;
  v jsonb;
BEGIN
  IF a IS NULL OR jsonb_typeof(a) <> 'object' OR b IS NULL OR jsonb_typeof(b) <> 'object' THEN
    RETURN b;
  END IF;
  result := a;
  FOR k, v IN SELECT key, value FROM jsonb_each(b) LOOP
    IF jsonb_typeof(v) = 'object' AND jsonb_typeof(result -> k) = 'object' THEN
      result := result || jsonb_build_object(k, bitbrat_jsonb_deep_merge(result -> k, v));
    ELSE
      result := result || jsonb_build_object(k, v);
    END IF;
  END LOOP;
  RETURN result;
END
$fn$;

-- Source documents: top-level fields replace (lastError: null clears), metrics/permissions/metadata merge deeply.
CREATE FUNCTION bitbrat_merge_source(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
${mergeSourceBody('')}
$fn$;
`,
  },
  {
    version: 2,
    name: 'envelopes-as-text',
    // The ingress and final envelopes are kept as the JSON text the runtime wrote. Nothing queries inside
    // them, and having PostgreSQL parse every 1–4 KB envelope into jsonb was most of the cost of the two
    // writes each event makes.
    sql: `
ALTER TABLE events ALTER COLUMN ingress TYPE text USING ingress::text;
ALTER TABLE events ALTER COLUMN final TYPE text USING final::text;
`,
  },
  {
    version: 3,
    name: 'unfinalized-events-index',
    // Stalled events are the few received and never finalized: a partial index keeps finding them cheap.
    sql: `
CREATE INDEX IF NOT EXISTS events_unfinalized_idx ON events (received_at, id) WHERE finalized_at IS NULL;
`,
  },
  {
    version: 4,
    name: 'documents',
    // Moderation (filters, log) and the streamer toolkit (timers, quotes, giveaways) keep small JSON
    // documents read and written whole; one keyed table serves them all.
    sql: `
CREATE TABLE documents (
  collection text NOT NULL CHECK (collection <> ''),
  id text NOT NULL CHECK (id <> ''),
  data jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (collection, id)
);
`,
  },
  {
    version: 5,
    name: 'stale-source-status',
    // Two writers record a connection's status: the connector directly and persistence from the bus, which
    // may be behind. A status (or stream state) older than the one recorded changes none of its fields; the
    // timestamps are ISO-8601 UTC, so they compare as text (in the C collation). Same rule: STALE_SOURCE_FIELDS.
    sql: `
CREATE OR REPLACE FUNCTION bitbrat_merge_source(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
${mergeSourceBody(`
  IF b ? 'lastStatusUpdate' AND a ? 'lastStatusUpdate' AND (b ->> 'lastStatusUpdate') COLLATE "C" < (a ->> 'lastStatusUpdate') COLLATE "C" THEN
    b := b - ARRAY[${sqlList(STALE_SOURCE_FIELDS.status)}];
  END IF;
  IF b ? 'lastStreamUpdate' AND a ? 'lastStreamUpdate' AND (b ->> 'lastStreamUpdate') COLLATE "C" < (a ->> 'lastStreamUpdate') COLLATE "C" THEN
    b := b - ARRAY[${sqlList(STALE_SOURCE_FIELDS.stream)}];
  END IF;`)}
$fn$;
`,
  },
];

export interface SqlStoreOptions {
  driver: 'pglite' | 'postgres';
  /** Opens the connection(s); called by init(). */
  open(): Promise<SqlExecutor>;
  /** Created (under the migration lock) before migrating; the executor's search_path points at it. */
  schema?: string;
  options: Pick<CreateStoreOptions, 'secrets' | 'embedded' | 'dataDir' | 'logger'>;
  loadCipher(): Promise<TokenCipher>;
}

/** Rows per multi-row statement: large enough for throughput, small enough to keep statements sane. */
const BATCH_ROWS = 1000;
const PING_TIMEOUT_MS = 3000;

// ------------------------------------------------------------------------------------------- errors

const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
]);
/** admin/crash shutdown, cannot connect now, too many connections, serialization failure, deadlock. */
const UNAVAILABLE_SQLSTATE = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01']);
const UNAVAILABLE_MESSAGE =
  /connection terminated|terminating connection|connection error|not queryable|timeout exceeded when trying to connect|connection timeout|server closed the connection|ECONNREFUSED|ECONNRESET|pool after calling end|client was closed|PGlite is closed/i;

/** Turns driver errors into BitBratErrors with a stable code; anything unrecognized is returned as is. */
export function mapSqlError(error: unknown): unknown {
  if (error instanceof BitBratError) return error;
  const candidate = error as {
    code?: unknown;
    message?: unknown;
    constraint?: unknown;
    table?: unknown;
    column?: unknown;
    errors?: unknown[];
  };
  const code = typeof candidate?.code === 'string' ? candidate.code : undefined;
  const message = typeof candidate?.message === 'string' ? candidate.message : String(error);
  if (code && /^[0-9A-Z]{5}$/.test(code) && /^(22|23|54)/.test(code)) {
    return new BitBratError('STORE_CONSTRAINT', `record rejected by the store: ${message}`, {
      cause: error,
      details: { sqlState: code, constraint: candidate.constraint, table: candidate.table, column: candidate.column },
    });
  }
  // AggregateError from a dual-stack connect carries the errnos inside.
  const nested = Array.isArray(candidate?.errors) ? candidate.errors.map((inner) => (inner as { code?: unknown })?.code) : [];
  if (
    (code && (UNAVAILABLE_ERRNO.has(code) || UNAVAILABLE_SQLSTATE.has(code) || /^08/.test(code))) ||
    nested.some((inner) => typeof inner === 'string' && UNAVAILABLE_ERRNO.has(inner)) ||
    UNAVAILABLE_MESSAGE.test(message)
  ) {
    return new BitBratError('STORE_UNAVAILABLE', `store unavailable: ${message || code}`, {
      retryable: true,
      cause: error,
      details: code ? { code } : undefined,
    });
  }
  return error;
}

// ------------------------------------------------------------------------------------------ helpers

function toDoc<T>(row: Row): DocRecord<T> {
  return { collection: String(row.collection), id: String(row.id), data: row.data as T, updatedAt: iso(row.updated_at)! };
}

const iso = (value: unknown): string | undefined => {
  if (value === null || value === undefined) return undefined;
  return value instanceof Date ? value.toISOString() : new Date(String(value)).toISOString();
};
const optional = <T>(value: T | null | undefined): T | undefined => (value === null ? undefined : value);
const json = (value: unknown): string | null => (value === undefined ? null : sqlJson(value));

/** `\u0000` or an escaped lone surrogate in JSON text, not preceded by an escaping backslash. */
const JSON_ILL_FORMED_ESCAPE = /(?<!\\)((?:\\\\)*)\\u(0000|d[89a-f][0-9a-f]{2})/gi;

/**
 * JSON text that jsonb accepts and that reads back as valid UTF-16: JSON.stringify writes U+0000 and lone
 * surrogates as `\u0000` / `\udXXX` escapes, which jsonb refuses, so those become `\ufffd`. (Paired
 * surrogates are written as the characters themselves and are kept.)
 */
export function sqlJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (typeof text !== 'string' || !text.includes('\\u')) return text;
  return text.replace(JSON_ILL_FORMED_ESCAPE, '$1\\ufffd');
}

/** Parameters PostgreSQL can store: text cannot hold U+0000, and a lone surrogate is not UTF-8. */
function wellFormedParams(params: unknown[] | undefined): unknown[] | undefined {
  return params?.map((param) => (typeof param === 'string' ? wellFormedText(param) : param));
}

/**
 * The executor with every string parameter made storable, so no viewer input (a name, a command reply, a
 * source's error text) can make a write fail; JSON parameters are made storable by {@link sqlJson}.
 */
function storable(db: SqlExecutor): SqlExecutor {
  const wrap = (q: SqlQueryable): SqlQueryable => ({
    query: (sql, params, options) => q.query(sql, wellFormedParams(params), options),
    exec: (sql) => q.exec(sql),
  });
  return { ...wrap(db), transaction: (fn) => db.transaction((tx) => fn(wrap(tx))), close: () => db.close() };
}

/** A caller's time, passed on as given (PostgreSQL parses it); unparseable is a BAD_REQUEST. */
function queryTime(name: string, value: string): string {
  if (typeof value !== 'string') throw new BitBratError('BAD_REQUEST', `${name} must be an ISO-8601 timestamp`);
  const time = parseQueryTime(name, value);
  // Date accepts years ±275760; PostgreSQL's timestamptz starts at 4713 BC, so keep to years 1-9999.
  if (time < EARLIEST_QUERY_TIME || time > LATEST_QUERY_TIME)
    throw new BitBratError('BAD_REQUEST', `${name} must be between the years 0001 and 9999`);
  return value;
}
const EARLIEST_QUERY_TIME = Date.parse('0001-01-01T00:00:00Z');
const LATEST_QUERY_TIME = Date.parse('9999-12-31T23:59:59.999Z');

/** Keyset cursor: the last row's (received_at in µs since the epoch, id). */
function decodeEventCursor(cursor: string): { receivedUs: string; id: string } {
  const [receivedUs, id] = decodeCursor(cursor);
  if (!/^-?\d{1,20}$/.test(receivedUs)) throw invalidCursor();
  return { receivedUs, id };
}

/**
 * Appends each envelope to `params` as its JSON text (null when absent) and returns the SQL array of
 * those parameters; row `n` (1-based) reads its own as `<array>[x.n]`. The envelopes travel beside the
 * row JSON, not inside it, so PostgreSQL stores their text without parsing it.
 */
function envelopeTexts(params: unknown[], envelopes: unknown[]): string {
  const refs = envelopes.map((envelope) => {
    params.push(envelope === undefined ? null : sqlJson(envelope));
    return `$${params.length}`;
  });
  return `(ARRAY[${refs.join(', ')}]::text[])`;
}

/** An envelope column: JSON text (rows from before migration 2 were jsonb, which drivers hand over parsed). */
function envelopeColumn<T>(value: unknown): T | undefined {
  if (value === null || value === undefined) return undefined;
  return (typeof value === 'string' ? JSON.parse(value) : value) as T;
}

/** The columns an event row shares between ingress and final writes; `n` is its index in the batch (1-based). */
function eventSummaryRow(record: EventRecord, index: number) {
  return {
    n: index + 1,
    id: record.id,
    correlation_id: record.correlationId,
    type: record.type,
    platform: record.platform,
    channel: record.channel,
    user_id: record.userId,
    user_name: record.userName,
    text: record.text,
    received_at: record.receivedAt,
  };
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------------------------------ mapping

const EVENT_COLUMNS = `*, (extract(epoch from received_at) * 1000000)::bigint::text AS received_us`;

function toEvent(row: Row): EventRecord {
  return compact({
    id: row.id,
    correlationId: row.correlation_id,
    type: row.type,
    platform: optional(row.platform),
    channel: optional(row.channel),
    userId: optional(row.user_id),
    userName: optional(row.user_name),
    text: optional(row.text),
    receivedAt: iso(row.received_at)!,
    ingress: envelopeColumn<NonNullable<EventRecord['ingress']>>(row.ingress),
    outcome: optional(row.outcome),
    finalizedAt: iso(row.finalized_at),
    final: envelopeColumn<Envelope>(row.final),
    replyDelivered: optional(row.reply_delivered),
    replyText: optional(row.reply_text),
    errors: optional(row.errors),
    latencyMs: row.latency_ms === null || row.latency_ms === undefined ? undefined : Number(row.latency_ms),
  });
}

function toDeadLetter(row: Row): DeadLetterRecord {
  return compact({
    id: row.id,
    receivedAt: iso(row.received_at)!,
    deadLetter: row.dead_letter,
    replayedAt: iso(row.replayed_at),
    replayCount: Number(row.replay_count),
  });
}

function toUser(row: Row): UserRecord {
  return compact({
    id: row.id,
    platform: row.platform,
    userId: row.user_id,
    login: row.login,
    displayName: optional(row.display_name),
    roles: row.roles ?? [],
    firstSeen: iso(row.first_seen)!,
    lastSeen: iso(row.last_seen)!,
    messageCount: Number(row.message_count),
  });
}

/** One user's inputs in a touchUsers batch, folded into the row the upsert writes. */
interface TouchGroup {
  id: string;
  /** Positions in the input array, in order. */
  indices: number[];
  row: {
    id: string;
    platform: string;
    user_id: string;
    login: string;
    display_name: string | null;
    first_seen: string;
    last_seen: string;
    message_count: number;
  };
}

const timeOf = (value: string): number => Date.parse(value);

/** Groups inputs by user: count, earliest and latest time, last login and last display name given. */
function groupTouches(inputs: TouchUserInput[]): Map<string, TouchGroup> {
  const groups = new Map<string, TouchGroup>();
  inputs.forEach((input, index) => {
    const id = `${input.platform}:${input.userId}`;
    const displayName = input.displayName ?? null;
    const group = groups.get(id);
    if (!group) {
      groups.set(id, {
        id,
        indices: [index],
        row: {
          id,
          platform: input.platform,
          user_id: input.userId,
          login: input.login,
          display_name: displayName,
          first_seen: input.at,
          last_seen: input.at,
          message_count: 1,
        },
      });
      return;
    }
    const row = group.row;
    group.indices.push(index);
    row.login = input.login;
    if (displayName !== null) row.display_name = displayName;
    row.message_count += 1;
    const time = timeOf(input.at);
    // An unparseable time goes to the database as is, which rejects it as it would in touchUser.
    if (Number.isNaN(time) || Number.isNaN(timeOf(row.first_seen))) {
      if (Number.isNaN(time)) row.first_seen = row.last_seen = input.at;
      return;
    }
    if (time < timeOf(row.first_seen)) row.first_seen = input.at;
    if (time > timeOf(row.last_seen)) row.last_seen = input.at;
  });
  return groups;
}

/**
 * Upserts folded rows. For users touched more than once, `previous` is the row as it was before this
 * statement (a subquery in RETURNING reads the statement's snapshot, which does not see its own writes).
 */
async function upsertTouches(db: SqlQueryable, batch: TouchGroup[]): Promise<Row[]> {
  const repeated = batch.some((group) => group.indices.length > 1);
  const { rows } = await db.query(
    `INSERT INTO users AS u (id, platform, user_id, login, display_name, roles, first_seen, last_seen, message_count)
     SELECT x.id, x.platform, x.user_id, x.login, x.display_name, '[]'::jsonb, x.first_seen, x.last_seen, x.message_count
     FROM jsonb_to_recordset($1::jsonb) AS x(id text, platform text, user_id text, login text, display_name text,
       first_seen timestamptz, last_seen timestamptz, message_count bigint)
     ON CONFLICT (id) DO UPDATE SET
       login = EXCLUDED.login,
       display_name = coalesce(EXCLUDED.display_name, u.display_name),
       first_seen = least(u.first_seen, EXCLUDED.first_seen),
       last_seen = greatest(u.last_seen, EXCLUDED.last_seen),
       message_count = u.message_count + EXCLUDED.message_count
     RETURNING *, (xmax = 0) AS inserted${
       repeated
         ? `, (SELECT jsonb_build_object('first_seen', o.first_seen, 'last_seen', o.last_seen, 'display_name', o.display_name) FROM users o WHERE o.id = u.id) AS previous`
         : ''
     }`,
    [sqlJson(batch.map((group) => group.row))],
    // Auth waits for this on every chat message; parsing and planning it cost PostgreSQL about as much as running it.
    { prepare: true },
  );
  return rows;
}

/** Fills in each of a group's inputs' answer as if it had been touched on its own, in order. */
function replayTouches(
  inputs: TouchUserInput[],
  group: TouchGroup,
  row: Row,
  results: Array<{ user: UserRecord; created: boolean }>,
): void {
  const final = toUser(row);
  const created = row.inserted === true;
  const count = group.indices.length;
  if (count === 1) {
    results[group.indices[0]!] = { user: final, created };
    return;
  }
  // The state before this call: none when created; otherwise the snapshot row. When another writer
  // created the user after that snapshot, there is none to read, and the final row stands in for it.
  const previous = row.previous as { first_seen: string; last_seen: string; display_name: string | null } | null | undefined;
  let state: { firstSeen: string; lastSeen: string; displayName?: string } | undefined = created
    ? undefined
    : previous
      ? { firstSeen: iso(previous.first_seen)!, lastSeen: iso(previous.last_seen)!, displayName: optional(previous.display_name) }
      : { firstSeen: final.firstSeen, lastSeen: final.lastSeen, displayName: final.displayName };
  const before = final.messageCount - count;
  group.indices.forEach((index, position) => {
    const input = inputs[index]!;
    if (position === count - 1) {
      results[index] = { user: final, created: created && position === 0 };
      return;
    }
    // The database took the time, so only a form JavaScript cannot read ('now', …) lands here unparsed.
    const at = Number.isNaN(timeOf(input.at)) ? final.lastSeen : iso(input.at)!;
    state = state
      ? {
          firstSeen: timeOf(at) < timeOf(state.firstSeen) ? at : state.firstSeen,
          lastSeen: timeOf(at) > timeOf(state.lastSeen) ? at : state.lastSeen,
          displayName: input.displayName ?? state.displayName,
        }
      : { firstSeen: at, lastSeen: at, displayName: input.displayName };
    results[index] = {
      user: compact({
        ...final,
        roles: [...final.roles],
        login: input.login,
        displayName: state.displayName,
        firstSeen: state.firstSeen,
        lastSeen: state.lastSeen,
        messageCount: before + position + 1,
      }),
      created: created && position === 0,
    };
  });
}

function toRule(row: Row): RuleRecord {
  return compact({
    id: row.id,
    description: optional(row.description),
    priority: Number(row.priority),
    enabled: row.enabled,
    logic: row.logic,
    action: row.action ?? {},
    updatedAt: iso(row.updated_at)!,
  });
}

function toCommand(row: Row): CommandRecord {
  return compact({
    name: row.name,
    response: row.response,
    aliases: row.aliases ?? [],
    minRole: row.min_role,
    cooldownSec: Number(row.cooldown_sec),
    userCooldownSec: Number(row.user_cooldown_sec),
    enabled: row.enabled,
    uses: Number(row.uses),
    createdBy: optional(row.created_by),
    updatedAt: iso(row.updated_at)!,
  });
}

// -------------------------------------------------------------------------------------------- store

/** Builds a Store over a SQL executor. */
export function createSqlStore(config: SqlStoreOptions): Store {
  return new SqlStore(config);
}

class SqlStore implements Store {
  readonly driver: 'pglite' | 'postgres';
  #config: SqlStoreOptions;
  #db?: SqlExecutor;
  #cipher?: TokenCipher;
  #closed = false;
  #claimCalls = 0;

  constructor(config: SqlStoreOptions) {
    this.driver = config.driver;
    this.#config = config;
  }

  async init(): Promise<void> {
    if (this.#db) return;
    this.#cipher = await this.#config.loadCipher();
    let db: SqlExecutor;
    try {
      db = await this.#config.open();
    } catch (error) {
      throw mapSqlError(error);
    }
    try {
      await this.#migrate(db);
    } catch (error) {
      await db.close().catch(() => undefined);
      throw mapSqlError(error);
    }
    this.#db = db;
    this.#closed = false;
  }

  async #migrate(db: SqlExecutor): Promise<void> {
    const schema = this.#config.schema;
    await db.transaction(async (tx) => {
      // Serializes concurrent starters, including CREATE SCHEMA, which races on its own.
      await tx.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))', [MIGRATION_LOCK_KEY, schema ?? 'public']);
      if (schema) await tx.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      await tx.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const applied = new Set((await tx.query('SELECT version FROM schema_migrations')).rows.map((row) => Number(row.version)));
      for (const migration of MIGRATIONS) {
        if (applied.has(migration.version)) continue;
        await tx.exec(migration.sql);
        await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
        this.#config.options.logger?.info({ version: migration.version, name: migration.name }, 'applied store migration');
      }
    });
  }

  async ping(): Promise<boolean> {
    const db = this.#db;
    if (!db || this.#closed) return false;
    try {
      await withTimeout(db.query('SELECT 1'), PING_TIMEOUT_MS);
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    const db = this.#db;
    this.#closed = true;
    this.#db = undefined;
    if (db) await db.close();
  }

  /** Runs one operation with the error mapping every method shares. */
  async #run<T>(fn: (db: SqlExecutor) => Promise<T>): Promise<T> {
    const db = this.#db;
    if (!db) throw new BitBratError('STORE_UNAVAILABLE', this.#closed ? 'store is closed' : 'store is not initialized (call init() first)');
    try {
      return await fn(storable(db));
    } catch (error) {
      throw mapSqlError(error);
    }
  }

  // -------------------------------------------------------------------------------------- events

  async recordIngress(records: EventRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.#run(async (db) => {
      for (const batch of chunks(dedupe(records), BATCH_ROWS)) {
        const params: unknown[] = [sqlJson(batch.map(eventSummaryRow))];
        const ingress = envelopeTexts(
          params,
          batch.map((record) => record.ingress),
        );
        // A finalizer may have written the row first: then ingress fills in what it lacks, once.
        await db.query(
          `INSERT INTO events AS e (id, correlation_id, type, platform, channel, user_id, user_name, text, received_at, ingested, ingress)
           SELECT x.id, x.correlation_id, x.type, x.platform, x.channel, x.user_id, x.user_name, x.text, x.received_at, true, ${ingress}[x.n]
           FROM jsonb_to_recordset($1::jsonb) AS x(n integer, id text, correlation_id text, type text, platform text, channel text, user_id text,
             user_name text, text text, received_at timestamptz)
           ON CONFLICT (id) DO UPDATE SET
             ingested = true,
             ingress = EXCLUDED.ingress,
             platform = coalesce(e.platform, EXCLUDED.platform),
             channel = coalesce(e.channel, EXCLUDED.channel),
             user_id = coalesce(e.user_id, EXCLUDED.user_id),
             user_name = coalesce(e.user_name, EXCLUDED.user_name),
             text = coalesce(e.text, EXCLUDED.text)
           WHERE NOT e.ingested`,
          params,
        );
      }
    });
  }

  async recordFinal(records: EventRecord[]): Promise<string[]> {
    if (records.length === 0) return [];
    return await this.#run(async (db) => {
      const finalized = new Set<string>();
      const unique = dedupe(records);
      for (const batch of chunks(unique, BATCH_ROWS)) {
        const rows = batch.map((record, index) => ({
          ...eventSummaryRow(record, index),
          outcome: record.outcome,
          finalized_at: record.finalizedAt,
          reply_delivered: record.replyDelivered,
          reply_text: record.replyText,
          errors: record.errors,
          latency_ms: record.latencyMs,
        }));
        const params: unknown[] = [sqlJson(rows)];
        const ingress = envelopeTexts(
          params,
          batch.map((record) => record.ingress),
        );
        const final = envelopeTexts(
          params,
          batch.map((record) => record.final),
        );
        // finalized_at marks a finalized row; rows already finalized are skipped and not returned.
        const result = await db.query(
          `INSERT INTO events AS e (id, correlation_id, type, platform, channel, user_id, user_name, text, received_at, ingress,
             outcome, finalized_at, final, reply_delivered, reply_text, errors, latency_ms)
           SELECT x.id, x.correlation_id, x.type, x.platform, x.channel, x.user_id, x.user_name, x.text, x.received_at, ${ingress}[x.n],
             x.outcome, coalesce(x.finalized_at, now()), ${final}[x.n], x.reply_delivered, x.reply_text, x.errors, x.latency_ms
           FROM jsonb_to_recordset($1::jsonb) AS x(n integer, id text, correlation_id text, type text, platform text, channel text, user_id text,
             user_name text, text text, received_at timestamptz, outcome text, finalized_at timestamptz,
             reply_delivered boolean, reply_text text, errors jsonb, latency_ms double precision)
           ON CONFLICT (id) DO UPDATE SET
             outcome = EXCLUDED.outcome,
             finalized_at = EXCLUDED.finalized_at,
             final = EXCLUDED.final,
             reply_delivered = EXCLUDED.reply_delivered,
             reply_text = EXCLUDED.reply_text,
             errors = EXCLUDED.errors,
             latency_ms = EXCLUDED.latency_ms,
             ingress = coalesce(e.ingress, EXCLUDED.ingress),
             platform = coalesce(e.platform, EXCLUDED.platform),
             channel = coalesce(e.channel, EXCLUDED.channel),
             user_id = coalesce(e.user_id, EXCLUDED.user_id),
             user_name = coalesce(e.user_name, EXCLUDED.user_name),
             text = coalesce(e.text, EXCLUDED.text)
           WHERE e.finalized_at IS NULL
           RETURNING e.id`,
          params,
        );
        for (const row of result.rows) finalized.add(row.id);
      }
      return unique.filter((record) => finalized.has(record.id)).map((record) => record.id);
    });
  }

  async getEvent(id: string): Promise<EventRecord | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT * FROM events WHERE id = $1', [id]);
      return rows[0] ? toEvent(rows[0]) : undefined;
    });
  }

  /** Newest first. `since` and `until` are both inclusive. */
  async listEvents(query: EventQuery): Promise<Page<EventRecord>> {
    const limit = pageSize(query.limit);
    const params: unknown[] = [];
    const where: string[] = [];
    const add = (clause: (param: string) => string, value: unknown) => {
      params.push(value);
      where.push(clause(`$${params.length}`));
    };
    if (query.type !== undefined) add((p) => `type = ${p}`, query.type);
    if (query.outcome !== undefined) add((p) => `outcome = ${p}`, query.outcome);
    if (query.userId !== undefined) add((p) => `user_id = ${p}`, query.userId);
    if (query.userName !== undefined) add((p) => `user_name = ${p}`, query.userName);
    if (query.channel !== undefined) add((p) => `channel = ${p}`, query.channel);
    if (query.since !== undefined) add((p) => `received_at >= ${p}::timestamptz`, queryTime('since', query.since));
    if (query.until !== undefined) add((p) => `received_at <= ${p}::timestamptz`, queryTime('until', query.until));
    if (query.cursor !== undefined) {
      const cursor = decodeEventCursor(query.cursor);
      params.push(cursor.receivedUs, cursor.id);
      where.push(
        `(received_at, id) < (timestamptz 'epoch' + $${params.length - 1}::bigint * interval '1 microsecond', $${params.length}::text)`,
      );
    }
    params.push(limit + 1);
    const sql = `SELECT ${EVENT_COLUMNS} FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY received_at DESC, id DESC LIMIT $${params.length}`;
    return await this.#run(async (db) => {
      const { rows } = await db.query(sql, params);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return compact({
        items: page.map(toEvent),
        nextCursor: rows.length > limit && last ? encodeCursor(last.received_us, last.id) : undefined,
      });
    });
  }

  async listUnfinalized(query: { before: string; limit?: number }): Promise<EventRecord[]> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `SELECT ${EVENT_COLUMNS} FROM events WHERE finalized_at IS NULL AND ingested AND received_at <= $1::timestamptz ORDER BY received_at, id LIMIT $2`,
        [queryTime('before', query.before), pageSize(query.limit)],
      );
      return rows.map(toEvent);
    });
  }

  async pruneEvents(before: string): Promise<number> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        'WITH gone AS (DELETE FROM events WHERE received_at < $1::timestamptz RETURNING 1) SELECT count(*)::int AS n FROM gone',
        [queryTime('before', before)],
      );
      return Number(rows[0]?.n ?? 0);
    });
  }

  // --------------------------------------------------------------------------------- dead letters

  async insertDeadLetter(record: Omit<DeadLetterRecord, 'replayCount'>): Promise<boolean> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO deadletters (id, received_at, dead_letter, replayed_at, replay_count) VALUES ($1, $2::timestamptz, $3::jsonb, $4::timestamptz, 0)
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [record.id, record.receivedAt, json(record.deadLetter), record.replayedAt ?? null],
      );
      return rows.length === 1;
    });
  }

  /** Newest first; replayed letters are left out unless `includeReplayed`. */
  async listDeadLetters(query: { limit?: number; cursor?: string; includeReplayed?: boolean }): Promise<Page<DeadLetterRecord>> {
    const limit = pageSize(query.limit);
    const params: unknown[] = [];
    const where: string[] = [];
    if (!query.includeReplayed) where.push('replayed_at IS NULL');
    if (query.cursor !== undefined) {
      const cursor = decodeEventCursor(query.cursor);
      params.push(cursor.receivedUs, cursor.id);
      where.push(`(received_at, id) < (timestamptz 'epoch' + $1::bigint * interval '1 microsecond', $2::text)`);
    }
    params.push(limit + 1);
    const sql = `SELECT *, (extract(epoch from received_at) * 1000000)::bigint::text AS received_us FROM deadletters
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY received_at DESC, id DESC LIMIT $${params.length}`;
    return await this.#run(async (db) => {
      const { rows } = await db.query(sql, params);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return compact({
        items: page.map(toDeadLetter),
        nextCursor: rows.length > limit && last ? encodeCursor(last.received_us, last.id) : undefined,
      });
    });
  }

  async getDeadLetter(id: string): Promise<DeadLetterRecord | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT * FROM deadletters WHERE id = $1', [id]);
      return rows[0] ? toDeadLetter(rows[0]) : undefined;
    });
  }

  async markDeadLetterReplayed(id: string, at: string): Promise<DeadLetterRecord | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        'UPDATE deadletters SET replayed_at = $2::timestamptz, replay_count = replay_count + 1 WHERE id = $1 RETURNING *',
        [id, at],
      );
      return rows[0] ? toDeadLetter(rows[0]) : undefined;
    });
  }

  async pruneDeadLetters(before: string): Promise<number> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        'WITH gone AS (DELETE FROM deadletters WHERE received_at < $1::timestamptz RETURNING 1) SELECT count(*)::int AS n FROM gone',
        [queryTime('before', before)],
      );
      return Number(rows[0]?.n ?? 0);
    });
  }

  // -------------------------------------------------------------------------------------- sources

  async mergeSource(patch: SourceState): Promise<SourceState> {
    return await this.#run(async (db) => {
      // One statement: the row lock taken by ON CONFLICT makes concurrent merges apply one after the other.
      const { rows } = await db.query(
        `INSERT INTO sources AS s (id, platform, doc, updated_at) VALUES ($1, $2, $3::jsonb, now())
         ON CONFLICT (id) DO UPDATE SET doc = bitbrat_merge_source(s.doc, EXCLUDED.doc), updated_at = now()
         RETURNING doc`,
        [patch.id, patch.platform, sqlJson(patch)],
      );
      return rows[0]!.doc as SourceState;
    });
  }

  async getSource(id: string): Promise<SourceState | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT doc FROM sources WHERE id = $1', [id]);
      return rows[0]?.doc as SourceState | undefined;
    });
  }

  async listSources(): Promise<SourceState[]> {
    return await this.#run(async (db) => (await db.query('SELECT doc FROM sources ORDER BY id')).rows.map((row) => row.doc as SourceState));
  }

  // ---------------------------------------------------------------------------------------- users

  async touchUser(input: TouchUserInput): Promise<{ user: UserRecord; created: boolean }> {
    return (await this.touchUsers([input]))[0]!;
  }

  /**
   * One upsert statement per batch (a transaction when it takes more than one). A statement may change
   * a row only once, so each user's inputs are folded into one row first; the per-input answers are then
   * replayed from the row the statement returns (and, for repeated users, the row as it was before).
   */
  async touchUsers(inputs: TouchUserInput[]): Promise<Array<{ user: UserRecord; created: boolean }>> {
    if (inputs.length === 0) return [];
    const groups = groupTouches(inputs);
    const batches = chunks([...groups.values()], BATCH_ROWS);
    return await this.#run(async (db) => {
      const upsert = async (q: SqlQueryable) => {
        const rows: Row[] = [];
        for (const batch of batches) rows.push(...(await upsertTouches(q, batch)));
        return rows;
      };
      const rows = batches.length === 1 ? await upsert(db) : await db.transaction(upsert);
      const byId = new Map(rows.map((row) => [row.id as string, row]));
      const results = new Array<{ user: UserRecord; created: boolean }>(inputs.length);
      for (const group of groups.values()) {
        const row = byId.get(group.id);
        if (!row) throw new Error(`touchUsers: the upsert returned no row for user ${group.id}`);
        replayTouches(inputs, group, row, results);
      }
      return results;
    });
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT * FROM users WHERE id = $1', [id]);
      return rows[0] ? toUser(rows[0]) : undefined;
    });
  }

  /** Case-insensitive; when a login moved between accounts the most recently seen wins. */
  async findUserByLogin(platform: string, login: string): Promise<UserRecord | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        'SELECT * FROM users WHERE platform = $1 AND lower(login) = lower($2) ORDER BY last_seen DESC LIMIT 1',
        [platform, login],
      );
      return rows[0] ? toUser(rows[0]) : undefined;
    });
  }

  async setUserRoles(id: string, roles: string[]): Promise<UserRecord | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('UPDATE users SET roles = $2::jsonb WHERE id = $1 RETURNING *', [id, sqlJson([...new Set(roles)])]);
      return rows[0] ? toUser(rows[0]) : undefined;
    });
  }

  // ---------------------------------------------------------------------------------------- rules

  async listRules(): Promise<RuleRecord[]> {
    return await this.#run(async (db) => (await db.query('SELECT * FROM rules ORDER BY priority DESC, id')).rows.map(toRule));
  }

  async getRule(id: string): Promise<RuleRecord | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT * FROM rules WHERE id = $1', [id]);
      return rows[0] ? toRule(rows[0]) : undefined;
    });
  }

  async upsertRule(rule: Omit<RuleRecord, 'updatedAt'>): Promise<RuleRecord> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO rules (id, description, priority, enabled, logic, action, updated_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, clock_timestamp())
         ON CONFLICT (id) DO UPDATE SET description = EXCLUDED.description, priority = EXCLUDED.priority, enabled = EXCLUDED.enabled,
           logic = EXCLUDED.logic, action = EXCLUDED.action, updated_at = EXCLUDED.updated_at
         RETURNING *`,
        [rule.id, rule.description ?? null, rule.priority, rule.enabled, json(rule.logic ?? null), json(rule.action ?? {})],
      );
      return toRule(rows[0]!);
    });
  }

  async deleteRule(id: string): Promise<boolean> {
    return await this.#run(async (db) => (await db.query('DELETE FROM rules WHERE id = $1 RETURNING id', [id])).rows.length === 1);
  }

  /** A digest of every rule's content and update time: it changes with any upsert or delete. */
  async rulesVersion(): Promise<string> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(`SELECT md5(coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.id)::text, '[]')) AS version FROM rules r`);
      return String(rows[0]!.version);
    });
  }

  // ------------------------------------------------------------------------------------- commands

  async listCommands(): Promise<CommandRecord[]> {
    return await this.#run(async (db) => (await db.query('SELECT * FROM commands ORDER BY name')).rows.map(toCommand));
  }

  async getCommand(name: string): Promise<CommandRecord | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT * FROM commands WHERE name = $1', [name.toLowerCase()]);
      return rows[0] ? toCommand(rows[0]) : undefined;
    });
  }

  /** Names are stored lower-case; `uses` is kept unless given. */
  async upsertCommand(command: Omit<CommandRecord, 'updatedAt' | 'uses'> & { uses?: number }): Promise<CommandRecord> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO commands AS c (name, response, aliases, min_role, cooldown_sec, user_cooldown_sec, enabled, uses, created_by, updated_at)
         VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, coalesce($8::bigint, 0), $9, clock_timestamp())
         ON CONFLICT (name) DO UPDATE SET response = EXCLUDED.response, aliases = EXCLUDED.aliases, min_role = EXCLUDED.min_role,
           cooldown_sec = EXCLUDED.cooldown_sec, user_cooldown_sec = EXCLUDED.user_cooldown_sec, enabled = EXCLUDED.enabled,
           uses = coalesce($8::bigint, c.uses), created_by = coalesce(c.created_by, EXCLUDED.created_by), updated_at = EXCLUDED.updated_at
         RETURNING *`,
        [
          command.name.toLowerCase(),
          command.response,
          sqlJson(command.aliases ?? []),
          command.minRole,
          command.cooldownSec ?? 0,
          command.userCooldownSec ?? 0,
          command.enabled,
          command.uses ?? null,
          command.createdBy ?? null,
        ],
      );
      return toCommand(rows[0]!);
    });
  }

  async deleteCommand(name: string): Promise<boolean> {
    return await this.#run(
      async (db) => (await db.query('DELETE FROM commands WHERE name = $1 RETURNING name', [name.toLowerCase()])).rows.length === 1,
    );
  }

  async incrementCommandUse(name: string): Promise<number> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('UPDATE commands SET uses = uses + 1 WHERE name = $1 RETURNING uses', [name.toLowerCase()]);
      if (!rows[0]) throw new BitBratError('NOT_FOUND', `command ${name} does not exist`);
      return Number(rows[0].uses);
    });
  }

  // --------------------------------------------------------------------------------------- tokens

  #tokenParams(token: Omit<OAuthToken, 'version'>): unknown[] {
    const cipher = this.#cipher!;
    return [
      token.id,
      cipher.encrypt(token.accessToken, `oauth_tokens:${token.id}`),
      token.refreshToken === undefined ? null : cipher.encrypt(token.refreshToken, `oauth_tokens:${token.id}`),
      sqlJson(token.scopes ?? []),
      token.expiresAt ?? null,
      token.obtainedAt,
      token.userId ?? null,
      token.login ?? null,
    ];
  }

  #toToken(row: Row): OAuthToken {
    const cipher = this.#cipher!;
    return compact({
      id: row.id,
      accessToken: cipher.decrypt(row.access_token, `oauth_tokens:${row.id}`),
      refreshToken: row.refresh_token === null ? undefined : cipher.decrypt(row.refresh_token, `oauth_tokens:${row.id}`),
      scopes: row.scopes ?? [],
      // null means no known expiry.
      expiresAt: row.expires_at === null ? null : iso(row.expires_at),
      obtainedAt: iso(row.obtained_at)!,
      userId: optional(row.user_id),
      login: optional(row.login),
      version: Number(row.version),
    });
  }

  async getToken(id: string): Promise<OAuthToken | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT * FROM oauth_tokens WHERE id = $1', [id]);
      return rows[0] ? this.#toToken(rows[0]) : undefined;
    });
  }

  async putToken(token: Omit<OAuthToken, 'version'>): Promise<OAuthToken> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO oauth_tokens AS t (id, access_token, refresh_token, scopes, expires_at, obtained_at, user_id, login, version, updated_at)
         VALUES ($1, $2, $3, $4::jsonb, $5::timestamptz, $6::timestamptz, $7, $8, 1, now())
         ON CONFLICT (id) DO UPDATE SET access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token, scopes = EXCLUDED.scopes,
           expires_at = EXCLUDED.expires_at, obtained_at = EXCLUDED.obtained_at, user_id = EXCLUDED.user_id, login = EXCLUDED.login,
           version = t.version + 1, updated_at = now()
         RETURNING *`,
        this.#tokenParams(token),
      );
      return this.#toToken(rows[0]!);
    });
  }

  /** `expectedVersion` 0 means "only if no token exists yet". */
  async updateTokenIf(expectedVersion: number, token: Omit<OAuthToken, 'version'>): Promise<OAuthToken | undefined> {
    return await this.#run(async (db) => {
      const params = this.#tokenParams(token);
      const { rows } =
        expectedVersion === 0
          ? await db.query(
              `INSERT INTO oauth_tokens (id, access_token, refresh_token, scopes, expires_at, obtained_at, user_id, login, version, updated_at)
               VALUES ($1, $2, $3, $4::jsonb, $5::timestamptz, $6::timestamptz, $7, $8, 1, now())
               ON CONFLICT (id) DO NOTHING RETURNING *`,
              params,
            )
          : await db.query(
              `UPDATE oauth_tokens SET access_token = $2, refresh_token = $3, scopes = $4::jsonb, expires_at = $5::timestamptz,
                 obtained_at = $6::timestamptz, user_id = $7, login = $8, version = version + 1, updated_at = now()
               WHERE id = $1 AND version = $9 RETURNING *`,
              [...params, expectedVersion],
            );
      return rows[0] ? this.#toToken(rows[0]) : undefined;
    });
  }

  async deleteToken(id: string): Promise<boolean> {
    return await this.#run(async (db) => (await db.query('DELETE FROM oauth_tokens WHERE id = $1 RETURNING id', [id])).rows.length === 1);
  }

  // ---------------------------------------------------------------------------------- coordination

  async claimKey(namespace: string, key: string, ttlMs: number): Promise<boolean> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO claims AS c (namespace, key, expires_at) VALUES ($1, $2, now() + $3::double precision * interval '1 millisecond')
         ON CONFLICT (namespace, key) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE c.expires_at <= now()
         RETURNING key`,
        [namespace, key, ttlMs],
      );
      // Expired claims are garbage; sweep them now and then instead of on a timer.
      if (++this.#claimCalls % 500 === 0) await db.query('DELETE FROM claims WHERE expires_at < now()');
      return rows.length === 1;
    });
  }

  async appendConversation(channelKey: string, turns: ConversationTurn[], max: number): Promise<ConversationTurn[]> {
    const keep = Math.max(0, Math.floor(max));
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO conversations AS c (channel_key, turns, updated_at) VALUES ($1, $2::jsonb, now())
         ON CONFLICT (channel_key) DO UPDATE SET updated_at = now(), turns = (
           SELECT coalesce(jsonb_agg(t.turn ORDER BY t.n), '[]'::jsonb)
           FROM jsonb_array_elements(c.turns || EXCLUDED.turns) WITH ORDINALITY AS t(turn, n)
           WHERE t.n > jsonb_array_length(c.turns || EXCLUDED.turns) - $3::int)
         RETURNING turns`,
        [channelKey, sqlJson(keep === 0 ? [] : turns.slice(-keep)), keep],
      );
      return rows[0]!.turns as ConversationTurn[];
    });
  }

  async getConversation(channelKey: string): Promise<ConversationTurn[]> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT turns FROM conversations WHERE channel_key = $1', [channelKey]);
      return (rows[0]?.turns as ConversationTurn[] | undefined) ?? [];
    });
  }

  // ------------------------------------------------------------------------------------ documents

  async putDoc<T extends Record<string, unknown>>(collection: string, id: string, data: T): Promise<DocRecord<T>> {
    checkDocKey(collection, id);
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO documents (collection, id, data, updated_at) VALUES ($1, $2, $3::jsonb, clock_timestamp())
         ON CONFLICT (collection, id) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at RETURNING *`,
        [collection, id, sqlJson(data)],
      );
      return toDoc<T>(rows[0]!);
    });
  }

  async createDoc<T extends Record<string, unknown>>(collection: string, id: string, data: T): Promise<DocRecord<T> | undefined> {
    checkDocKey(collection, id);
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO documents (collection, id, data, updated_at) VALUES ($1, $2, $3::jsonb, clock_timestamp()) ON CONFLICT (collection, id) DO NOTHING RETURNING *`,
        [collection, id, sqlJson(data)],
      );
      return rows[0] ? toDoc<T>(rows[0]) : undefined;
    });
  }

  async getDoc<T extends Record<string, unknown>>(collection: string, id: string): Promise<DocRecord<T> | undefined> {
    return await this.#run(async (db) => {
      const { rows } = await db.query('SELECT * FROM documents WHERE collection = $1 AND id = $2', [collection, id]);
      return rows[0] ? toDoc<T>(rows[0]) : undefined;
    });
  }

  async listDocs<T extends Record<string, unknown>>(collection: string, query: DocQuery = {}): Promise<DocRecord<T>[]> {
    const limit = docLimit(query.limit);
    return await this.#run(async (db) => {
      // starts_with, not LIKE: no character of a prefix acts as a wildcard. Ids sort bytewise on every driver.
      const { rows } = await db.query(
        `SELECT * FROM documents WHERE collection = $1 AND ($2::text IS NULL OR starts_with(id, $2))
         ORDER BY id COLLATE "C" ${query.descending ? 'DESC' : 'ASC'} LIMIT $3`,
        [collection, query.prefix || null, limit],
      );
      return rows.map((row) => toDoc<T>(row));
    });
  }

  async deleteDoc(collection: string, id: string): Promise<boolean> {
    return await this.#run(
      async (db) =>
        (await db.query('DELETE FROM documents WHERE collection = $1 AND id = $2 RETURNING id', [collection, id])).rows.length === 1,
    );
  }

  /** With `ttlMs` the counter is a window: once it expires the next increment starts it again from `by`. */
  async incrementCounter(key: string, by: number, ttlMs?: number): Promise<number> {
    return await this.#run(async (db) => {
      const { rows } = await db.query(
        `INSERT INTO counters AS c (key, value, expires_at, updated_at)
         VALUES ($1, $2::double precision, CASE WHEN $3::double precision IS NULL THEN NULL ELSE now() + $3::double precision * interval '1 millisecond' END, now())
         ON CONFLICT (key) DO UPDATE SET
           value = CASE WHEN c.expires_at IS NOT NULL AND c.expires_at <= now() THEN EXCLUDED.value ELSE c.value + EXCLUDED.value END,
           expires_at = CASE WHEN c.expires_at IS NOT NULL AND c.expires_at <= now() THEN EXCLUDED.expires_at ELSE coalesce(c.expires_at, EXCLUDED.expires_at) END,
           updated_at = now()
         RETURNING value`,
        [key, by, ttlMs ?? null],
      );
      return Number(rows[0]!.value);
    });
  }

  async listCounters(prefix: string, limit: number): Promise<Array<{ key: string; value: number }>> {
    return await this.#run(async (db) => {
      // left(key, n) = prefix rather than LIKE: a prefix holding % or _ needs no escaping.
      const { rows } = await db.query(
        `SELECT key, value FROM counters WHERE left(key, length($1::text)) = $1::text AND (expires_at IS NULL OR expires_at > now())
         ORDER BY value DESC, key LIMIT $2`,
        [prefix, Math.max(0, Math.floor(limit))],
      );
      return rows.map((row) => ({ key: String(row.key), value: Number(row.value) }));
    });
  }
}
