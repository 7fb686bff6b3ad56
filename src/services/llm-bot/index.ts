import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { createReply, newId, stepTopic, type Annotation, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { continueWith, defineService, failed, handled, skip, type HandlerContext, type ServiceContext, type ServiceDefinition } from '../../runtime/service.js';
import { Role } from '../auth/roles.js';
import { filterReply, redactSecrets, sanitizeUserText, type GuardFlag } from './guard.js';
import { createBudgetGate, takeRateSlot, type BudgetGate } from './limits.js';
import { createToolbox, McpServersSchema, type CreateToolboxOptions, type ToolAuditEntry, type Toolbox } from './mcp.js';
import { connectPlatformMcp, readStreamState, type PlatformMcp, type PlatformMcpOptions, type Requester } from './mcp-platform.js';
import { MEMORY_TURNS, buildMessages, buildSystemPrompt } from './prompt.js';
import { chooseModel, classifyProviderError, loadAiSdk, type ModelChoice, type ProviderOptions } from './provider.js';

export * from './guard.js';
export * from './prompt.js';
export * from './mcp-platform.js';
export { createToolbox, McpServerConfigSchema, McpServersSchema, DEFAULT_EXTERNAL_POLICY, type McpServerConfig, type Toolbox, type ToolAuditEntry } from './mcp.js';
export { chooseModel, classifyProviderError, DEFAULT_MODELS } from './provider.js';

const SERVICE = 'llm-bot';
/** Model round-trips per message (tool call → result → answer, with one spare). */
export const MAX_STEPS = 4;
const MAX_OUTPUT_TOKENS = 800;
export const OUT_OF_WORDS_REPLY = "I'm out of words for today — back tomorrow!";
/** How often a channel is told the budget is spent (otherwise requests are annotated only). */
const BUDGET_NOTICE_EVERY_MS = 10 * 60_000;

const ConfigSchema = z.object({
  LLM_PROVIDER: z.preprocess((value) => (value === '' ? undefined : value), z.enum(['openai', 'vertex'], { error: 'must be openai or vertex (or unset)' }).optional()),
  LLM_MODEL: env.string(),
  OPENAI_BASE_URL: env.url(),
  LLM_BOT_SYSTEM_PROMPT: env.string(),
  BOT_NAME: env.string('BitBrat'),
  LLM_TIMEOUT_MS: env.int(15_000, { min: 100, max: 600_000 }),
  /** Tokens per UTC day across all channels; 0 = unlimited. */
  LLM_DAILY_TOKEN_BUDGET: env.int(200_000, { min: 0 }),
  LLM_USER_RATE_PER_MIN: env.int(4, { min: 0 }),
  LLM_CHANNEL_RATE_PER_MIN: env.int(30, { min: 0 }),
  MCP_SERVERS: McpServersSchema,
  VERTEX_PROJECT: env.string(),
  VERTEX_LOCATION: env.string('us-central1'),
  VERTEX_BASE_URL: env.url(),
});
export type LlmBotConfig = z.infer<typeof ConfigSchema>;

/** What code can pass that env cannot (tests, embedding). */
export interface LlmBotOptions extends ProviderOptions {
  /** Replaces how external MCP servers are connected. */
  connectMcp?: CreateToolboxOptions['connect'];
  /** Audit hook for built-in platform tool calls (called by the tool itself). */
  onPlatformToolCall?: PlatformMcpOptions['onCall'];
  /** Hosts replies may link to; default twitch.tv. */
  linkAllowlist?: string[];
}

interface BotState {
  choice: ModelChoice;
  apiKey?: string;
  /** Planted in every system prompt; seeing it in a reply proves a leak. */
  canary: string;
  budget: BudgetGate;
  platform?: PlatformMcp;
  toolbox?: Toolbox;
}

function note(label: string, payload?: Record<string, unknown>): Annotation {
  return { id: newId(), kind: SERVICE, source: SERVICE, createdAt: new Date().toISOString(), label, value: true, ...(payload ? { payload } : {}) };
}

function withNotes(envelope: Envelope, ...notes: Annotation[]): Envelope {
  return { ...envelope, annotations: [...(envelope.annotations ?? []), ...notes] };
}

function requesterOf(envelope: Envelope): Requester {
  return {
    platform: envelope.source.platform,
    channel: envelope.source.channel,
    channelId: envelope.source.channelId,
    userId: envelope.user.id,
    login: envelope.user.name,
    role: envelope.user.role || Role.viewer,
    permissions: envelope.user.permissions,
  };
}

/** The question without a leading `@bot` mention. */
function questionText(envelope: Envelope, botName: string): string {
  const raw = envelope.message?.text ?? (typeof envelope.payload.text === 'string' ? envelope.payload.text : '');
  return raw.replace(new RegExp(`^\\s*@?${botName.replace(/[^A-Za-z0-9_]/g, '')}\\b[,:]?\\s*`, 'i'), '').trim();
}

/**
 * Answers chat with an LLM. Outcomes (each recorded as an `llm-bot` annotation):
 * - not configured (no LLM_PROVIDER / key) → `skip`: the event goes on and is finalized without a reply;
 * - over the per-user or per-channel minute limit → `handled`, no reply, label `rate-limited`;
 * - daily token budget spent → `handled`, label `budget-exhausted`; the channel is told
 *   "I'm out of words for today" at most once per 10 minutes, otherwise no reply;
 * - answered → `continue` with a reply candidate (≤ 450 chars, plain text, guarded — see guard.ts);
 * - provider 5xx/network → retryable PROVIDER_ERROR (429 → RATE_LIMITED); other 4xx → permanent;
 *   past LLM_TIMEOUT_MS or the step deadline → DEADLINE.
 */
export function createLlmBotService(options: LlmBotOptions = {}): ServiceDefinition<LlmBotConfig> {
  const states = new WeakMap<object, BotState>();

  const answer = async (ctx: ServiceContext<LlmBotConfig>, state: BotState, envelope: Envelope, hctx: HandlerContext) => {
    const config = ctx.config;
    const botName = config.BOT_NAME || 'BitBrat';
    const text = questionText(envelope, botName);
    if (!text) return skip(withNotes(envelope, note('no-text')));
    if (!state.choice.ok) return skip(withNotes(envelope, note('not-configured', { reason: state.choice.reason })));
    const { model, provider, modelId } = state.choice;
    const store = ctx.store;
    const requester = requesterOf(envelope);

    // Counted once per message, not again on a retry of the same step.
    if (hctx.attempt <= 1) {
      const rate = await takeRateSlot(store, requester, { perUser: config.LLM_USER_RATE_PER_MIN, perChannel: config.LLM_CHANNEL_RATE_PER_MIN });
      if (rate.limited) return handled(withNotes(envelope, note('rate-limited', { scope: rate.scope, limitPerMinute: rate.limit })));
    }
    const channelKey = `${requester.platform}:${requester.channel.toLowerCase()}`;
    const budget = await state.budget.check();
    if (budget.exhausted) {
      const out = withNotes(envelope, note('budget-exhausted', { spent: budget.spent, budget: config.LLM_DAILY_TOKEN_BUDGET }));
      if (await store.claimKey('llm-bot:budget-notice', channelKey, BUDGET_NOTICE_EVERY_MS)) out.candidates = [...(out.candidates ?? []), createReply(SERVICE, OUT_OF_WORDS_REPLY, { reason: 'budget-exhausted' })];
      return handled(out);
    }

    const input = sanitizeUserText(text);
    const [stream, memory] = await Promise.all([readStreamState(store, requester), store.getConversation(channelKey)]);
    const speaker = envelope.user.displayName || envelope.user.name;
    const audit: ToolAuditEntry[] = [];
    const tools = state.toolbox?.toolsFor(requester, audit) ?? {};
    const prompt = buildSystemPrompt({
      botName,
      persona: config.LLM_BOT_SYSTEM_PROMPT,
      platform: requester.platform,
      channel: requester.channel,
      requester: { name: speaker, role: requester.role },
      stream,
      tools: Object.keys(tools),
      inputFlags: input.flags,
      canary: state.canary,
    });
    const timeout = AbortSignal.timeout(config.LLM_TIMEOUT_MS);
    const signal = AbortSignal.any([hctx.signal, timeout]);
    let result;
    try {
      const { generateText, stepCountIs } = await loadAiSdk();
      result = await generateText({
        model,
        system: prompt.system,
        messages: buildMessages(memory, { user: speaker, text: input.text }),
        allowSystemInMessages: false,
        tools,
        stopWhen: stepCountIs(MAX_STEPS),
        maxOutputTokens: MAX_OUTPUT_TOKENS,
        // Retries belong to the runtime (R4: backoff, attempts recorded on the slip).
        maxRetries: 0,
        abortSignal: signal,
      });
    } catch (error) {
      if (signal.aborted) return failed('DEADLINE', `the LLM did not answer within ${timeout.aborted ? `${config.LLM_TIMEOUT_MS} ms (LLM_TIMEOUT_MS)` : 'the step deadline'}`, { retryable: false });
      const classified = classifyProviderError(error);
      if (!classified) throw error;
      hctx.logger.warn({ code: classified.code, status: classified.status, provider, model: modelId }, 'LLM call failed');
      return failed(classified.code, redactSecrets(classified.message, [state.apiKey]).text, { retryable: classified.retryable, details: { provider, model: modelId, ...(classified.status ? { status: classified.status } : {}) } });
    }

    if (result.warnings && result.warnings.length > 0) hctx.logger.debug({ warnings: result.warnings }, 'LLM provider warnings');
    const tokens = result.totalUsage.totalTokens ?? (result.totalUsage.inputTokens ?? 0) + (result.totalUsage.outputTokens ?? 0);
    await state.budget.spend(tokens);
    const reply = filterReply(result.text, { instructions: prompt.instructions, canary: state.canary, secrets: [state.apiKey], linkAllowlist: options.linkAllowlist, publicTerms: [botName, requester.channel] });
    const flags: GuardFlag[] = [...input.flags, ...reply.flags];
    const notes = [note(reply.text ? 'answered' : 'empty-reply', { provider, model: modelId, tokens, steps: result.steps.length, ...(audit.length ? { tools: audit } : {}) })];
    if (flags.length > 0) notes.push({ ...note('guard', { input: input.flags, output: reply.flags, blocked: reply.blocked }), kind: 'prompt-guard' });
    const out = withNotes(envelope, ...notes);
    if (!reply.text) return handled(out);

    const at = new Date().toISOString();
    await store.appendConversation(channelKey, [{ role: 'user', text: input.text, user: speaker, at }, { role: 'assistant', text: reply.text, at }], MEMORY_TURNS);
    out.candidates = [...(out.candidates ?? []), createReply(SERVICE, reply.text, { provider, model: modelId, tokens })];
    return continueWith(out);
  };

  return defineService<LlmBotConfig>({
    name: SERVICE,
    configSchema: ConfigSchema,
    needsStore: true,
    async start(ctx) {
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
      const state: BotState = { choice, apiKey, canary: `bb-${randomBytes(6).toString('hex')}`, budget: createBudgetGate(ctx.store, config.LLM_DAILY_TOKEN_BUDGET) };
      states.set(ctx, state);
      if (!choice.ok) {
        ctx.logger.warn({ reason: choice.reason }, 'LLM not configured; messages for llm-bot are skipped without a reply');
        ctx.health.set('llm', true, choice.reason, { configured: false });
        return;
      }
      state.platform = await connectPlatformMcp({ store: ctx.store, onCall: options.onPlatformToolCall });
      state.toolbox = await createToolbox({ platform: state.platform.client, servers: config.MCP_SERVERS, logger: ctx.logger, connect: options.connectMcp });
      ctx.health.set('llm', true, `${choice.provider}:${choice.modelId}, ${state.toolbox.entries.length} tool(s)`, { configured: true });
      if (state.toolbox.unavailable.length > 0) {
        ctx.health.set('mcp', true, `unavailable: ${state.toolbox.unavailable.map((entry) => entry.server).join(', ')}`);
      }
    },
    async stop(ctx) {
      const state = states.get(ctx);
      await state?.toolbox?.close();
      await state?.platform?.close();
      states.delete(ctx);
    },
    consumers: (ctx) => ({
      [stepTopic(SERVICE)]: {
        mode: 'step',
        async handle(envelope, hctx) {
          const state = states.get(ctx);
          if (!state) return failed('NOT_CONFIGURED', 'llm-bot received a message before it started', { retryable: true });
          return await answer(ctx, state, envelope, hctx);
        },
      },
    }),
  });
}

export const service = createLlmBotService();
export default service;
