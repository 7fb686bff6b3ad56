import { z } from 'zod';

/** US dollars per million tokens, input and output. */
export type ModelPrice = { input: number; output: number };

/**
 * List prices of the default models (per million tokens, as published by OpenAI and Google in 2025),
 * used for the bitbrat_llm_cost_usd_total estimate. Prices change: LLM_PRICES overrides or adds models.
 */
export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = Object.freeze({
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  'gpt-4o': { input: 2.5, output: 10 },
  'gemini-2.5-flash': { input: 0.3, output: 2.5 },
});

/** LLM_PRICES: a JSON object `{"model": {"input": 0.15, "output": 0.6}}` in dollars per million tokens. */
export const PricesSchema = z.preprocess(
  (value) => {
    if (value === undefined || value === '') return {};
    if (typeof value !== 'string') return value;
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  },
  z.record(z.string(), z.object({ input: z.number().min(0), output: z.number().min(0) }), {
    error: 'must be JSON like {"gpt-4o-mini":{"input":0.15,"output":0.6}} (USD per million tokens)',
  }),
);

/** The estimated cost of a request in US dollars; 0 for a model with no known price. */
export function costUsd(prices: Readonly<Record<string, ModelPrice>>, model: string, inputTokens: number, outputTokens: number): number {
  const price = prices[model] ?? DEFAULT_PRICES[model];
  if (!price) return 0;
  return (inputTokens * price.input + outputTokens * price.output) / 1_000_000;
}
