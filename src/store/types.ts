/**
 * The store contract: one interface, three drivers (pglite, postgres, firestore). Services see only
 * this. Every write that can be repeated by a redelivered message is idempotent.
 */
import type { Envelope } from '../core/index.js';
import type { DeadLetter } from '../core/deadletter.js';

export type StoreDriver = 'pglite' | 'postgres' | 'firestore';

// ---------------------------------------------------------------------------------------------- events

/** One record per envelope id: written at ingress, completed by the finalizer. */
export interface EventRecord {
  id: string;
  correlationId: string;
  type: string;
  platform?: string;
  channel?: string;
  userId?: string;
  userName?: string;
  text?: string;
  receivedAt: string;
  /** The envelope as first seen on ingress (normalized) and the raw platform payload when there is one. */
  ingress?: { envelope: Envelope; raw?: unknown };
  /** Set by the finalizer. */
  outcome?: 'completed' | 'handled' | 'failed' | 'unrouted';
  finalizedAt?: string;
  /** The envelope as finalized: full slip history with per-step status, attempts, timings, errors. */
  final?: Envelope;
  replyDelivered?: boolean;
  replyText?: string;
  errors?: Array<{ code: string; message?: string; step?: string }>;
  latencyMs?: number;
}

export interface EventQuery {
  type?: string;
  outcome?: string;
  userId?: string;
  userName?: string;
  channel?: string;
  /** ISO timestamps (receivedAt). */
  since?: string;
  until?: string;
  limit?: number;
  /** Opaque cursor from the previous page. */
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  nextCursor?: string;
}

// ----------------------------------------------------------------------------------------- deadletters

export interface DeadLetterRecord {
  id: string;
  receivedAt: string;
  deadLetter: DeadLetter;
  replayedAt?: string;
  replayCount: number;
}

// --------------------------------------------------------------------------------------------- sources

/** Seed 002 source document, id `{platform}:{id}`. Every field but id/platform is optional on write. */
export interface SourceMetrics {
  messagesIn?: number;
  messagesOut?: number;
  errors?: number;
  reconnects?: number;
  lastHeartbeat?: string;
}

export interface SourceState {
  id: string;
  platform: string;
  displayName?: string;
  status?: 'connected' | 'disconnected' | 'connecting' | 'error' | 'not_configured';
  streamStatus?: 'online' | 'offline' | 'unknown';
  lastStatusUpdate?: string;
  lastStreamUpdate?: string;
  lastError?: { code?: string; message: string; at?: string } | null;
  metrics?: SourceMetrics;
  authStatus?: 'valid' | 'expired' | 'missing' | 'invalid' | 'unknown';
  viewerCount?: number | null;
  permissions?: { moderator?: boolean; vip?: boolean; broadcaster?: boolean; [key: string]: unknown };
  latencyMs?: number | null;
  metadata?: Record<string, unknown>;
}

// ----------------------------------------------------------------------------------------------- users

export interface UserRecord {
  /** `{platform}:{userId}` */
  id: string;
  platform: string;
  userId: string;
  login: string;
  displayName?: string;
  /** Roles set by moderators/owner (e.g. banned, trusted, moderator); override badge roles. */
  roles: string[];
  firstSeen: string;
  lastSeen: string;
  messageCount: number;
}

export interface TouchUserInput {
  platform: string;
  userId: string;
  login: string;
  displayName?: string;
  at: string;
}

// -------------------------------------------------------------------------------------- rules/commands

export interface RuleRecord {
  id: string;
  description?: string;
  /** Higher first. */
  priority: number;
  enabled: boolean;
  /** JsonLogic expression evaluated against the envelope context. */
  logic: unknown;
  /** What a match does: slip step ids, egress/finalization destinations, annotations. */
  action: Record<string, unknown>;
  updatedAt: string;
}

export interface CommandRecord {
  /** The command name without prefix, lower-case. */
  name: string;
  response: string;
  aliases: string[];
  minRole: string;
  cooldownSec: number;
  userCooldownSec: number;
  enabled: boolean;
  uses: number;
  createdBy?: string;
  updatedAt: string;
}

