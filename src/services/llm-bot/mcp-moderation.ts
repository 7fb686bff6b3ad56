/**
 * Moderation tools for the LLM, registered on the built-in platform MCP server: delete a chatter's last
 * message, time a chatter out, shout a channel out. Moderators and up only (each tool's policy in `_meta`,
 * re-checked on every call, and once more by the moderation service). The tools ask the moderation step
 * by publishing a request envelope, so the action is performed where the Twitch connection is, logged in
 * the moderation log and recorded like any other envelope.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { stepTopic } from '../../core/index.js';
import type { Store } from '../../store/types.js';
import { Permission, Role } from '../auth/roles.js';
import { MODERATION_STEP, RESULT_ANNOTATION, createModerationRequest, type ModerationRequest } from '../moderation/requests.js';
import {
  awaitFinalRecord,
  createToolGuard,
  toolText as text,
  type Requester,
  type ToolGroupOptions,
  type ToolPolicy,
} from './mcp-platform.js';

/** Policies of the moderation tools: moderators (with users:moderate) and up. */
export const MODERATION_TOOL_POLICIES = {
  moderation_delete_last_message: { minRole: Role.moderator, permission: Permission.usersModerate },
  moderation_timeout: { minRole: Role.moderator, permission: Permission.usersModerate },
  moderation_shoutout: { minRole: Role.moderator },
} as const satisfies Record<string, ToolPolicy>;

export interface ModerationToolOptions extends ToolGroupOptions {
  store: Pick<Store, 'listEvents' | 'getEvent'>;
}

const login = z.string().min(1).max(64).describe('The login name, with or without @');

/** Adds the moderation tools to the platform server. */
export function registerModerationTools(server: McpServer, options: ModerationToolOptions): void {
  const { guarded, meta } = createToolGuard(MODERATION_TOOL_POLICIES, options.requesterFrom, options.onCall);

  const request = async (action: ModerationRequest, requester: Requester): Promise<CallToolResult> => {
    if (!options.publish) return text({ ok: false, reason: 'moderation is not available in this process' }, true);
    const envelope = createModerationRequest(action, {
      platform: requester.platform,
      channel: requester.channel,
      channelId: requester.channelId,
      by: { id: requester.userId, login: requester.login, role: requester.role },
      via: 'llm',
    });
    await options.publish(stepTopic(MODERATION_STEP), envelope);
    // Wait for the moderation service's answer (its result annotation), so the model says what happened.
    const record = await awaitFinalRecord(options.store, envelope.id, options.confirmWithinMs);
    const result = record?.final?.annotations?.find((annotation) => annotation.kind === RESULT_ANNOTATION);
    if (!record || !result)
      return text({ ok: true, requested: action.action, note: 'the moderation service performs this in a moment and logs it' });
    const answer = (result.payload ?? {}) as { status?: string; message?: string };
    const done = answer.status === 'done';
    return text({ ok: done, action: action.action, status: answer.status, ...(answer.message ? { message: answer.message } : {}) }, !done);
  };

  server.registerTool(
    'moderation_delete_last_message',
    {
      description: "Moderators only: delete a chatter's most recent chat message in this channel.",
      inputSchema: { login },
      annotations: { destructiveHint: true },
      _meta: meta('moderation_delete_last_message'),
    },
    guarded<{ login: string }>('moderation_delete_last_message', async (args, requester) => {
      const name = args.login.replace(/^@/, '').toLowerCase();
      const page = await options.store.listEvents({
        userName: name,
        channel: requester.channel,
        type: 'external.chat.message.v1',
        limit: 1,
      });
      const last = page.items[0]?.ingress?.envelope;
      const messageId = last?.message?.id ?? (typeof last?.payload.messageId === 'string' ? last.payload.messageId : undefined);
      if (!last || !messageId) return text({ ok: false, reason: `no recent message from ${name} in this channel` }, true);
      return request(
        { action: 'delete', messageId, target: { login: name, id: last.user.id }, reason: `asked by ${requester.login}` },
        requester,
      );
    }),
  );

  server.registerTool(
    'moderation_timeout',
    {
      description: 'Moderators only: time a chatter out for some seconds (600 = 10 minutes), with a reason.',
      inputSchema: {
        login,
        seconds: z.number().int().min(1).max(1_209_600).describe('Duration in seconds'),
        reason: z.string().max(300).optional(),
      },
      annotations: { destructiveHint: true },
      _meta: meta('moderation_timeout'),
    },
    guarded<{ login: string; seconds: number; reason?: string }>('moderation_timeout', async (args, requester) =>
      request(
        {
          action: 'timeout',
          target: { login: args.login.replace(/^@/, '').toLowerCase() },
          durationSec: args.seconds,
          reason: args.reason ?? `asked by ${requester.login}`,
        },
        requester,
      ),
    ),
  );

  server.registerTool(
    'moderation_shoutout',
    {
      description:
        'Moderators only: shout out another streamer (a chat message with their last game, and a Twitch shoutout when Twitch allows one).',
      inputSchema: { login },
      _meta: meta('moderation_shoutout'),
    },
    guarded<{ login: string }>('moderation_shoutout', async (args, requester) =>
      request(
        { action: 'shoutout', target: { login: args.login.replace(/^@/, '').toLowerCase() }, reason: `asked by ${requester.login}` },
        requester,
      ),
    ),
  );
}
