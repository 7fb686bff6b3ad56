import { z } from 'zod';
import { env } from '../../runtime/config.js';
import { McpServersSchema } from './mcp.js';
import { UsageCapsSchema } from './usage.js';

/** The llm-bot's env. */
export const ConfigSchema = z.object({
  OPENAI_BASE_URL: env.url(),
  LLM_BOT_SYSTEM_PROMPT: env.string(),
  BOT_NAME: env.string('BitBrat'),
  LLM_TIMEOUT_MS: env.int(15_000, { min: 100, max: 600_000 }),
  LLM_USER_RATE_PER_MIN: env.int(4, { min: 0 }),
  LLM_CHANNEL_RATE_PER_MIN: env.int(30, { min: 0 }),
  MCP_SERVERS: McpServersSchema,
  VERTEX_PROJECT: env.string(),
  VERTEX_LOCATION: env.string('us-central1'),
  VERTEX_BASE_URL: env.url(),
  /** The caps and the prices (LLM_PROVIDER, LLM_MODEL, LLM_PRICES, LLM_PRICE_*), shared with api-gateway. */
  ...UsageCapsSchema.shape,
});
export type LlmBotConfig = z.infer<typeof ConfigSchema>;
