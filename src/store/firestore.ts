/**
 * Firestore driver (cloud). Same contract as the SQL drivers; idempotency comes from create() (fails
 * when the document exists) and read-modify-write runs in transactions.
 *
 * Storage notes:
 * - Envelopes, raw payloads, dead letters and rule logic/actions are stored as JSON strings: Firestore
 *   rejects nested arrays (common in JsonLogic and platform payloads) and reserved map keys.
 * - Timestamps are ISO-8601 strings normalized to UTC (`toISOString`), so they sort as strings.
 * - Real Firestore needs composite indexes for listEvents: for each equality filter F in
 *   (type, outcome, userId, userName, channel): (F ASC, receivedAt DESC, __name__ DESC), plus
 *   deadletters (replayedAt ASC, receivedAt DESC, __name__ DESC). The emulator needs none.
 * - Claims and counters carry `expireAt` (Timestamp) so a Firestore TTL policy can sweep them.
 */
import {
  FieldPath,
  Firestore,
  Timestamp,
  type CollectionReference,
  type DocumentData,
  type DocumentReference,
  type Query,
  type Transaction,
} from '@google-cloud/firestore';
import { wellFormedDeep } from '../core/builders.js';
import { BitBratError } from '../core/errors.js';
import { loadTokenCipher, type TokenCipher } from './crypto.js';
import { checkDocKey, compact, decodeCursor, docLimit, dedupe, encodeCursor, pageSize, parseQueryTime } from './common.js';
import { mergeSourceState } from './sources.js';
import type {
  DocQuery,
  DocRecord,
  CommandRecord,
  ConversationTurn,
  CreateStoreOptions,
  DeadLetterRecord,
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

/** Bumped when the document layout changes; recorded in `{prefix}meta/schema`. */
export const FIRESTORE_SCHEMA_VERSION = 1;
/** Firestore's per-document limit. */
export const MAX_DOCUMENT_BYTES = 1_048_576;

const WRITE_CONCURRENCY = 16;
const TRANSACTION_ATTEMPTS = 50;
const PING_TIMEOUT_MS = 3_000;
const INIT_TIMEOUT_MS = 20_000;
const PRUNE_BATCH = 400;
/** Users per touchUsers transaction. */
const USER_TOUCH_BATCH = 400;

const COLLECTIONS = [
  'events',
  'deadletters',
  'sources',
  'users',
  'rules',
  'commands',
  'oauth_tokens',
  'claims',
  'conversations',
  'counters',
  'documents',
  'meta',
] as const;
type CollectionName = (typeof COLLECTIONS)[number];

// ------------------------------------------------------------------------------------------- errors

/** gRPC status codes. */
const Status = {
  CANCELLED: 1,
  DEADLINE_EXCEEDED: 4,
  INVALID_ARGUMENT: 3,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  ABORTED: 10,
  UNAVAILABLE: 14,
} as const;
const TOO_LARGE = /too (big|large)|exceeds the maximum|maximum (allowed )?size|longer than \d+ bytes/i;
const CLIENT_VALIDATION =
  /Value for argument|is not a valid|Nested arrays|Cannot encode|Input is not a plain|Path must be|Cannot use "undefined"|Invalid use of type/i;

export function mapFirestoreError(error: unknown): unknown {
  if (error instanceof BitBratError) return error;
  const candidate = error as { code?: unknown; message?: unknown; details?: unknown };
  const code = typeof candidate?.code === 'number' ? candidate.code : undefined;
  const message = typeof candidate?.message === 'string' ? candidate.message : String(error);
  if (
    code === Status.UNAVAILABLE ||
    code === Status.DEADLINE_EXCEEDED ||
    code === Status.ABORTED ||
    code === Status.RESOURCE_EXHAUSTED ||
    code === Status.CANCELLED
  ) {
    return new BitBratError('STORE_UNAVAILABLE', `firestore unavailable: ${message}`, {
      retryable: true,
      cause: error,
      details: { grpcCode: code },
    });
  }
  if (code === Status.INVALID_ARGUMENT && TOO_LARGE.test(message)) {
    return new BitBratError('DOCUMENT_TOO_LARGE', `document too large for firestore: ${message}`, { cause: error });
  }
  if (code === Status.INVALID_ARGUMENT || (code === undefined && CLIENT_VALIDATION.test(message))) {
    return new BitBratError('STORE_CONSTRAINT', `record rejected by firestore: ${message}`, { cause: error });
  }
  return error;
}

function isAlreadyExists(error: unknown): boolean {
  return (error as { code?: unknown })?.code === Status.ALREADY_EXISTS;
}

// ------------------------------------------------------------------------------------------ helpers

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const normIso = (value: string): string => {
  const time = Date.parse(value);
  if (Number.isNaN(time)) throw new BitBratError('STORE_CONSTRAINT', `invalid timestamp "${value}"`);
  return new Date(time).toISOString();
};
/** Query parameters are caller input: an unparseable time is a bad request, not a bad record. */
const queryIso = (name: string, value: string): string => new Date(parseQueryTime(name, value)).toISOString();
const parseJson = (value: unknown): any => (typeof value === 'string' ? JSON.parse(value) : value);
const toJson = (value: unknown): string | undefined => (value === undefined ? undefined : JSON.stringify(value));
/** Plain JSON copy: drops undefined (JSON semantics), keeps null. */
const plain = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** Document ids may not contain `/`, be `.`/`..` or look like `__x__`; escape those reversibly. */
export function docId(raw: string): string {
  if (typeof raw !== 'string' || raw === '') throw new BitBratError('STORE_CONSTRAINT', 'document id must be a non-empty string');
  let id = raw.replace(/%/g, '%25').replace(/\//g, '%2F');
  if (id === '.' || id === '..') id = id.replace(/\./g, '%2E');
  if (/^__.*__$/.test(id)) id = `%5F${id.slice(1)}`;
  return id;
}

/** Firestore's documented storage size of a value. */
function valueSize(value: unknown): number {
  if (value === null || value === undefined || typeof value === 'boolean') return 1;
  if (typeof value === 'number') return 8;
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8') + 1;
  if (value instanceof Timestamp || value instanceof Date) return 8;
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + valueSize(item), 0);
  if (isObject(value))
    return Object.entries(value).reduce((sum, [key, item]) => sum + Buffer.byteLength(key, 'utf8') + 1 + valueSize(item), 0);
  return 8;
}

/** Size of a document as Firestore counts it (name + fields + 32 bytes), checked before writing. */
function assertDocumentSize(path: string, data: DocumentData): void {
  const nameSize = path.split('/').reduce((sum, segment) => sum + Buffer.byteLength(segment, 'utf8') + 1, 16);
  const size = nameSize + valueSize(data) + 32;
  if (size > MAX_DOCUMENT_BYTES) {
    throw new BitBratError('DOCUMENT_TOO_LARGE', `document ${path} is ${size} bytes; firestore accepts at most ${MAX_DOCUMENT_BYTES}`, {
      details: { path, size },
    });
  }
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  });
  await Promise.all(workers);
  return results;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new BitBratError('STORE_UNAVAILABLE', message, { retryable: true })), ms)),
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------------------------------ mapping

