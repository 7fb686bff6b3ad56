/**
 * The language model behind the bot, chosen by LLM_PROVIDER, and how provider failures map to step
 * outcomes. `openai` speaks Chat Completions (`openai.chat`), which OpenAI, Ollama, vLLM and most
 * OpenAI-compatible servers implement; point OPENAI_BASE_URL at them. `vertex` uses Gemini on Vertex AI
 * with Application Default Credentials (VERTEX_BASE_URL overrides the endpoint).
 */
import type { createVertex } from '@ai-sdk/google-vertex';
import type { LanguageModel } from 'ai';
import type { ErrorCode } from '../../core/index.js';

import { DEFAULT_MODELS, type LlmProvider } from './pricing.js';

export { DEFAULT_MODELS, type LlmProvider };

export interface ProviderSettings {
  provider?: LlmProvider;
  model?: string;
  openaiBaseUrl?: string;
  /** OPENAI_API_KEY (secret). Not needed for local OpenAI-compatible servers. */
  apiKey?: string;
  vertexProject?: string;
  vertexLocation?: string;
  vertexBaseUrl?: string;
}

/** Options code can pass that env cannot (tests, embedding). */
export interface ProviderOptions {
  /** google-auth-library options for Vertex; default: Application Default Credentials. */
  vertexAuth?: NonNullable<Parameters<typeof createVertex>[0]>['googleAuthOptions'];
  /** Custom fetch for the provider's HTTP calls. */
  fetch?: typeof globalThis.fetch;
}

/**
 * The AI SDK, loaded the first time a model is chosen or a call is made: the embedded platform without
 * an LLM configured never pays for it (tens of MB and a few hundred ms at start).
 */
let aiSdk: typeof import('ai') | undefined;

/** Loads (once) and returns the AI SDK. */
export async function loadAiSdk(): Promise<typeof import('ai')> {
  return (aiSdk ??= await import('ai'));
}

export type ModelChoice = { ok: true; model: LanguageModel; provider: LlmProvider; modelId: string } | { ok: false; reason: string };

/** Builds the configured model, or says why there is none. */
export async function chooseModel(settings: ProviderSettings, options: ProviderOptions = {}): Promise<ModelChoice> {
  if (!settings.provider) return { ok: false, reason: 'LLM not configured: set LLM_PROVIDER to openai or vertex (and LLM_MODEL)' };
  const modelId = settings.model || DEFAULT_MODELS[settings.provider];
  if (settings.provider === 'openai') {
    if (!settings.apiKey && !settings.openaiBaseUrl) {
      return {
        ok: false,
        reason:
          'LLM not configured: LLM_PROVIDER=openai needs the OPENAI_API_KEY secret (or OPENAI_BASE_URL for a local OpenAI-compatible server)',
      };
    }
    await loadAiSdk();
    const { createOpenAI } = await import('@ai-sdk/openai');
    // Always pass a key so the SDK never falls back to reading process.env itself.
    const openai = createOpenAI({ baseURL: settings.openaiBaseUrl, apiKey: settings.apiKey ?? 'not-needed', fetch: options.fetch });
    return { ok: true, model: openai.chat(modelId), provider: 'openai', modelId };
  }
  if (!settings.vertexProject)
    return { ok: false, reason: 'LLM not configured: LLM_PROVIDER=vertex needs VERTEX_PROJECT (or GOOGLE_CLOUD_PROJECT)' };
  await loadAiSdk();
  const { createVertex: makeVertex } = await import('@ai-sdk/google-vertex');
  const vertex = makeVertex({
    project: settings.vertexProject,
    location: settings.vertexLocation ?? 'us-central1',
    baseURL: settings.vertexBaseUrl,
    googleAuthOptions: options.vertexAuth,
    fetch: options.fetch,
  });
  return { ok: true, model: vertex(modelId), provider: 'vertex', modelId };
}

export interface ClassifiedError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  status?: number;
}

/**
 * Provider failure → step failure: 5xx, 408/409 and network errors are retryable PROVIDER_ERRORs (the
 * runtime retries with backoff), 429 is a retryable RATE_LIMITED, other 4xx are permanent (bad key,
 * unknown model, invalid request). Anything else from the SDK is a permanent PROVIDER_ERROR; errors that
 * are not the SDK's are returned as undefined (the caller rethrows: a bug, not a provider problem).
 */
export function classifyProviderError(error: unknown): ClassifiedError | undefined {
  // Until the SDK is loaded nothing can have thrown one of its errors.
  if (!aiSdk) return undefined;
  const { APICallError, AISDKError, RetryError } = aiSdk;
  const cause = RetryError.isInstance(error) ? error.lastError : error;
  if (APICallError.isInstance(cause)) {
    const status = cause.statusCode;
    if (status === 429) return { code: 'RATE_LIMITED', message: `provider rate limit: ${cause.message}`, retryable: true, status };
    if (status === undefined) return { code: 'PROVIDER_ERROR', message: `provider unreachable: ${cause.message}`, retryable: true };
    if (status >= 500 || status === 408 || status === 409)
      return { code: 'PROVIDER_ERROR', message: `provider error ${status}: ${cause.message}`, retryable: true, status };
    const hint =
      status === 401 || status === 403 ? ' (check the API key / credentials)' : status === 404 ? ' (check LLM_MODEL and the base URL)' : '';
    return {
      code: 'PROVIDER_ERROR',
      message: `provider rejected the request (${status})${hint}: ${cause.message}`,
      retryable: false,
      status,
    };
  }
  if (AISDKError.isInstance(cause))
    return { code: 'PROVIDER_ERROR', message: `provider response unusable: ${cause.message}`, retryable: false };
  return undefined;
}
