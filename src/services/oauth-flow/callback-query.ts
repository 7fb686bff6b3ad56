import { BitBratError } from '../../core/index.js';

/** The query parameters of Twitch's redirect to `/oauth/twitch/callback` that the flow reads. */
export interface CallbackQuery {
  code?: string;
  state?: string;
  error?: string;
  error_description?: string;
}

const FIELDS = ['code', 'state', 'error', 'error_description'] as const;

/**
 * Reads the callback's query: each parameter at most once. Twitch never repeats one, so a repeat is a
 * forged or mangled link and gets BAD_REQUEST rather than being half-read (`?state=a&state=b` is an array).
 */
export function parseCallbackQuery(query: unknown): CallbackQuery {
  const values = (query && typeof query === 'object' ? query : {}) as Record<string, unknown>;
  const out: CallbackQuery = {};
  for (const field of FIELDS) {
    const value = values[field];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new BitBratError('BAD_REQUEST', `the ${field} parameter must be given once`);
    out[field] = value;
  }
  return out;
}