function eventFields(record: EventRecord): DocumentData {
  return compact({
    id: record.id,
    correlationId: record.correlationId,
    type: record.type,
    platform: record.platform,
    channel: record.channel,
    userId: record.userId,
    userName: record.userName,
    text: record.text,
    receivedAt: record.receivedAt === undefined ? undefined : normIso(record.receivedAt),
  });
}

function finalFields(record: EventRecord): DocumentData {
  return compact({
    outcome: record.outcome,
    finalizedAt: record.finalizedAt ? normIso(record.finalizedAt) : new Date().toISOString(),
    final: toJson(record.final),
    replyDelivered: record.replyDelivered,
    replyText: record.replyText,
    errors: toJson(record.errors),
    latencyMs: record.latencyMs,
  });
}

function requireEventFields(record: EventRecord): void {
  for (const key of ['id', 'correlationId', 'type', 'receivedAt'] as const) {
    if (typeof record[key] !== 'string' || record[key] === '')
      throw new BitBratError('STORE_CONSTRAINT', `event record ${record.id ?? '(no id)'} lacks ${key}`);
  }
  if (record.outcome !== undefined && !['completed', 'handled', 'failed', 'unrouted'].includes(record.outcome)) {
    throw new BitBratError('STORE_CONSTRAINT', `event record ${record.id} has an invalid outcome "${record.outcome}"`);
  }
}

/** Identity fields a later writer may fill in but never overwrite. */
function missingFields(existing: DocumentData, fields: DocumentData): DocumentData {
  const out: DocumentData = {};
  for (const key of ['platform', 'channel', 'userId', 'userName', 'text']) {
    if (existing[key] === undefined && fields[key] !== undefined) out[key] = fields[key];
  }
  return out;
}

function toEvent(data: DocumentData): EventRecord {
  return compact({
    id: data.id,
    correlationId: data.correlationId,
    type: data.type,
    platform: data.platform,
    channel: data.channel,
    userId: data.userId,
    userName: data.userName,
    text: data.text,
    receivedAt: data.receivedAt,
    ingress: data.ingress === undefined ? undefined : parseJson(data.ingress),
    outcome: data.outcome,
    finalizedAt: data.finalizedAt ?? undefined,
    final: data.final === undefined ? undefined : parseJson(data.final),
    replyDelivered: data.replyDelivered,
    replyText: data.replyText,
    errors: data.errors === undefined ? undefined : parseJson(data.errors),
    latencyMs: data.latencyMs,
  });
}

/** One page of `q`, newest first (receivedAt, then document id, as the cursor encodes them), after `cursor`. */
async function newestFirstPage<T>(
  q: Query,
  cursor: string | undefined,
  limit: number,
  toItem: (data: DocumentData) => T,
): Promise<Page<T>> {
  let ordered = q.orderBy('receivedAt', 'desc').orderBy(FieldPath.documentId(), 'desc');
  if (cursor !== undefined) ordered = ordered.startAfter(...decodeCursor(cursor));
  const snapshot = await ordered.limit(limit + 1).get();
  const docs = snapshot.docs.slice(0, limit);
  const last = docs[docs.length - 1];
  return compact({
    items: docs.map((doc) => toItem(doc.data())),
    nextCursor: snapshot.docs.length > limit && last ? encodeCursor(last.get('receivedAt') as string, last.id) : undefined,
  });
}

