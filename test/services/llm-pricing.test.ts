import { describe, expect, it } from 'vitest';
import { configuredModel, costUsd, modelPrice, PricingSchema } from '../../src/services/llm-bot/pricing.js';

const pricing = (env: Record<string, string>) => PricingSchema.parse(env);

describe('LLM pricing: one price per model for the cost metric, the cost caps and the usage report', () => {
  it('uses the built-in list price of the provider’s default model with nothing set', () => {
    const openai = pricing({ LLM_PROVIDER: 'openai' });
    expect(configuredModel(openai)).toBe('gpt-4o-mini');
    expect(modelPrice(openai)).toEqual({ input: 0.15, output: 0.6 });
    expect(modelPrice(pricing({ LLM_PROVIDER: 'vertex' }))).toEqual({ input: 0.3, output: 2.5 });
    expect(modelPrice(pricing({}))).toBeUndefined();
  });

  it('takes LLM_PRICES over the list, and LLM_PRICE_INPUT/OUTPUT_PER_MTOK over both for the configured model only', () => {
    const table = pricing({ LLM_PROVIDER: 'openai', LLM_PRICES: '{"gpt-4o-mini":{"input":1,"output":2},"local":{"input":0,"output":0}}' });
    expect(modelPrice(table)).toEqual({ input: 1, output: 2 });
    expect(modelPrice(table, 'local')).toEqual({ input: 0, output: 0 });
    expect(modelPrice(table, 'gpt-4o')).toEqual({ input: 2.5, output: 10 });
    expect(modelPrice(table, 'unknown-model')).toBeUndefined();

    const explicit = pricing({
      LLM_PROVIDER: 'openai',
      LLM_MODEL: 'mine',
      LLM_PRICE_INPUT_PER_MTOK: '3',
      LLM_PRICES: '{"mine":{"input":9,"output":9}}',
    });
    expect(modelPrice(explicit)).toEqual({ input: 3, output: 0 });
    expect(modelPrice(explicit, 'mine')).toEqual({ input: 3, output: 0 });
    // Another model the provider answered with keeps its own price.
    expect(modelPrice(explicit, 'gpt-4o-mini')).toEqual({ input: 0.15, output: 0.6 });
  });

  it('prices a request in dollars, and 0 for a model with no known price', () => {
    const config = pricing({ LLM_PROVIDER: 'openai', LLM_PRICES: '{"m":{"input":2,"output":10}}' });
    expect(costUsd(config, 'm', { inputTokens: 120, outputTokens: 30 })).toBeCloseTo(0.00054, 12);
    expect(costUsd(config, 'nobody-knows', { inputTokens: 120, outputTokens: 30 })).toBe(0);
  });

  it('refuses a price table that is not JSON with an example of the format, and a bad price by its path', () => {
    const notJson = PricingSchema.safeParse({ LLM_PRICES: 'cheap' });
    expect(notJson.error?.issues.map((issue) => [issue.path.join('.'), issue.message])).toEqual([
      ['LLM_PRICES', 'must be JSON like {"gpt-4o-mini":{"input":0.15,"output":0.6}} (USD per million tokens)'],
    ]);
    const badPrice = PricingSchema.safeParse({ LLM_PRICES: '{"m":{"input":"cheap","output":1}}' });
    expect(badPrice.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['LLM_PRICES.m.input']);
  });
});
