import { z } from 'zod';
import { env } from '../../runtime/config.js';

/** US dollars per million tokens, input and output. */
export type ModelPrice = { input: number; output: number };

/** The model each provider uses when LLM_MODEL is not set. */
export const DEFAULT_MODELS = { openai: 'gpt-4o-mini', vertex: 'gemini-2.5-flash' } as const;
export type LlmProvider = keyof typeof DEFAULT_MODELS;

/**
 * List prices of the default models (per million tokens, as published by OpenAI and Google in 2025).
 * Prices change: LLM_PRICES overrides or adds models.
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

/**
 * The env that prices LLM use, read alike by llm-bot (the cost metric and the cost caps) and api-gateway
 * (the usage report), so the metric, the caps and the report always use the same price.
 */
export const PricingSchema = z.object({
  LLM_PROVIDER: z.preprocess(
    (value) => (value === '' ? undefined : value),
    z.enum(['openai', 'vertex'], { error: 'must be openai or vertex (or unset)' }).optional(),
  ),
  LLM_MODEL: env.string(),
  /** Per-model prices (USD per million tokens), over the built-in list. */
  LLM_PRICES: PricesSchema,
  /** The configured model's price per million input tokens; when set (with or without the output price) it wins over LLM_PRICES. */
  LLM_PRICE_INPUT_PER_MTOK: env.number(0, { min: 0 }),
  /** The configured model's price per million output tokens. */
  LLM_PRICE_OUTPUT_PER_MTOK: env.number(0, { min: 0 }),
});
export type Pricing = z.infer<typeof PricingSchema>;

/** The model the bot asks: LLM_MODEL, or the provider's default. */
export function configuredModel(pricing: Pick<Pricing, 'LLM_PROVIDER' | 'LLM_MODEL'>): string | undefined {
  return pricing.LLM_MODEL || (pricing.LLM_PROVIDER ? DEFAULT_MODELS[pricing.LLM_PROVIDER] : undefined);
}

/**
 * A model's price: for the configured model LLM_PRICE_INPUT/OUTPUT_PER_MTOK when either is set, then
 * LLM_PRICES, then the built-in list; undefined when none knows the model (its cost is not tracked).
 */
export function modelPrice(pricing: Pricing, model = configuredModel(pricing)): ModelPrice | undefined {
  if (!model) return undefined;
  const explicit = pricing.LLM_PRICE_INPUT_PER_MTOK > 0 || pricing.LLM_PRICE_OUTPUT_PER_MTOK > 0;
  if (explicit && model === configuredModel(pricing))
    return { input: pricing.LLM_PRICE_INPUT_PER_MTOK, output: pricing.LLM_PRICE_OUTPUT_PER_MTOK };
  return pricing.LLM_PRICES[model] ?? DEFAULT_PRICES[model];
}

/** The estimated cost of a request in US dollars; 0 for a model with no known price. */
export function costUsd(pricing: Pricing, model: string | undefined, usage: { inputTokens: number; outputTokens: number }): number {
  const price = modelPrice(pricing, model);
  if (!price) return 0;
  return (usage.inputTokens * price.input + usage.outputTokens * price.output) / 1_000_000;
}