function toDeadLetter(data: DocumentData): DeadLetterRecord {
  return compact({
    id: data.id,
    receivedAt: data.receivedAt,
    deadLetter: parseJson(data.deadLetter),
    replayedAt: data.replayedAt ?? undefined,
    replayCount: Number(data.replayCount ?? 0),
  });
}

function toUser(data: DocumentData): UserRecord {
  return compact({
    id: data.id,
    platform: data.platform,
    userId: data.userId,
    login: data.login,
    displayName: data.displayName,
    roles: data.roles ?? [],
    firstSeen: data.firstSeen,
    lastSeen: data.lastSeen,
    messageCount: Number(data.messageCount ?? 0),
  });
}

/** A user document after one more message: first/last seen only widen, the count goes up by one. */
function touchedUser(existing: DocumentData | undefined, id: string, input: TouchUserInput, at: string): DocumentData {
  if (!existing) {
    return compact({
      id,
      platform: input.platform,
      userId: input.userId,
      login: input.login,
      loginLower: input.login.toLowerCase(),
      displayName: input.displayName,
      roles: [],
      firstSeen: at,
      lastSeen: at,
      messageCount: 1,
    });
  }
  return {
    ...existing,
    roles: [...(existing.roles ?? [])],
    login: input.login,
    loginLower: input.login.toLowerCase(),
    ...(input.displayName !== undefined ? { displayName: input.displayName } : {}),
    firstSeen: existing.firstSeen < at ? existing.firstSeen : at,
    lastSeen: existing.lastSeen > at ? existing.lastSeen : at,
    messageCount: Number(existing.messageCount ?? 0) + 1,
  };
}

function toRule(data: DocumentData): RuleRecord {
  return compact({
    id: data.id,
    description: data.description,
    priority: Number(data.priority),
    enabled: data.enabled,
    logic: parseJson(data.logic) ?? null,
    action: parseJson(data.action) ?? {},
    updatedAt: data.updatedAt,
  });
}

function toCommand(data: DocumentData): CommandRecord {
  return compact({
    name: data.name,
    response: data.response,
    aliases: data.aliases ?? [],
    minRole: data.minRole,
    cooldownSec: Number(data.cooldownSec ?? 0),
    userCooldownSec: Number(data.userCooldownSec ?? 0),
    enabled: data.enabled,
    uses: Number(data.uses ?? 0),
    createdBy: data.createdBy,
    updatedAt: data.updatedAt,
  });
}

// -------------------------------------------------------------------------------------------- store

export function createFirestoreStore(options: CreateStoreOptions): Store {
  if (!options.firestore?.projectId) throw new BitBratError('CONFIG_INVALID', 'the firestore store driver needs a project id');
  return storableArguments(new FirestoreStore(options));
}

/**
 * The store with every string inside every argument made well-formed (NUL and lone surrogates become
 * U+FFFD): Firestore refuses a write holding invalid UTF-16, and no viewer input may make a record fail.
 * Arguments that need no repair pass through unchanged.
 */
function storableArguments(store: Store): Store {
  return new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) =>
        value.apply(
          target,
          args.map((arg) => wellFormedDeep(arg)),
        );
    },
  });
}

class FirestoreStore implements Store {
  readonly driver = 'firestore' as const;
  #options: CreateStoreOptions;
  #db?: Firestore;
  #cipher?: TokenCipher;
  #closed = false;
  #queues = new Map<string, Promise<void>>();

  constructor(options: CreateStoreOptions) {
    this.#options = options;
  }

