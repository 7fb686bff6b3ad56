import { z } from 'zod';
import { Topic, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import type { Logger } from '../../runtime/logger.js';
import { knownSteps } from '../../runtime/manifest.js';
import { continueWith, defineService, failed, handled, type HandlerResult, type ServiceInstance } from '../../runtime/service.js';
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

/** The event router's instance: its consumers, plus a way to look at and reload its rules. */
export interface EventRouterInstance extends ServiceInstance {
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
export const service = defineService<Config>({
  name: 'event-router',
  configSchema: ConfigSchema,
  needsStore: true,
  setup(ctx): EventRouterInstance {
    let ruleSet: RuleSet = { rules: [], rejected: [] };
    let version: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    let started = false;
    let reloading: Promise<boolean> | undefined;
    const llm = Boolean(ctx.config.LLM_PROVIDER);

    const load = async (force: boolean): Promise<boolean> => {
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
      if (!started) return false;
      // One reload at a time: a poll tick and an explicit reload share the same work.
      reloading ??= load(force).finally(() => (reloading = undefined));
      return reloading;
    };

    const route = async (envelope: Envelope, stage: Stage, logger: Logger): Promise<HandlerResult> => {
      const match = matchRule(ruleSet, evaluationData(envelope, stage, ctx.config.BOT_NAME, { llm }), (rule, error) =>
        logger.warn({ rule: rule.id, err: error }, 'routing rule failed to evaluate; treated as no match'),
      );
      const decision = applyDecision(envelope, stage, match);
      if (decision.kind === 'loop') {
        return failed('HANDLER_FAILED', `routing loop: the envelope came back to the router ${decision.visits} times`, {
          retryable: false,
          envelope: decision.envelope,
        });
      }
      if (decision.kind === 'handled') return handled(decision.envelope, decision.outcome);
      return continueWith(decision.envelope);
    };

    return {
      consumers: {
        [Topic.authenticated]: { mode: 'slip', handle: (envelope, hctx) => route(envelope, 'ingress', hctx.logger) },
        [Topic.router]: { mode: 'step', handle: (envelope, hctx) => route(envelope, 'enriched', hctx.logger) },
      },
      async start() {
        const seeded = await seedRules(ctx.store, ctx.config.RULES_FILE, { logger: ctx.logger, knownSteps: knownSteps() });
        if (seeded > 0) ctx.logger.info({ file: ctx.config.RULES_FILE, rules: seeded }, 'seeded routing rules');
        await load(true);
        started = true;
        timer = setInterval(() => {
          reload().catch((error) => ctx.logger.warn({ err: error }, 'routing rules reload failed; keeping the current rules'));
        }, ctx.config.RULES_RELOAD_MS);
        timer.unref();
      },
      async stop() {
        clearInterval(timer);
        started = false;
        await reloading?.catch(() => undefined);
      },
      reload,
      current: () => ruleSet,
    };
  },
});

export default service;