// ---------------------------------------------------------------------------------------------- oauth

export interface OAuthToken {
  /** e.g. `twitch:bot`, `twitch:broadcaster` */
  id: string;
  accessToken: string;
  refreshToken?: string;
  scopes: string[];
  expiresAt?: string | null;
  obtainedAt: string;
  userId?: string;
  login?: string;
  /** Monotonic version for compare-and-set updates. */
  version: number;
}

// --------------------------------------------------------------------------------------- conversations

export interface ConversationTurn {
  role: 'user' | 'assistant';
  text: string;
  user?: string;
  at: string;
}

// ------------------------------------------------------------------------------------------- documents

/**
 * A small JSON document in a named collection (moderation filters and log, timers, quotes, giveaways…):
 * features whose records are read and written whole, by id, and listed in id order. Ids are chosen by the
 * caller so they sort usefully (e.g. a timestamp first).
 */
export interface DocRecord<T = Record<string, unknown>> {
  collection: string;
  id: string;
  data: T;
  updatedAt: string;
}

export interface DocQuery {
  /** Only ids starting with this. */
  prefix?: string;
  /** Default 100, at most 1 000. */
  limit?: number;
  /** Highest id first. Default false. */
  descending?: boolean;
}

/** Most documents listDocs returns in one call. */
export const MAX_DOC_LIST = 1_000;

// ----------------------------------------------------------------------------------------------- store

export interface Store {
  readonly driver: StoreDriver;
  /** Connect and run migrations (safe when two instances start at once). */
  init(): Promise<void>;
  /** True when the backing database answers. */
  ping(): Promise<boolean>;
  close(): Promise<void>;

  // events
  /** Idempotent on id: a second call does not overwrite an existing ingress record. */
  recordIngress(records: EventRecord[]): Promise<void>;
  /** Idempotent on id: returns the ids that were newly finalized (a redelivery returns none). Creates the row when ingress was never recorded. */
  recordFinal(records: EventRecord[]): Promise<string[]>;
  getEvent(id: string): Promise<EventRecord | undefined>;
  listEvents(query: EventQuery): Promise<Page<EventRecord>>;
  /** Deletes events received before `before`; returns how many. */
  pruneEvents(before: string): Promise<number>;
  /** Events recorded on ingress and not finalized, received at or before `before`, oldest first (stalled events). */
  listUnfinalized(query: { before: string; limit?: number }): Promise<EventRecord[]>;

  // dead letters
  /** Idempotent on id; returns true when newly inserted. */
  insertDeadLetter(record: Omit<DeadLetterRecord, 'replayCount'>): Promise<boolean>;
  listDeadLetters(query: { limit?: number; cursor?: string; includeReplayed?: boolean }): Promise<Page<DeadLetterRecord>>;
  getDeadLetter(id: string): Promise<DeadLetterRecord | undefined>;
  markDeadLetterReplayed(id: string, at: string): Promise<DeadLetterRecord | undefined>;
  pruneDeadLetters(before: string): Promise<number>;

  // sources (deep merge: never loses fields written by others; metrics merge key by key)
  mergeSource(patch: SourceState): Promise<SourceState>;
  getSource(id: string): Promise<SourceState | undefined>;
  listSources(): Promise<SourceState[]>;

  // users
  /** Upsert: first/last seen, message count +1; returns the record and whether it is new. */
  touchUser(input: TouchUserInput): Promise<{ user: UserRecord; created: boolean }>;
  /**
   * touchUser for many messages in one round trip. Results are in input order and are what calling
   * touchUser for each input in turn would have answered: every input counts one message, `created` is
   * true only for the first input of a user that did not exist before the call. A bad input fails the
   * whole call with nothing written.
   */
  touchUsers(inputs: TouchUserInput[]): Promise<Array<{ user: UserRecord; created: boolean }>>;
  getUser(id: string): Promise<UserRecord | undefined>;
  findUserByLogin(platform: string, login: string): Promise<UserRecord | undefined>;
  setUserRoles(id: string, roles: string[]): Promise<UserRecord | undefined>;

