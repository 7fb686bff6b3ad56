import { randomBytes } from 'node:crypto';
import { stepTopic } from '../../core/index.js';
import { defineService, failed, type ServiceDefinition } from '../../runtime/service.js';
import { answer, type BotState } from './answer.js';
import { ConfigSchema, type LlmBotConfig } from './config.js';
import { createBudgetGate } from './limits.js';
import { createToolbox, type CreateToolboxOptions } from './mcp.js';
import { connectPlatformMcp, type PlatformMcpOptions } from './mcp-platform.js';
import { chooseModel, type ProviderOptions } from './provider.js';

export * from './guard.js';
export * from './prompt.js';
export * from './mcp-platform.js';
export {
  createToolbox,
  McpServerConfigSchema,
  McpServersSchema,
  DEFAULT_EXTERNAL_POLICY,
  type McpServerConfig,
  type Toolbox,
  type ToolAuditEntry,
} from './mcp.js';
export { chooseModel, classifyProviderError, DEFAULT_MODELS } from './provider.js';
export { MAX_STEPS, OUT_OF_WORDS_REPLY, USER_CAP_REPLY } from './answer.js';
export { UsageCapsSchema, readUsage, type UsageCaps, type UsageReport } from './usage.js';
export type { LlmBotConfig } from './config.js';

const SERVICE = 'llm-bot';

/** What code can pass that env cannot (tests, embedding). */
export interface LlmBotOptions extends ProviderOptions {
  /** Replaces how external MCP servers are connected. */
  connectMcp?: CreateToolboxOptions['connect'];
  /** Audit hook for built-in platform tool calls (called by the tool itself). */
  onPlatformToolCall?: PlatformMcpOptions['onCall'];
  /** Hosts replies may link to; default twitch.tv. */
  linkAllowlist?: string[];
}

/**
 * Answers chat with an LLM. Outcomes (each recorded as an `llm-bot` annotation):
 * - not configured (no LLM_PROVIDER / key) → `skip`: the event goes on and is finalized without a reply;
 * - over the per-user or per-channel minute limit → `handled`, no reply, label `rate-limited`;
 * - daily token budget or daily cost cap (LLM_DAILY_COST_USD) spent → `handled`, label `budget-exhausted`;
 *   the channel is told "I'm out of words for today" at most once per 10 minutes, otherwise no reply;
 * - the user's own daily tokens or cost spent (LLM_USER_DAILY_TOKENS / LLM_USER_DAILY_COST_USD, priced as in
 *   pricing.ts: LLM_PRICE_INPUT/OUTPUT_PER_MTOK, LLM_PRICES, the list) → `handled`, label `user-capped`; the user is told once per UTC day;
 * - answered → `continue` with a reply candidate (≤ 450 chars, plain text, guarded — see guard.ts);
 * - provider 5xx/network → retryable PROVIDER_ERROR (429 → RATE_LIMITED); other 4xx → permanent;
 *   past LLM_TIMEOUT_MS or the step deadline → DEADLINE.
 */
export function createLlmBotService(options: LlmBotOptions = {}): ServiceDefinition<LlmBotConfig> {
  return defineService<LlmBotConfig>({
    name: SERVICE,
    configSchema: ConfigSchema,
    needsStore: true,
    setup(ctx) {
      let state: BotState | undefined;
      return {
        consumers: {
          [stepTopic(SERVICE)]: {
            mode: 'step',
            async handle(envelope, hctx) {
              if (!state) return failed('NOT_CONFIGURED', 'llm-bot received a message before it started', { retryable: true });
              return await answer(ctx, state, envelope, hctx);
            },
          },
        },
        async start() {
          const config = ctx.config;
          // Provider warnings go to our logger (debug), not straight to the console, unless someone chose otherwise.
          if (globalThis.AI_SDK_LOG_WARNINGS === undefined) globalThis.AI_SDK_LOG_WARNINGS = false;
          const apiKey = await ctx.secrets.get('OPENAI_API_KEY');
          ctx.registerSecret(apiKey);
          const choice = await chooseModel(
            {
              provider: config.LLM_PROVIDER,
              model: config.LLM_MODEL,
              openaiBaseUrl: config.OPENAI_BASE_URL,
              apiKey,
              vertexProject: config.VERTEX_PROJECT ?? ctx.platform.GOOGLE_CLOUD_PROJECT,
              vertexLocation: config.VERTEX_LOCATION,
              vertexBaseUrl: config.VERTEX_BASE_URL,
            },
            options,
          );
          state = {
            choice,
            apiKey,
            canary: `bb-${randomBytes(6).toString('hex')}`,
            budget: createBudgetGate(ctx.store, config.LLM_DAILY_TOKEN_BUDGET),
            linkAllowlist: options.linkAllowlist,
          };
          if (!choice.ok) {
            ctx.logger.warn({ reason: choice.reason }, 'LLM not configured; messages for llm-bot are skipped without a reply');
            ctx.health.set('llm', true, choice.reason, { configured: false });
            return;
          }
          state.platform = await connectPlatformMcp({
            store: ctx.store,
            publish: (topic, envelope) => ctx.publish(topic, envelope),
            onCall: options.onPlatformToolCall,
          });
          state.toolbox = await createToolbox({
            platform: state.platform.client,
            servers: config.MCP_SERVERS,
            logger: ctx.logger,
            connect: options.connectMcp,
          });
          ctx.health.set('llm', true, `${choice.provider}:${choice.modelId}, ${state.toolbox.entries.length} tool(s)`, {
            configured: true,
          });
          if (state.toolbox.unavailable.length > 0) {
            ctx.health.set('mcp', true, `unavailable: ${state.toolbox.unavailable.map((entry) => entry.server).join(', ')}`);
          }
        },
        async stop() {
          await state?.toolbox?.close();
          await state?.platform?.close();
          state = undefined;
        },
      };
    },
  });
}

export const service = createLlmBotService();
export default service;
