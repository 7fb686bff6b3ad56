// Rule numbers (R1–R11) in this file refer to docs/slip-rules.md.
import { createAnnotation, createReply, messageText, withAnnotations, type Annotation, type Envelope } from '../../core/index.js';
import {
  continueWith,
  failed,
  handled,
  skip,
  type HandlerContext,
  type HandlerResult,
  type ServiceContext,
} from '../../runtime/service.js';
import { traced } from '../../runtime/tracing.js';
import { Role } from '../auth/roles.js';
import { filterReply, redactSecrets, sanitizeUserText, type GuardFlag } from './guard.js';
import { takeRateSlot, type BudgetGate } from './limits.js';
import { checkCaps, recordUsage } from './usage.js';
import type { ToolAuditEntry, Toolbox } from './mcp.js';
import { readStreamState, type PlatformMcp, type Requester } from './mcp-platform.js';
import { MEMORY_TURNS, buildMessages, buildSystemPrompt } from './prompt.js';
import { costUsd } from './pricing.js';
import { classifyProviderError, loadAiSdk, type ModelChoice } from './provider.js';
import type { LlmBotConfig } from './config.js';

const SERVICE = 'llm-bot';
/** Model round-trips per message (tool call → result → answer, with one spare). */
export const MAX_STEPS = 4;
const MAX_OUTPUT_TOKENS = 800;
export const OUT_OF_WORDS_REPLY = "I'm out of words for today — back tomorrow!";
/** How often a channel is told the budget is spent (otherwise requests are annotated only). */
const BUDGET_NOTICE_EVERY_MS = 10 * 60_000;
/** A user over their own cap is told once per UTC day (the cap's window), then only annotated. */
export const USER_CAP_REPLY = "you've had your share of my words for today — back tomorrow!";
const USER_CAP_NOTICE_EVERY_MS = 86_400_000;

/** What one llm-bot instance holds between messages (set up at start). */
export interface BotState {
  choice: ModelChoice;
  apiKey?: string;
  /** Planted in every system prompt; seeing it in a reply proves a leak. */
  canary: string;
  budget: BudgetGate;
  platform?: PlatformMcp;
  toolbox?: Toolbox;
  /** Hosts replies may link to (LlmBotOptions.linkAllowlist). */
  linkAllowlist?: string[];
}

function note(label: string, payload?: Record<string, unknown>): Annotation {
  return createAnnotation(SERVICE, { kind: SERVICE, label, value: true, ...(payload ? { payload } : {}) });
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
  const raw = messageText(envelope) ?? '';
  return raw.replace(new RegExp(`^\\s*@?${botName.replace(/[^A-Za-z0-9_]/g, '')}\\b[,:]?\\s*`, 'i'), '').trim();
}

/**
 * Answers one chat message with the LLM (see the service's doc comment in index.ts for the outcomes).
 */
