/**
 * Kick webhook checks: the RSA PKCS#1 v1.5 SHA-256 signature Kick puts in `Kick-Event-Signature` (base64,
 * over `${Kick-Event-Message-Id}.${Kick-Event-Message-Timestamp}.${rawBody}`) and the age of the delivery.
 * Pure: headers and the raw body in, a verdict out, so the route and the tests share it.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { KickHeader } from './wire.js';

/** Deliveries older than this (by their timestamp header) are refused as replays. */
export const DEFAULT_WEBHOOK_MAX_AGE_MS = 5 * 60_000;
/** A timestamp this far in the future is a clock problem or a forgery; refused too. */
const MAX_FUTURE_SKEW_MS = 60_000;

/** The headers of a verified delivery. */
export interface KickWebhookHeaders {
  messageId: string;
  subscriptionId?: string;
  timestamp: string;
  /** When Kick sent it, parsed from the timestamp header. */
  sentAt: Date;
  eventType: string;
  eventVersion: string;
}

export type WebhookVerdict =
  | { ok: true; headers: KickWebhookHeaders }
  | { ok: false; status: 400 | 401 | 403; code: 'BAD_REQUEST' | 'UNAUTHORIZED' | 'FORBIDDEN'; message: string };

/** Parses a PEM public key once (throws a clear error for a bad one). */
export function parseKickPublicKey(pem: string): KeyObject {
  try {
    return createPublicKey(pem.includes('\\n') ? pem.replace(/\\n/g, '\n') : pem);
  } catch (error) {
    throw new Error(`the Kick public key is not a valid PEM public key: ${(error as Error).message}`);
  }
}

/** Kick's timestamp header: RFC 3339 as documented; Unix seconds are accepted too. */
export function parseKickTimestamp(value: string): Date | undefined {
  if (/^\d{9,11}$/.test(value)) return new Date(Number(value) * 1000);
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? undefined : new Date(parsed);
}

const header = (headers: Record<string, string | string[] | undefined>, name: string): string | undefined => {
  const value = headers[name];
  return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
};

/**
 * Checks a delivery: required headers (400 when missing), the signature (401 when absent, 403 when it does
 * not verify), then the age (403 when stale). Nothing about the body is trusted before this passes.
 */
export function verifyKickWebhook(input: {
  key: KeyObject;
  headers: Record<string, string | string[] | undefined>;
  rawBody: Buffer;
  now?: number;
  maxAgeMs?: number;
}): WebhookVerdict {
  const messageId = header(input.headers, KickHeader.messageId);
  const timestamp = header(input.headers, KickHeader.timestamp);
  const eventType = header(input.headers, KickHeader.type);
  const signature = header(input.headers, KickHeader.signature);
  if (!signature) return { ok: false, status: 401, code: 'UNAUTHORIZED', message: 'the Kick-Event-Signature header is missing' };
  const missing = [
    !messageId && 'Kick-Event-Message-Id',
    !timestamp && 'Kick-Event-Message-Timestamp',
    !eventType && 'Kick-Event-Type',
  ].filter(Boolean);
  if (missing.length > 0)
    return {
      ok: false,
      status: 400,
      code: 'BAD_REQUEST',
      message: `missing header${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`,
    };
  // The id becomes a dedup key in the store; Kick's are ULIDs.
  if (messageId!.length > 128)
    return { ok: false, status: 400, code: 'BAD_REQUEST', message: 'the Kick-Event-Message-Id is longer than 128 characters' };
  const signed = Buffer.concat([Buffer.from(`${messageId}.${timestamp}.`, 'utf8'), input.rawBody]);
  let valid = false;
  try {
    valid = verify('sha256', signed, input.key, Buffer.from(signature, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) return { ok: false, status: 403, code: 'FORBIDDEN', message: 'the Kick-Event-Signature does not verify' };
  const sentAt = parseKickTimestamp(timestamp!);
  if (!sentAt) return { ok: false, status: 400, code: 'BAD_REQUEST', message: 'the Kick-Event-Message-Timestamp is not a date' };
  const now = input.now ?? Date.now();
  const age = now - sentAt.getTime();
  if (age > (input.maxAgeMs ?? DEFAULT_WEBHOOK_MAX_AGE_MS))
    return { ok: false, status: 403, code: 'FORBIDDEN', message: `the delivery is stale (sent ${Math.round(age / 1000)} s ago)` };
  if (age < -MAX_FUTURE_SKEW_MS) return { ok: false, status: 403, code: 'FORBIDDEN', message: 'the delivery is timestamped in the future' };
  return {
    ok: true,
    headers: {
      messageId: messageId!,
      timestamp: timestamp!,
      sentAt,
      eventType: eventType!,
      eventVersion: header(input.headers, KickHeader.version) ?? '1',
      ...(header(input.headers, KickHeader.subscriptionId) ? { subscriptionId: header(input.headers, KickHeader.subscriptionId) } : {}),
    },
  };
}
