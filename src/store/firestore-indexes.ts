/**
 * The composite indexes the Firestore store's queries need. The emulator serves any query without them;
 * production Firestore refuses a query whose index is missing (FAILED_PRECONDITION), so the generated
 * Terraform declares each of these (src/deploy/terraform.ts). Single-field indexes (automatic) cover the
 * rest: equality-only lookups, one range on one field, and newest-first pages without a filter.
 * Keep this list next to the queries in firestore.ts when adding one.
 */
export interface FirestoreIndex {
  collection: 'events' | 'deadletters';
  fields: ReadonlyArray<{ field: string; order: 'ASCENDING' | 'DESCENDING' }>;
}

const asc = (field: string) => ({ field, order: 'ASCENDING' as const });
const desc = (field: string) => ({ field, order: 'DESCENDING' as const });

/** listEvents filters by one or more of these fields and pages newest first; Firestore merges their indexes. */
const EVENT_FILTERS = ['type', 'outcome', 'userId', 'userName', 'channel'] as const;

export const FIRESTORE_INDEXES: readonly FirestoreIndex[] = [
  // listUnfinalized (stalled events): finalizedAt == null, receivedAt <= before, oldest first.
  { collection: 'events', fields: [asc('finalizedAt'), asc('receivedAt')] },
  // listDeadLetters without the replayed ones: replayedAt == null, newest first.
  { collection: 'deadletters', fields: [asc('replayedAt'), desc('receivedAt'), desc('__name__')] },
  // listEvents with a filter, newest first.
  ...EVENT_FILTERS.map((field) => ({ collection: 'events' as const, fields: [asc(field), desc('receivedAt'), desc('__name__')] })),
];
