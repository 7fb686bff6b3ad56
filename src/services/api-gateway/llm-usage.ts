import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BitBratError } from '../../core/index.js';
import type { ServiceContext } from '../../runtime/service.js';
import { readUsage, type UsageCaps } from '../llm-bot/usage.js';

const UsageQuery = z.object({ top: z.coerce.number().int().min(1).max(100).default(10) }).strict();

/**
 * `GET /api/llm/usage?top=10`: today's LLM spend (tokens, dollars at the configured prices), the top users
 * and the caps. The gateway reads the same LLM_* caps env as llm-bot (UsageCapsSchema), so both agree.
 */
export function registerLlmUsage(scope: FastifyInstance, ctx: ServiceContext<UsageCaps>): void {
  scope.get('/api/llm/usage', async (request) => {
    const parsed = UsageQuery.safeParse(request.query);
    if (!parsed.success)
      throw new BitBratError(
        'BAD_REQUEST',
        `invalid query: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || 'query'}: ${issue.message}`).join('; ')}`,
      );
    return await readUsage(ctx.store, ctx.config, parsed.data.top);
  });
}
