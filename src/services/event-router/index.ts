import { z } from 'zod';
import { Topic, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import type { Logger } from '../../runtime/logger.js';
import { continueWith, failed, handled, type HandlerResult, type ServiceContext, type ServiceDefinition } from '../../runtime/service.js';
import { DEFAULT_RULES_FILE, seedRules } from './load.js';
import { applyDecision } from './plan.js';
import { compileRules, evaluationData, matchRule, type RuleSet, type Stage } from './rules.js';

export * from './rules.js';
export * from './plan.js';
export * from './load.js';

const ConfigSchema = z.object({
  /** Rules seeded into the empty `rules` table on first start. Default: config/rules.default.json. */
  RULES_FILE: env.string().transform((value) => value ?? DEFAULT_RULES_FILE),
  /** How often to check `rulesVersion()` for changes (ms). */
  RULES_RELOAD_MS: env.int(2_000, { min: 50 }),
  /** The bot's login, available to rules as `botName`. */
  BOT_NAME: env.string().transform((value) => value ?? 'bitbrat'),
  /** Whether an LLM is configured; without one, rules see `capabilities.llm` false and send llm-bot nothing. */
  LLM_PROVIDER: env.string(),
});
type Config = z.infer<typeof ConfigSchema>;

export interface EventRouter extends ServiceDefinition<Config> {
  /** Reload rules from the store now when their version changed (`force` reloads regardless). */
  reload(force?: boolean): Promise<boolean>;
  /** The rules in effect (for debugging and tests). */
  current(): RuleSet;
}

/**
 * The event router: assigns routing slips from JsonLogic rules kept in the store. It sees each chat
 * message twice — from auth (`stage: ingress`, usually the enrichment slip) and as the `router` step after
 * enrichment (`stage: enriched`, the reaction slip). Rules reload without a restart when they change.
 */
export function createEventRouter(): EventRouter {
  let ruleSet: RuleSet = { rules: [], rejected: [] };
  let version: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let context: ServiceContext<Config> | undefined;
  let reloading: Promise<boolean> | undefined;

  const load = async (ctx: ServiceContext<Config>, force: boolean): Promise<boolean> => {
    const next = await ctx.store.rulesVersion();
    if (!force && next === version) return false;
    const compiled = compileRules(await ctx.store.listRules());
    for (const bad of compiled.rejected) ctx.logger.warn({ rule: bad.id, error: bad.error }, 'ignoring invalid routing rule');
    ruleSet = compiled;
    version = next;
    ctx.logger.info({ version, rules: compiled.rules.length }, 'routing rules loaded');
    return true;
  };

  const reload = async (force = false): Promise<boolean> => {
    if (!context) return false;
    // One reload at a time: a poll tick and an explicit reload share the same work.
    reloading ??= load(context, force).finally(() => (reloading = undefined));
    return reloading;
  };

  const route = async (envelope: Envelope, stage: Stage, botName: string, logger: Logger, llm: boolean): Promise<HandlerResult> => {
    const match = matchRule(ruleSet, evaluationData(envelope, stage, botName, { llm }), (rule, error) =>
      logger.warn({ rule: rule.id, err: error }, 'routing rule failed to evaluate; treated as no match'),
    );
    const decision = applyDecision(envelope, stage, match);
    if (decision.kind === 'loop') {
      return failed('HANDLER_FAILED', `routing loop: the envelope came back to the router ${decision.visits} times`, { retryable: false, envelope: decision.envelope });
    }
    if (decision.kind === 'handled') return handled(decision.envelope, decision.outcome);
    return continueWith(decision.envelope);
  };

  const definition: EventRouter = {
    name: 'event-router',
    configSchema: ConfigSchema,
    needsStore: true,
    async start(ctx) {
      context = ctx;
      const seeded = await seedRules(ctx.store, ctx.config.RULES_FILE);
      if (seeded > 0) ctx.logger.info({ file: ctx.config.RULES_FILE, rules: seeded }, 'seeded routing rules');
      await load(ctx, true);
      timer = setInterval(() => {
        reload().catch((error) => ctx.logger.warn({ err: error }, 'routing rules reload failed; keeping the current rules'));
      }, ctx.config.RULES_RELOAD_MS);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await reloading?.catch(() => undefined);
      context = undefined;
    },
    consumers: (ctx) => ({
      [Topic.authenticated]: { mode: 'slip', handle: (envelope, hctx) => route(envelope, 'ingress', ctx.config.BOT_NAME, hctx.logger, Boolean(ctx.config.LLM_PROVIDER)) },
      [Topic.router]: { mode: 'step', handle: (envelope, hctx) => route(envelope, 'enriched', ctx.config.BOT_NAME, hctx.logger, Boolean(ctx.config.LLM_PROVIDER)) },
    }),
    reload,
    current: () => ruleSet,
  };
  return definition;
}

export const service = createEventRouter();
export default service;
