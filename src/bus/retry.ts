import { BitBratError, isBitBratError } from '../core/index.js';
import type { MessageBus, PublishOptions } from './types.js';

export interface PublishRetryOptions {
  /** Retries after the first attempt (PUBLISH_MAX_RETRIES). Default 5. */
  maxRetries?: number;
  /** First backoff; doubles each retry up to maxDelayMs. Default 100 ms. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Called before each retry, so the failure is surfaced even when a later try succeeds. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

export const DEFAULT_PUBLISH_MAX_RETRIES = 5;

/**
 * Retries a publish whose first attempt (made by the caller, on the runtime's hot path) failed with
 * `firstError`, with bounded exponential backoff. Resolves on a later success; the final failure is
 * thrown as PUBLISH_FAILED with the last cause, never swallowed.
 */
export async function retryFailedPublish(
  bus: MessageBus,
  topic: string,
  data: Uint8Array,
  publishOptions: PublishOptions | undefined,
  retry: PublishRetryOptions,
  firstError: unknown,
): Promise<void> {
  const maxRetries = retry.maxRetries ?? DEFAULT_PUBLISH_MAX_RETRIES;
  const base = retry.baseDelayMs ?? 100;
  const max = retry.maxDelayMs ?? 5_000;
  let lastError: unknown = firstError;
  let attempts = 1;
  for (let attempt = 0; attempt <= maxRetries; attempt += 1) {
    if (attempt > 0) {
      attempts += 1;
      try {
        await bus.publish(topic, data, publishOptions);
        return;
      } catch (error) {
        lastError = error;
      }
    }
    if (isBitBratError(lastError) && !lastError.retryable) break;
    if (attempt === maxRetries) break;
    const delay = Math.min(max, base * 2 ** attempt);
    retry.onRetry?.(lastError, attempt + 1, delay);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  const reason = lastError instanceof Error ? lastError.message : String(lastError);
  throw new BitBratError('PUBLISH_FAILED', `publish to ${topic} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${reason}`, {
    retryable: true,
    cause: lastError,
  });
}