  #col(name: CollectionName): CollectionReference {
    return this.#firestore().collection(`${this.#options.firestore?.collectionPrefix ?? ''}${name}`);
  }

  #firestore(): Firestore {
    if (!this.#db)
      throw new BitBratError('STORE_UNAVAILABLE', this.#closed ? 'store is closed' : 'store is not initialized (call init() first)');
    return this.#db;
  }

  async #run<T>(fn: (db: Firestore) => Promise<T>): Promise<T> {
    const db = this.#firestore();
    try {
      return await fn(db);
    } catch (error) {
      throw mapFirestoreError(error);
    }
  }

  /**
   * A transaction on the document at `lockKey` (or the documents at several). Transactions from this
   * process on the same document are queued here first: contending through Firestore only buys aborts and
   * retry back-off. Other processes are still kept consistent by the transaction itself.
   */
  async #transaction<T>(db: Firestore, lockKey: string | string[], fn: (tx: Transaction) => Promise<T>): Promise<T> {
    const keys = typeof lockKey === 'string' ? [lockKey] : [...new Set(lockKey)];
    // Keys are queued in one synchronous step, so a transaction waits only for ones queued before it.
    const previous =
      keys.length === 1 ? (this.#queues.get(keys[0]!) ?? Promise.resolve()) : Promise.all(keys.map((key) => this.#queues.get(key)));
    const run = previous.then(() => db.runTransaction(fn, { maxAttempts: TRANSACTION_ATTEMPTS }));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    for (const key of keys) this.#queues.set(key, settled);
    try {
      return await run;
    } finally {
      for (const key of keys) if (this.#queues.get(key) === settled) this.#queues.delete(key);
    }
  }

  async init(): Promise<void> {
    if (this.#db) return;
    this.#cipher = await loadTokenCipher(this.#options);
    const settings = this.#options.firestore!;
    const db = new Firestore({
      projectId: settings.projectId,
      ignoreUndefinedProperties: true,
      // Emulator: plaintext and the owner credential, like FIRESTORE_EMULATOR_HOST does. The explicit
      // universe domain stops the auth library from probing the GCE metadata server for one.
      ...(settings.host
        ? { host: settings.host, ssl: false, customHeaders: { Authorization: 'Bearer owner' }, universeDomain: 'googleapis.com' }
        : {}),
    });
    this.#db = db;
    this.#closed = false;
    try {
      await withTimeout(this.#migrate(db), INIT_TIMEOUT_MS, 'firestore did not answer during init');
    } catch (error) {
      this.#db = undefined;
      await db.terminate().catch(() => undefined);
      throw mapFirestoreError(error);
    }
  }

  /** Firestore is schemaless: a migration is a bump of the recorded layout version (plus any data rewrite it needs). */
  async #migrate(db: Firestore): Promise<void> {
    const ref = this.#col('meta').doc('schema');
    await this.#transaction(db, ref.path, async (tx) => {
      const snapshot = await tx.get(ref);
      const current = Number(snapshot.data()?.version ?? 0);
      if (current > FIRESTORE_SCHEMA_VERSION) {
        throw new BitBratError(
          'CONFIG_INVALID',
          `firestore data has layout version ${current}; this build understands up to ${FIRESTORE_SCHEMA_VERSION}`,
        );
      }
      if (current < FIRESTORE_SCHEMA_VERSION) tx.set(ref, { version: FIRESTORE_SCHEMA_VERSION, updatedAt: new Date().toISOString() });
    });
  }

  async ping(): Promise<boolean> {
    const db = this.#db;
    if (!db) return false;
    try {
      await withTimeout(this.#col('meta').doc('schema').get(), PING_TIMEOUT_MS, 'ping timeout');
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    this.#closed = true;
    if (db) await db.terminate();
  }

  // -------------------------------------------------------------------------------------- events

  /**
   * Every record of a batch is validated (fields, size) before anything is written, so a bad record
   * fails the batch without half of it written; the caller can then write the rest one by one.
   */
  async recordIngress(records: EventRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.#run(async (db) => {
      const prepared = dedupe(records).map((record) => {
        requireEventFields(record);
        const ref = this.#col('events').doc(docId(record.id));
        const ingress = { ingested: true, ...compact({ ingress: toJson(record.ingress) }) };
        // finalizedAt null (not absent) so listUnfinalized can query for it.
        const fresh = { ...eventFields(record), ...ingress, finalizedAt: null };
        assertDocumentSize(ref.path, fresh);
        return { ref, ingress, fresh };
      });
      await mapLimit(prepared, WRITE_CONCURRENCY, async ({ ref, ingress, fresh }) => {
        try {
          await ref.create(fresh);
          return;
        } catch (error) {
          if (!isAlreadyExists(error)) throw error;
        }
        // The finalizer got there first: fill in what ingress knows, once.
        await this.#transaction(db, ref.path, async (tx) => {
          const existing = (await tx.get(ref)).data();
          if (!existing || existing.ingested) return;
          const update = { ...ingress, ...missingFields(existing, fresh) };
          assertDocumentSize(ref.path, { ...existing, ...update });
          tx.update(ref, update);
        });
      });
    });
  }

  async recordFinal(records: EventRecord[]): Promise<string[]> {
    if (records.length === 0) return [];
    return await this.#run(async (db) => {
      const unique = dedupe(records);
      const prepared = unique.map((record) => {
        requireEventFields(record);
        const ref = this.#col('events').doc(docId(record.id));
        const final = finalFields(record);
        const fresh = { ...eventFields(record), ingested: false, ...compact({ ingress: toJson(record.ingress) }), ...final };
        assertDocumentSize(ref.path, fresh);
        return { ref, final, fresh };
      });
      const finalized = await mapLimit(prepared, WRITE_CONCURRENCY, async ({ ref, final, fresh }) => {
        try {
          await ref.create(fresh);
          return true;
        } catch (error) {
          if (!isAlreadyExists(error)) throw error;
        }
        return await this.#transaction(db, ref.path, async (tx) => {
          const existing = (await tx.get(ref)).data();
          if (!existing) {
            tx.create(ref, fresh);
            return true;
          }
          if (existing.finalizedAt !== undefined && existing.finalizedAt !== null) return false;
          const update = {
            ...final,
            ...missingFields(existing, fresh),
            ...(existing.ingress === undefined && fresh.ingress !== undefined ? { ingress: fresh.ingress } : {}),
          };
          assertDocumentSize(ref.path, { ...existing, ...update });
          tx.update(ref, update);
          return true;
        });
      });
      return unique.filter((_, index) => finalized[index]).map((record) => record.id);
    });
  }

  async getEvent(id: string): Promise<EventRecord | undefined> {
    return await this.#run(async () => {
      const snapshot = await this.#col('events').doc(docId(id)).get();
      return snapshot.exists ? toEvent(snapshot.data()!) : undefined;
    });
  }

  /** Newest first. `since` and `until` are both inclusive. */
  async listEvents(query: EventQuery): Promise<Page<EventRecord>> {
    const limit = pageSize(query.limit);
    return await this.#run(async () => {
      let q: Query = this.#col('events');
      if (query.type !== undefined) q = q.where('type', '==', query.type);
      if (query.outcome !== undefined) q = q.where('outcome', '==', query.outcome);
      if (query.userId !== undefined) q = q.where('userId', '==', query.userId);
      if (query.userName !== undefined) q = q.where('userName', '==', query.userName);
      if (query.channel !== undefined) q = q.where('channel', '==', query.channel);
      if (query.since !== undefined) q = q.where('receivedAt', '>=', queryIso('since', query.since));
      if (query.until !== undefined) q = q.where('receivedAt', '<=', queryIso('until', query.until));
      return await newestFirstPage(q, query.cursor, limit, toEvent);
    });
  }

  // The filtered queries below need composite indexes in production Firestore: FIRESTORE_INDEXES lists them.
  async listUnfinalized(query: { before: string; limit?: number }): Promise<EventRecord[]> {
    return await this.#run(async () => {
      const snapshot = await this.#col('events')
        .where('finalizedAt', '==', null)
        .where('receivedAt', '<=', queryIso('before', query.before))
        .orderBy('receivedAt')
        .limit(pageSize(query.limit))
        .get();
      return snapshot.docs.map((doc) => toEvent(doc.data()));
    });
  }

  async pruneEvents(before: string): Promise<number> {
    return await this.#run(async (db) => this.#deleteWhere(db, 'events', queryIso('before', before)));
  }

  async #deleteWhere(db: Firestore, collection: CollectionName, before: string): Promise<number> {
    let total = 0;
    for (;;) {
      const snapshot = await this.#col(collection).where('receivedAt', '<', before).select().limit(PRUNE_BATCH).get();
      if (snapshot.empty) return total;
      const batch = db.batch();
      for (const doc of snapshot.docs) batch.delete(doc.ref);
      await batch.commit();
      total += snapshot.size;
    }
  }

  // --------------------------------------------------------------------------------- dead letters

  async insertDeadLetter(record: Omit<DeadLetterRecord, 'replayCount'>): Promise<boolean> {
    return await this.#run(async () => {
      const ref = this.#col('deadletters').doc(docId(record.id));
      const data = {
        id: record.id,
        receivedAt: normIso(record.receivedAt),
        deadLetter: JSON.stringify(record.deadLetter),
        replayedAt: record.replayedAt ? normIso(record.replayedAt) : null,
        replayCount: 0,
      };
      assertDocumentSize(ref.path, data);
      try {
        await ref.create(data);
        return true;
      } catch (error) {
        if (isAlreadyExists(error)) return false;
        throw error;
      }
    });
  }

  async listDeadLetters(query: { limit?: number; cursor?: string; includeReplayed?: boolean }): Promise<Page<DeadLetterRecord>> {
    const limit = pageSize(query.limit);
    return await this.#run(async () => {
      let q: Query = this.#col('deadletters');
      if (!query.includeReplayed) q = q.where('replayedAt', '==', null);
      return await newestFirstPage(q, query.cursor, limit, toDeadLetter);
    });
  }

  async getDeadLetter(id: string): Promise<DeadLetterRecord | undefined> {
    return await this.#run(async () => {
      const snapshot = await this.#col('deadletters').doc(docId(id)).get();
      return snapshot.exists ? toDeadLetter(snapshot.data()!) : undefined;
    });
  }

  async markDeadLetterReplayed(id: string, at: string): Promise<DeadLetterRecord | undefined> {
    return await this.#run(async (db) => {
      const ref = this.#col('deadletters').doc(docId(id));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data();
        if (!existing) return undefined;
        const updated = { ...existing, replayedAt: normIso(at), replayCount: Number(existing.replayCount ?? 0) + 1 };
        tx.update(ref, { replayedAt: updated.replayedAt, replayCount: updated.replayCount });
        return toDeadLetter(updated);
      });
    });
  }

  async pruneDeadLetters(before: string): Promise<number> {
    return await this.#run(async (db) => this.#deleteWhere(db, 'deadletters', queryIso('before', before)));
  }

  // -------------------------------------------------------------------------------------- sources

  async mergeSource(patch: SourceState): Promise<SourceState> {
    return await this.#run(async (db) => {
      if (!patch.platform) throw new BitBratError('STORE_CONSTRAINT', `source ${patch.id} lacks platform`);
      const ref = this.#col('sources').doc(docId(patch.id));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data() as SourceState | undefined;
        const merged = mergeSourceState(existing, plain(patch));
        assertDocumentSize(ref.path, merged);
        tx.set(ref, merged);
        return merged;
      });
    });
  }

  async getSource(id: string): Promise<SourceState | undefined> {
    return await this.#run(async () => {
      const snapshot = await this.#col('sources').doc(docId(id)).get();
      return snapshot.exists ? (snapshot.data() as SourceState) : undefined;
    });
  }

  async listSources(): Promise<SourceState[]> {
    return await this.#run(async () => {
      const snapshot = await this.#col('sources').get();
      return snapshot.docs.map((doc) => doc.data() as SourceState).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    });
  }

  // ---------------------------------------------------------------------------------------- users

  async touchUser(input: TouchUserInput): Promise<{ user: UserRecord; created: boolean }> {
    return (await this.touchUsers([input]))[0]!;
  }

  /**
   * Every input is checked before anything is written; then one transaction per USER_TOUCH_BATCH users
   * reads their documents, applies each of their inputs in order and writes each document once.
   */
  async touchUsers(inputs: TouchUserInput[]): Promise<Array<{ user: UserRecord; created: boolean }>> {
    if (inputs.length === 0) return [];
    return await this.#run(async (db) => {
      const groups = new Map<
        string,
        { id: string; ref: DocumentReference; items: Array<{ index: number; input: TouchUserInput; at: string }> }
      >();
      inputs.forEach((input, index) => {
        if (typeof input.login !== 'string') throw new BitBratError('STORE_CONSTRAINT', 'a user needs a login');
        const id = `${input.platform}:${input.userId}`;
        const at = normIso(input.at);
        let group = groups.get(id);
        if (!group) groups.set(id, (group = { id, ref: this.#col('users').doc(docId(id)), items: [] }));
        group.items.push({ index, input, at });
      });
      const results = new Array<{ user: UserRecord; created: boolean }>(inputs.length);
      const all = [...groups.values()];
      for (let start = 0; start < all.length; start += USER_TOUCH_BATCH) {
        const batch = all.slice(start, start + USER_TOUCH_BATCH);
        // The function may run more than once (contention): answers come from the attempt that committed.
        const answers = await this.#transaction(
          db,
          batch.map((group) => group.ref.path),
          async (tx) => {
            const snapshots = await tx.getAll(...batch.map((group) => group.ref));
            const out: Array<[number, { user: UserRecord; created: boolean }]> = [];
            batch.forEach((group, position) => {
              let data = snapshots[position]!.data();
              const existed = data !== undefined;
              group.items.forEach(({ index, input, at }, step) => {
                data = touchedUser(data, group.id, input, at);
                out.push([index, { user: toUser(data), created: !existed && step === 0 }]);
              });
              tx.set(group.ref, data!);
            });
            return out;
          },
        );
        for (const [index, answer] of answers) results[index] = answer;
      }
      return results;
    });
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    return await this.#run(async () => {
      const snapshot = await this.#col('users').doc(docId(id)).get();
      return snapshot.exists ? toUser(snapshot.data()!) : undefined;
    });
  }

  async findUserByLogin(platform: string, login: string): Promise<UserRecord | undefined> {
    return await this.#run(async () => {
      // Equality-only query (no composite index); a login rarely maps to more than one account.
      const snapshot = await this.#col('users').where('platform', '==', platform).where('loginLower', '==', login.toLowerCase()).get();
      const users = snapshot.docs.map((doc) => toUser(doc.data())).sort((a, b) => (a.lastSeen < b.lastSeen ? 1 : -1));
      return users[0];
    });
  }

  async setUserRoles(id: string, roles: string[]): Promise<UserRecord | undefined> {
    return await this.#run(async (db) => {
      const ref = this.#col('users').doc(docId(id));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data();
        if (!existing) return undefined;
        const unique = [...new Set(roles)];
        tx.update(ref, { roles: unique });
        return toUser({ ...existing, roles: unique });
      });
    });
  }

  // ---------------------------------------------------------------------------------------- rules

  async listRules(): Promise<RuleRecord[]> {
    return await this.#run(async () => {
      const snapshot = await this.#col('rules').get();
      return snapshot.docs
        .map((doc) => toRule(doc.data()))
        .sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    });
  }

  async getRule(id: string): Promise<RuleRecord | undefined> {
    return await this.#run(async () => {
      const snapshot = await this.#col('rules').doc(docId(id)).get();
      return snapshot.exists ? toRule(snapshot.data()!) : undefined;
    });
  }

  /** Every rule write bumps `{prefix}meta/rules` in the same transaction; rulesVersion reads that one document. */
  async upsertRule(rule: Omit<RuleRecord, 'updatedAt'>): Promise<RuleRecord> {
    return await this.#run(async (db) => {
      const ref = this.#col('rules').doc(docId(rule.id));
      const version = this.#col('meta').doc('rules');
      const data = compact({
        id: rule.id,
        description: rule.description,
        priority: rule.priority,
        enabled: rule.enabled,
        logic: JSON.stringify(rule.logic ?? null),
        action: JSON.stringify(rule.action ?? {}),
        updatedAt: new Date().toISOString(),
      });
      assertDocumentSize(ref.path, data);
      return await this.#transaction(db, version.path, async (tx) => {
        const current = Number((await tx.get(version)).data()?.version ?? 0);
        tx.set(ref, data);
        tx.set(version, { version: current + 1 });
        return toRule(data);
      });
    });
  }

  async deleteRule(id: string): Promise<boolean> {
    return await this.#run(async (db) => {
      const ref = this.#col('rules').doc(docId(id));
      const version = this.#col('meta').doc('rules');
      return await this.#transaction(db, version.path, async (tx) => {
        const [existing, current] = await Promise.all([tx.get(ref), tx.get(version)]);
        if (!existing.exists) return false;
        tx.delete(ref);
        tx.set(version, { version: Number(current.data()?.version ?? 0) + 1 });
        return true;
      });
    });
  }

  async rulesVersion(): Promise<string> {
    return await this.#run(async () => String((await this.#col('meta').doc('rules').get()).data()?.version ?? 0));
  }

  // ------------------------------------------------------------------------------------- commands

  async listCommands(): Promise<CommandRecord[]> {
    return await this.#run(async () => {
      const snapshot = await this.#col('commands').get();
      return snapshot.docs.map((doc) => toCommand(doc.data())).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    });
  }

  async getCommand(name: string): Promise<CommandRecord | undefined> {
    return await this.#run(async () => {
      const snapshot = await this.#col('commands').doc(docId(name.toLowerCase())).get();
      return snapshot.exists ? toCommand(snapshot.data()!) : undefined;
    });
  }

  async upsertCommand(command: Omit<CommandRecord, 'updatedAt' | 'uses'> & { uses?: number }): Promise<CommandRecord> {
    return await this.#run(async (db) => {
      const name = command.name.toLowerCase();
      const ref = this.#col('commands').doc(docId(name));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data();
        const data = compact({
          name,
          response: command.response,
          aliases: command.aliases ?? [],
          minRole: command.minRole,
          cooldownSec: command.cooldownSec ?? 0,
          userCooldownSec: command.userCooldownSec ?? 0,
          enabled: command.enabled,
          uses: command.uses ?? Number(existing?.uses ?? 0),
          createdBy: existing?.createdBy ?? command.createdBy,
          updatedAt: new Date().toISOString(),
        });
        assertDocumentSize(ref.path, data);
        tx.set(ref, data);
        return toCommand(data);
      });
    });
  }

  async deleteCommand(name: string): Promise<boolean> {
    return await this.#run(async (db) => {
      const ref = this.#col('commands').doc(docId(name.toLowerCase()));
      return await this.#transaction(db, ref.path, async (tx) => {
        if (!(await tx.get(ref)).exists) return false;
        tx.delete(ref);
        return true;
      });
    });
  }

  async incrementCommandUse(name: string): Promise<number> {
    return await this.#run(async (db) => {
      const ref = this.#col('commands').doc(docId(name.toLowerCase()));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data();
        if (!existing) throw new BitBratError('NOT_FOUND', `command ${name} does not exist`);
        const uses = Number(existing.uses ?? 0) + 1;
        tx.update(ref, { uses });
        return uses;
      });
    });
  }

  // --------------------------------------------------------------------------------------- tokens

  #tokenData(token: Omit<OAuthToken, 'version'>, version: number): DocumentData {
    const cipher = this.#cipher!;
    const aad = `oauth_tokens:${token.id}`;
    return compact({
      id: token.id,
      accessToken: cipher.encrypt(token.accessToken, aad),
      refreshToken: token.refreshToken === undefined ? undefined : cipher.encrypt(token.refreshToken, aad),
      scopes: token.scopes ?? [],
      expiresAt: token.expiresAt ? normIso(token.expiresAt) : null,
      obtainedAt: normIso(token.obtainedAt),
      userId: token.userId,
      login: token.login,
      version,
      updatedAt: new Date().toISOString(),
    });
  }

  #toToken(data: DocumentData): OAuthToken {
    const cipher = this.#cipher!;
    const aad = `oauth_tokens:${data.id}`;
    return compact({
      id: data.id,
      accessToken: cipher.decrypt(data.accessToken, aad),
      refreshToken: data.refreshToken === undefined ? undefined : cipher.decrypt(data.refreshToken, aad),
      scopes: data.scopes ?? [],
      expiresAt: data.expiresAt ?? null,
      obtainedAt: data.obtainedAt,
      userId: data.userId,
      login: data.login,
      version: Number(data.version),
    });
  }

  async getToken(id: string): Promise<OAuthToken | undefined> {
    return await this.#run(async () => {
      const snapshot = await this.#col('oauth_tokens').doc(docId(id)).get();
      return snapshot.exists ? this.#toToken(snapshot.data()!) : undefined;
    });
  }

  async putToken(token: Omit<OAuthToken, 'version'>): Promise<OAuthToken> {
    return await this.#run(async (db) => {
      const ref = this.#col('oauth_tokens').doc(docId(token.id));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data();
        const data = this.#tokenData(token, Number(existing?.version ?? 0) + 1);
        tx.set(ref, data);
        return this.#toToken(data);
      });
    });
  }

  /** `expectedVersion` 0 means "only if no token exists yet". */
  async updateTokenIf(expectedVersion: number, token: Omit<OAuthToken, 'version'>): Promise<OAuthToken | undefined> {
    return await this.#run(async (db) => {
      const ref = this.#col('oauth_tokens').doc(docId(token.id));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data();
        const current = existing ? Number(existing.version) : 0;
        if (current !== expectedVersion) return undefined;
        const data = this.#tokenData(token, current + 1);
        tx.set(ref, data);
        return this.#toToken(data);
      });
    });
  }

  async deleteToken(id: string): Promise<boolean> {
    return await this.#run(async (db) => {
      const ref = this.#col('oauth_tokens').doc(docId(id));
      return await this.#transaction(db, ref.path, async (tx) => {
        if (!(await tx.get(ref)).exists) return false;
        tx.delete(ref);
        return true;
      });
    });
  }

  // ---------------------------------------------------------------------------------- coordination

  async claimKey(namespace: string, key: string, ttlMs: number): Promise<boolean> {
    return await this.#run(async (db) => {
      const ref = this.#col('claims').doc(docId(`${namespace.length}:${namespace}:${key}`));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data();
        const now = Date.now();
        if (existing && Number(existing.expiresAtMs) > now) return false;
        tx.set(ref, { namespace, key, expiresAtMs: now + ttlMs, expireAt: Timestamp.fromMillis(now + ttlMs) });
        return true;
      });
    });
  }

  async appendConversation(channelKey: string, turns: ConversationTurn[], max: number): Promise<ConversationTurn[]> {
    const keep = Math.max(0, Math.floor(max));
    return await this.#run(async (db) => {
      const ref = this.#col('conversations').doc(docId(channelKey));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = ((await tx.get(ref)).data()?.turns as ConversationTurn[] | undefined) ?? [];
        const next = keep === 0 ? [] : [...existing, ...plain(turns)].slice(-keep);
        const data = { channelKey, turns: next, updatedAt: new Date().toISOString() };
        assertDocumentSize(ref.path, data);
        tx.set(ref, data);
        return next;
      });
    });
  }

  async getConversation(channelKey: string): Promise<ConversationTurn[]> {
    return await this.#run(
      async () => ((await this.#col('conversations').doc(docId(channelKey)).get()).data()?.turns as ConversationTurn[] | undefined) ?? [],
    );
  }

  // ------------------------------------------------------------------------------------ documents

  /** One subcollection per document collection, so a listing is a single-field range needing no composite index. */
  #docs(collection: string): CollectionReference {
    return this.#col('documents').doc(docId(collection)).collection('items');
  }

  async putDoc<T extends Record<string, unknown>>(collection: string, id: string, data: T): Promise<DocRecord<T>> {
    checkDocKey(collection, id);
    return await this.#run(async () => {
      const ref = this.#docs(collection).doc(docId(id));
      const record = { collection, id, data: plain(data), updatedAt: new Date().toISOString() };
      assertDocumentSize(ref.path, record);
      await ref.set(record);
      return record as DocRecord<T>;
    });
  }

  async createDoc<T extends Record<string, unknown>>(collection: string, id: string, data: T): Promise<DocRecord<T> | undefined> {
    checkDocKey(collection, id);
    return await this.#run(async () => {
      const ref = this.#docs(collection).doc(docId(id));
      const record = { collection, id, data: plain(data), updatedAt: new Date().toISOString() };
      assertDocumentSize(ref.path, record);
      try {
        await ref.create(record);
        return record as DocRecord<T>;
      } catch (error) {
        if (isAlreadyExists(error)) return undefined;
        throw error;
      }
    });
  }

  async getDoc<T extends Record<string, unknown>>(collection: string, id: string): Promise<DocRecord<T> | undefined> {
    return await this.#run(async () => {
      const snapshot = await this.#docs(collection).doc(docId(id)).get();
      return snapshot.exists ? (snapshot.data() as DocRecord<T>) : undefined;
    });
  }

  async listDocs<T extends Record<string, unknown>>(collection: string, query: DocQuery = {}): Promise<DocRecord<T>[]> {
    return await this.#run(async () => {
      let q: Query = this.#docs(collection);
      if (query.prefix) q = q.where('id', '>=', query.prefix).where('id', '<', `${query.prefix}\uf8ff`);
      const snapshot = await q
        .orderBy('id', query.descending ? 'desc' : 'asc')
        .limit(docLimit(query.limit))
        .get();
      return snapshot.docs.map((doc) => doc.data() as DocRecord<T>);
    });
  }

  async deleteDoc(collection: string, id: string): Promise<boolean> {
    return await this.#run(async (db) => {
      const ref = this.#docs(collection).doc(docId(id));
      return await this.#transaction(db, ref.path, async (tx) => {
        if (!(await tx.get(ref)).exists) return false;
        tx.delete(ref);
        return true;
      });
    });
  }

  async incrementCounter(key: string, by: number, ttlMs?: number): Promise<number> {
    return await this.#run(async (db) => {
      const ref = this.#col('counters').doc(docId(key));
      return await this.#transaction(db, ref.path, async (tx) => {
        const existing = (await tx.get(ref)).data();
        const now = Date.now();
        const expired = existing?.expiresAtMs !== undefined && existing.expiresAtMs !== null && Number(existing.expiresAtMs) <= now;
        const fresh = !existing || expired;
        const value = fresh ? by : Number(existing.value) + by;
        const expiresAtMs = fresh
          ? ttlMs === undefined
            ? null
            : now + ttlMs
          : (existing.expiresAtMs ?? (ttlMs === undefined ? null : now + ttlMs));
        tx.set(ref, { key, value, expiresAtMs, ...(expiresAtMs === null ? {} : { expireAt: Timestamp.fromMillis(expiresAtMs) }) });
        return value;
      });
    });
  }

  async listCounters(prefix: string, limit: number): Promise<Array<{ key: string; value: number }>> {
    return await this.#run(async () => {
      // A range on `key` cannot also be ordered by value without a composite index: sort the prefix's
      // counters here (a day's per-user counters, a few thousand at most).
      const snapshot = await this.#col('counters').where('key', '>=', prefix).where('key', '<', `${prefix}\uf8ff`).get();
      const now = Date.now();
      return snapshot.docs
        .map((doc) => doc.data())
        .filter((data) => data.expiresAtMs === undefined || data.expiresAtMs === null || Number(data.expiresAtMs) > now)
        .map((data) => ({ key: String(data.key), value: Number(data.value) }))
        .sort((a, b) => b.value - a.value || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
        .slice(0, Math.max(0, Math.floor(limit)));
    });
  }
}
