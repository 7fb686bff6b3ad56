/** Helpers both store implementations (SQL and Firestore) use the same way. */
import { chmod, mkdir } from 'node:fs/promises';
import { BitBratError } from '../core/errors.js';

/**
 * Creates a data directory readable by its owner only (0700), and tightens an existing one: it holds the
 * database, the token encryption key and the gateway token, none of which other local users may read.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 1000;

/** Drops undefined values so records compare cleanly and JSON stays small. */
export function compact<T extends Record<string, unknown>>(record: T): T {
  for (const key of Object.keys(record)) if (record[key] === undefined) delete record[key];
  return record;
}

/** A listing's page size: the default when unset or not a number, else clamped to 1…1000. */
export function pageSize(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_PAGE_SIZE;
  return Math.max(1, Math.min(MAX_PAGE_SIZE, Math.floor(limit)));
}

/** Keeps the first record per id, in input order. */
export function dedupe<T extends { id: string }>(records: T[]): T[] {
  const seen = new Set<string>();
  return records.filter((record) => (seen.has(record.id) ? false : (seen.add(record.id), true)));
}

export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let index = 0; index < items.length; index += size) out.push(items.slice(index, index + size));
  return out;
}

/**
 * Query parameters are caller input: an unparseable time is a bad request, not a bad record.
 * Returns the time in ms since the epoch.
 */
export function parseQueryTime(name: string, value: string): number {
  const time = Date.parse(value);
  if (Number.isNaN(time)) throw new BitBratError('BAD_REQUEST', `${name} must be an ISO-8601 timestamp`);
  return time;
}

/** Keyset paging cursor: the last item's (sort key, id), as base64url JSON. */
export function encodeCursor(key: string, id: string): string {
  return Buffer.from(JSON.stringify([key, id])).toString('base64url');
}

/** The (sort key, id) of a cursor from encodeCursor; anything else is a BAD_REQUEST. */
export function decodeCursor(cursor: string): [string, string] {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string')
      return [value[0], value[1]];
  } catch {
    // fall through
  }
  throw invalidCursor();
}

export const invalidCursor = () => new BitBratError('BAD_REQUEST', 'invalid paging cursor');

/** A document's collection and id: non-empty text of at most 200 characters (ids travel in URLs and Firestore paths). */
export function checkDocKey(collection: string, id: string): void {
  if (typeof collection !== 'string' || collection === '' || collection.length > 64)
    throw new BitBratError('BAD_REQUEST', 'a document collection is 1-64 characters');
  if (typeof id !== 'string' || id === '' || id.length > 200) throw new BitBratError('BAD_REQUEST', 'a document id is 1-200 characters');
}

/** listDocs' limit: 100 when unset, else clamped to 1…1000. */
export function docLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return 100;
  return Math.max(1, Math.min(1000, Math.floor(limit)));
}
