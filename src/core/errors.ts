/** Stable error codes: each has one meaning everywhere (logs, envelopes, dead letters, HTTP). */
export const ErrorCode = {
  CONFIG_INVALID: 'CONFIG_INVALID',
  DECODE_FAILED: 'DECODE_FAILED',
  ENVELOPE_INVALID: 'ENVELOPE_INVALID',
  SLIP_MISMATCH: 'SLIP_MISMATCH',
  UNKNOWN_STEP: 'UNKNOWN_STEP',
  NO_FINALIZATION_DESTINATION: 'NO_FINALIZATION_DESTINATION',
  HANDLER_EXCEPTION: 'HANDLER_EXCEPTION',
  HANDLER_FAILED: 'HANDLER_FAILED',
  MAX_ATTEMPTS: 'MAX_ATTEMPTS',
  DEADLINE: 'DEADLINE',
  POISON: 'POISON',
  PUBLISH_FAILED: 'PUBLISH_FAILED',
  BUS_UNAVAILABLE: 'BUS_UNAVAILABLE',
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  STORE_CONSTRAINT: 'STORE_CONSTRAINT',
  DOCUMENT_TOO_LARGE: 'DOCUMENT_TOO_LARGE',
  NOT_FOUND: 'NOT_FOUND',
  UNAUTHORIZED: 'UNAUTHORIZED',
  FORBIDDEN: 'FORBIDDEN',
  BAD_REQUEST: 'BAD_REQUEST',
  UNKNOWN_SERVICE: 'UNKNOWN_SERVICE',
  SECRET_MISSING: 'SECRET_MISSING',
  PROVIDER_ERROR: 'PROVIDER_ERROR',
  RATE_LIMITED: 'RATE_LIMITED',
  NOT_CONFIGURED: 'NOT_CONFIGURED',
  STALLED: 'STALLED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** What each code means; kept in sync with ErrorCode by a test. */
export const ErrorDescriptions: Record<ErrorCode, string> = {
  CONFIG_INVALID: 'Configuration failed validation at start-up.',
  DECODE_FAILED: 'A bus message was not valid JSON.',
  ENVELOPE_INVALID: 'A bus message failed the envelope schema.',
  SLIP_MISMATCH: 'The envelope arrived on a step topic that is not its current PENDING step.',
  UNKNOWN_STEP:
    'The next step of the slip is served by no service in architecture.yaml; the envelope was dead-lettered instead of published.',
  NO_FINALIZATION_DESTINATION: 'The envelope had to be finalized but carries no finalizationDestination.',
  HANDLER_EXCEPTION: 'The service handler threw.',
  HANDLER_FAILED: 'The service handler returned a failure.',
  MAX_ATTEMPTS: 'A retryable failure ran out of attempts.',
  DEADLINE: 'The step or the reply passed its deadline.',
  POISON: 'The message was delivered too many times without being settled.',
  PUBLISH_FAILED: 'Publishing to the bus failed after every retry.',
  BUS_UNAVAILABLE: 'The message bus is not connected.',
  STORE_UNAVAILABLE: 'The store could not be reached.',
  STORE_CONSTRAINT: 'A record violated a store constraint.',
  DOCUMENT_TOO_LARGE: 'A record is larger than the store accepts.',
  NOT_FOUND: 'The requested item does not exist.',
  UNAUTHORIZED: 'Missing or invalid credentials.',
  FORBIDDEN: 'The caller lacks the required role.',
  BAD_REQUEST: 'The request failed validation.',
  UNKNOWN_SERVICE: 'No service of that name exists in architecture.yaml.',
  SECRET_MISSING: 'A required secret is not set.',
  PROVIDER_ERROR: 'An external provider returned an error.',
  RATE_LIMITED: 'A rate limit was reached.',
  NOT_CONFIGURED: 'The feature is not configured.',
  STALLED: 'The event was not finalized within STALLED_AFTER_MS; an operator dead-lettered or replayed it.',
};

/** The one error base class: every error BitBrat throws on purpose carries a stable code. */
export class BitBratError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BitBratError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }
}

export function isBitBratError(error: unknown): error is BitBratError {
  return error instanceof BitBratError;
}