  // rules
  listRules(): Promise<RuleRecord[]>;
  getRule(id: string): Promise<RuleRecord | undefined>;
  upsertRule(rule: Omit<RuleRecord, 'updatedAt'>): Promise<RuleRecord>;
  deleteRule(id: string): Promise<boolean>;
  /** Changes whenever any rule changes (for reload without restart). */
  rulesVersion(): Promise<string>;

  // commands
  listCommands(): Promise<CommandRecord[]>;
  getCommand(name: string): Promise<CommandRecord | undefined>;
  upsertCommand(command: Omit<CommandRecord, 'updatedAt' | 'uses'> & { uses?: number }): Promise<CommandRecord>;
  deleteCommand(name: string): Promise<boolean>;
  /** Atomically +1; returns the new count. */
  incrementCommandUse(name: string): Promise<number>;

  // oauth tokens (encrypted at rest)
  getToken(id: string): Promise<OAuthToken | undefined>;
  /** Unconditional write; version becomes previous + 1. */
  putToken(token: Omit<OAuthToken, 'version'>): Promise<OAuthToken>;
  /** Compare-and-set on version; returns undefined when someone else updated first. */
  updateTokenIf(expectedVersion: number, token: Omit<OAuthToken, 'version'>): Promise<OAuthToken | undefined>;
  deleteToken(id: string): Promise<boolean>;

  // small coordination primitives
  /** True when the key was not claimed in `namespace` within the last `ttlMs` (then claims it). */
  claimKey(namespace: string, key: string, ttlMs: number): Promise<boolean>;
  /** Appends and keeps only the last `max` turns; returns them oldest first. */
  appendConversation(channelKey: string, turns: ConversationTurn[], max: number): Promise<ConversationTurn[]>;
  getConversation(channelKey: string): Promise<ConversationTurn[]>;
  /** Atomic counter (e.g. daily token budget); returns the new value. */
  incrementCounter(key: string, by: number, ttlMs?: number): Promise<number>;
  /** The live (unexpired) counters whose key starts with `prefix`, highest value first, at most `limit`. */
  listCounters(prefix: string, limit: number): Promise<Array<{ key: string; value: number }>>;

  // documents
  /** Writes the whole document (insert or replace). */
  putDoc<T extends Record<string, unknown>>(collection: string, id: string, data: T): Promise<DocRecord<T>>;
  /** Inserts only when no document has this id; returns undefined when one exists (nothing changes). */
  createDoc<T extends Record<string, unknown>>(collection: string, id: string, data: T): Promise<DocRecord<T> | undefined>;
  getDoc<T extends Record<string, unknown> = Record<string, unknown>>(collection: string, id: string): Promise<DocRecord<T> | undefined>;
  /** In id order (see DocQuery). */
  listDocs<T extends Record<string, unknown> = Record<string, unknown>>(collection: string, query?: DocQuery): Promise<DocRecord<T>[]>;
  /** True when this call deleted it: of two racing deletes exactly one gets true (used to consume a permit once). */
  deleteDoc(collection: string, id: string): Promise<boolean>;
}

export interface CreateStoreOptions {
  driver: StoreDriver;
  /** pglite: directory for data, or `memory://` for an in-memory database (tests). */
  dataDir?: string;
  /** postgres */
  databaseUrl?: string;
  /** postgres: schema to use (created if missing); default `public`. Tests use one per run. */
  schema?: string;
  firestore?: { projectId: string; host?: string; collectionPrefix?: string };
  /** Key source for oauth token encryption (secret TOKEN_ENCRYPTION_KEY, 32 bytes as base64 or hex). */
  secrets?: { get(name: string): Promise<string | undefined> };
  /** Embedded deployment: a missing key is generated and kept in `${dataDir}/token.key`. Otherwise a missing key is a start-up error. */
  embedded?: boolean;
  logger?: { info: (...args: any[]) => void; warn: (...args: any[]) => void; error: (...args: any[]) => void };
}
