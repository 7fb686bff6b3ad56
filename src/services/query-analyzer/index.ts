import { z } from 'zod';
import { messageText, stepTopic, withAnnotations, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { continueWith, defineService, handled, skip, type HandlerResult, type ServiceDefinition } from '../../runtime/service.js';
import { Intent, Sentiment, analysisAnnotations, createAnalyzer, type Analysis } from './analyze.js';

export * from './analyze.js';

const ConfigSchema = z.object({
  /** The bot's login: `@name` or the bare name is a mention. */
  BOT_NAME: env.string().transform((value) => value ?? 'bitbrat'),
  /** Command prefix (shared with the commands service). */
  COMMAND_PREFIX: env.string().transform((value) => value ?? '!'),
  /** Comma-separated domains links may point to, e.g. `twitch.tv,youtube.com`. */
  ANALYZER_LINK_ALLOWLIST: env.csv([]),
  /** Comma-separated words or phrases that make a message spam. */
  ANALYZER_BLOCKLIST: env.csv([]),
});
type Config = z.infer<typeof ConfigSchema>;

/**
 * An optional second opinion, asked only when the deterministic analysis is ambiguous (e.g. a longer
 * message with no clear intent). The llm-bot engineer wires an LLM-backed one when LLM_PROVIDER is set;
 * whatever it returns overrides intent/sentiment. It must be fast: it is raced against a timeout and any
 * failure keeps the deterministic result.
 */
export type IntentClassifier = (
  text: string,
  analysis: Analysis,
  signal: AbortSignal,
) => Promise<{ intent?: Intent; intentScore?: number; sentiment?: Sentiment; sentimentScore?: number } | undefined>;

export interface QueryAnalyzerOptions {
  classifier?: IntentClassifier;
  /** Budget for the classifier (ms); past it the deterministic result stands. Default 500. */
  classifierTimeoutMs?: number;
}

export const DEFAULT_CLASSIFIER_TIMEOUT_MS = 500;

async function refine(
  analysis: Analysis,
  text: string,
  classifier: IntentClassifier,
  timeoutMs: number,
  parent: AbortSignal,
): Promise<Analysis> {
  const controller = new AbortController();
  const abort = () => controller.abort();
  parent.addEventListener('abort', abort, { once: true });
  const timer = setTimeout(abort, timeoutMs);
  try {
    const verdict = await Promise.race([
      classifier(text, analysis, controller.signal),
      new Promise<undefined>((resolve) => controller.signal.addEventListener('abort', () => resolve(undefined), { once: true })),
    ]);
    if (!verdict) return analysis;
    const intent =
      verdict.intent && verdict.intent !== Intent.command && Object.values(Intent).includes(verdict.intent)
        ? verdict.intent
        : analysis.intent;
    const sentiment = verdict.sentiment && Object.values(Sentiment).includes(verdict.sentiment) ? verdict.sentiment : analysis.sentiment;
    return {
      ...analysis,
      intent,
      intentScore: intent !== analysis.intent ? (verdict.intentScore ?? 0.7) : analysis.intentScore,
      sentiment,
      sentimentScore: sentiment !== analysis.sentiment ? (verdict.sentimentScore ?? analysis.sentimentScore) : analysis.sentimentScore,
      ...(intent !== analysis.intent || sentiment !== analysis.sentiment ? { classifiedBy: 'classifier' } : {}),
    };
  } catch {
    return analysis;
  } finally {
    clearTimeout(timer);
    parent.removeEventListener('abort', abort);
  }
}

/**
 * The query analyzer step: annotates intent, sentiment and spam. Spam is handled here (a `moderation`
 * annotation, no reply, nothing further runs) unless a `moderation` step follows, which then acts on it.
 * Commands also get `message.command`/`args`.
 */
export function createQueryAnalyzer(options: QueryAnalyzerOptions = {}): ServiceDefinition<Config> {
  return defineService<Config>({
    name: 'query-analyzer',
    configSchema: ConfigSchema,
    setup(ctx) {
      const config = ctx.config;
      const analyze = createAnalyzer({
        botName: config.BOT_NAME,
        commandPrefix: config.COMMAND_PREFIX,
        linkAllowlist: config.ANALYZER_LINK_ALLOWLIST,
        blocklist: config.ANALYZER_BLOCKLIST,
      });
      return {
        consumers: {
          [stepTopic('query-analyzer')]: {
            mode: 'step',
            async handle(envelope, hctx): Promise<HandlerResult> {
              const text = messageText(envelope);
              if (text === undefined || text.trim() === '') return skip();
              const user = envelope.user;
              let analysis: Analysis = analyze({
                text,
                role: user.role,
                roles: Array.isArray(user.roles) ? (user.roles as unknown[]).map(String) : undefined,
                permissions: user.permissions,
                emotes: envelope.payload.emotes,
              });
              if (analysis.ambiguous && options.classifier) {
                analysis = await refine(
                  analysis,
                  text,
                  options.classifier,
                  options.classifierTimeoutMs ?? DEFAULT_CLASSIFIER_TIMEOUT_MS,
                  hctx.signal,
                );
              }
              const out: Envelope = withAnnotations(
                {
                  ...envelope,
                  message: {
                    ...(envelope.message ?? { text }),
                    text,
                    ...(analysis.command ? { command: analysis.command.name, args: analysis.command.args } : {}),
                  },
                },
                ...analysisAnnotations(analysis),
              );
              // With a moderation step still to come, spam goes on to it so the message is acted on (removed,
              // escalated) and logged; the router's drop-spam rule still keeps it from getting a reply.
              const moderationAhead = envelope.routingSlip.some(
                (step, index) => index > hctx.stepIndex && step.status === 'PENDING' && step.id === 'moderation',
              );
              if (!analysis.spam || moderationAhead) return continueWith(out);
              // No moderation step: the message is only suppressed (no reply, nothing further runs).
              ctx.metrics.platform.moderationActions.inc({ platform: envelope.source.platform, action: 'suppressed', reason: 'spam' });
              return handled(out, 'handled');
            },
          },
        },
      };
    },
  });
}

export const service = createQueryAnalyzer();
export default service;