export async function answer(
  ctx: ServiceContext<LlmBotConfig>,
  state: BotState,
  envelope: Envelope,
  hctx: HandlerContext,
): Promise<HandlerResult> {
  const config = ctx.config;
  const botName = config.BOT_NAME || 'BitBrat';
  const text = questionText(envelope, botName);
  if (!text) return skip(withAnnotations(envelope, note('no-text')));
  if (!state.choice.ok) return skip(withAnnotations(envelope, note('not-configured', { reason: state.choice.reason })));
  const { model, provider, modelId } = state.choice;
  const store = ctx.store;
  const requester = requesterOf(envelope);

  // Counted once per message, not again on a retry of the same step.
  if (hctx.attempt <= 1) {
    const rate = await takeRateSlot(store, requester, {
      perUser: config.LLM_USER_RATE_PER_MIN,
      perChannel: config.LLM_CHANNEL_RATE_PER_MIN,
    });
    if (rate.limited) return handled(withAnnotations(envelope, note('rate-limited', { scope: rate.scope, limitPerMinute: rate.limit })));
  }
  const channelKey = `${requester.platform}:${requester.channel.toLowerCase()}`;
  const budget = await state.budget.check();
  if (budget.exhausted) {
    const out = withAnnotations(envelope, note('budget-exhausted', { spent: budget.spent, budget: config.LLM_DAILY_TOKEN_BUDGET }));
    if (await store.claimKey('llm-bot:budget-notice', channelKey, BUDGET_NOTICE_EVERY_MS))
      out.candidates = [...(out.candidates ?? []), createReply(SERVICE, OUT_OF_WORDS_REPLY, { reason: 'budget-exhausted' })];
    return handled(out);
  }

  const userKey = `${requester.platform}:${requester.userId}`;
  const cap = await checkCaps(store, config, userKey);
  if (cap.capped) {
    const out = withAnnotations(
      envelope,
      note(cap.scope === 'daily-cost' ? 'budget-exhausted' : 'user-capped', { scope: cap.scope, spent: cap.spent, cap: cap.cap }),
    );
    if (cap.scope === 'daily-cost') {
      if (await store.claimKey('llm-bot:budget-notice', channelKey, BUDGET_NOTICE_EVERY_MS))
        out.candidates = [...(out.candidates ?? []), createReply(SERVICE, OUT_OF_WORDS_REPLY, { reason: 'budget-exhausted' })];
    } else if (
      await store.claimKey('llm-bot:user-cap-notice', `${userKey}:${new Date().toISOString().slice(0, 10)}`, USER_CAP_NOTICE_EVERY_MS)
    ) {
      const name = envelope.user.displayName || envelope.user.name;
      out.candidates = [...(out.candidates ?? []), createReply(SERVICE, `@${name} ${USER_CAP_REPLY}`, { reason: cap.scope })];
    }
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
  const llm = ctx.metrics.platform;
  const labels = { provider, model: modelId };
  let result;
  try {
    const { generateText, stepCountIs } = await loadAiSdk();
    result = await traced(
      'llm generate_text',
      { 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': provider, 'gen_ai.request.model': modelId },
      async (span) => {
        const generated = await generateText({
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
        span?.setAttributes({
          'gen_ai.usage.input_tokens': generated.totalUsage.inputTokens,
          'gen_ai.usage.output_tokens': generated.totalUsage.outputTokens,
          'bitbrat.llm.steps': generated.steps.length,
        });
        return generated;
      },
    );
  } catch (error) {
    llm.llmRequests.inc({ ...labels, result: signal.aborted ? 'DEADLINE' : (classifyProviderError(error)?.code ?? 'ERROR') });
    if (signal.aborted)
      return failed(
        'DEADLINE',
        `the LLM did not answer within ${timeout.aborted ? `${config.LLM_TIMEOUT_MS} ms (LLM_TIMEOUT_MS)` : 'the step deadline'}`,
        { retryable: false },
      );
    const classified = classifyProviderError(error);
    if (!classified) throw error;
    hctx.logger.warn({ code: classified.code, status: classified.status, provider, model: modelId }, 'LLM call failed');
    return failed(classified.code, redactSecrets(classified.message, [state.apiKey]).text, {
      retryable: classified.retryable,
      details: { provider, model: modelId, ...(classified.status ? { status: classified.status } : {}) },
    });
  }

  if (result.warnings && result.warnings.length > 0) hctx.logger.debug({ warnings: result.warnings }, 'LLM provider warnings');
  const tokens = result.totalUsage.totalTokens ?? (result.totalUsage.inputTokens ?? 0) + (result.totalUsage.outputTokens ?? 0);
  const inputTokens = result.totalUsage.inputTokens ?? 0;
  const outputTokens = result.totalUsage.outputTokens ?? 0;
  llm.llmRequests.inc({ ...labels, result: 'ok' });
  llm.llmTokens.inc({ ...labels, direction: 'input' }, inputTokens);
  llm.llmTokens.inc({ ...labels, direction: 'output' }, outputTokens);
  const usage = { model: modelId, inputTokens, outputTokens: result.totalUsage.outputTokens ?? tokens - inputTokens };
  llm.llmCostUsd.inc(labels, costUsd(config, modelId, usage));
  await Promise.all([state.budget.spend(tokens), recordUsage(store, config, userKey, usage)]);
  const reply = filterReply(result.text, {
    instructions: prompt.instructions,
    canary: state.canary,
    secrets: [state.apiKey],
    linkAllowlist: state.linkAllowlist,
    publicTerms: [botName, requester.channel],
  });
  const flags: GuardFlag[] = [...input.flags, ...reply.flags];
  const notes = [
    note(reply.text ? 'answered' : 'empty-reply', {
      provider,
      model: modelId,
      tokens,
      steps: result.steps.length,
      ...(audit.length ? { tools: audit } : {}),
    }),
  ];
  if (flags.length > 0)
    notes.push({ ...note('guard', { input: input.flags, output: reply.flags, blocked: reply.blocked }), kind: 'prompt-guard' });
  const out = withAnnotations(envelope, ...notes);
  if (!reply.text) return handled(out);

  const at = new Date().toISOString();
  await store.appendConversation(
    channelKey,
    [
      { role: 'user', text: input.text, user: speaker, at },
      { role: 'assistant', text: reply.text, at },
    ],
    MEMORY_TURNS,
  );
  out.candidates = [...(out.candidates ?? []), createReply(SERVICE, reply.text, { provider, model: modelId, tokens })];
  return continueWith(out);
}
