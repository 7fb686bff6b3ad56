import { z } from 'zod';
import { createReply, messageText, noReplyNote, stepTopic, withAnnotations, type Envelope } from '../../core/index.js';
import { env } from '../../runtime/config.js';
import { continueWith, defineService, skip, type HandlerResult, type ServiceDefinition } from '../../runtime/service.js';
import type { CommandRecord } from '../../store/index.js';
import { Permission, Role, permissionsFor, roleAtLeast } from '../auth/roles.js';
import { parseCommand } from '../query-analyzer/analyze.js';
import { findStreamSource } from '../stream-source.js';
import { BUILTIN_COMMANDS, MANAGE_COMMANDS, findCommand, isBuiltin, manageCommand, parseManageArgs, type ManageAction } from './manage.js';
import { MAX_REPLY_LENGTH, needsStream, renderTemplate, streamInfo } from './template.js';
import { sceneCommand } from './scene.js';
import { toolkitCommand } from './toolkit.js';
import { channelKey as toolkitChannelKey, readTemplateCounters } from '../moderation/records.js';
import { isBitBratError } from '../../core/index.js';

export * from './manage.js';
export * from './template.js';

const SERVICE = 'commands';

const ConfigSchema = z.object({
  /** Command prefix (shared with the query analyzer). */
  COMMAND_PREFIX: env.string().transform((value) => value ?? '!'),
});
type Config = z.infer<typeof ConfigSchema>;

/** How long one user waits between "you can't do that" replies (ms), so refusals cannot flood chat. */
const REFUSAL_COOLDOWN_MS = 10_000;

const MANAGE_ACTIONS: Record<string, ManageAction> = { addcom: 'add', editcom: 'edit', delcom: 'delete' };

const ROLE_LABEL: Record<string, string> = {
  viewer: 'everyone',
  subscriber: 'subscribers',
  vip: 'VIPs',
  trusted: 'trusted users',
  moderator: 'moderators',
  broadcaster: 'the broadcaster',
};

function userName(envelope: Envelope): string {
  return envelope.user.displayName || envelope.user.name;
}

/**
 * Chat commands: built-ins (`!help`/`!commands`, `!ping`, `!uptime`, `!addcom`/`!editcom`/`!delcom`) and
 * custom commands from the `commands` table (templates, aliases, minimum role, cooldowns, use counters).
 * A reply becomes a text candidate; unknown commands are skipped without a reply. Moderators and the
 * broadcaster are not held by cooldowns.
 */
export function createCommandsService(): ServiceDefinition<Config> {
  return defineService<Config>({
    name: SERVICE,
    configSchema: ConfigSchema,
    needsStore: true,
    setup: (ctx) => ({
      consumers: {
        [stepTopic(SERVICE)]: {
          mode: 'step',
          async handle(envelope, handler): Promise<HandlerResult> {
            const store = ctx.store;
            const prefix = ctx.config.COMMAND_PREFIX;
            const text = messageText(envelope) ?? '';
            const parsed = envelope.message?.command
              ? { name: envelope.message.command.toLowerCase(), args: envelope.message.args ?? [] }
              : parseCommand(text, prefix);
            // Each way of ending without a reply says why, for a sender waiting on it (the console's noreply).
            const quiet = (code: string, reason: string): HandlerResult =>
              skip(withAnnotations(envelope, noReplyNote(SERVICE, code, reason)));
            if (!parsed) return quiet('not-a-command', `not a command (commands start with ${prefix})`);

            const role = envelope.user.role;
            const permissions = envelope.user.permissions ?? permissionsFor([role]);
            const channelKey = `${envelope.source.platform}:${envelope.source.channel.toLowerCase()}`;
            const reply = (message: string): HandlerResult =>
              continueWith({
                ...envelope,
                candidates: [...(envelope.candidates ?? []), createReply(SERVICE, message, { command: parsed.name })],
              });
            const refuse = async (message: string): Promise<HandlerResult> =>
              (await store.claimKey('cooldown', `refusal:${channelKey}:${envelope.user.id}`, REFUSAL_COOLDOWN_MS))
                ? reply(message)
                : quiet('refused', `refused (${message.replace(/^@\S+\s+/, '')}); told recently, so not again`);

            const toolkitChannel = toolkitChannelKey(envelope.source.platform, envelope.source.channel);
            try {
              const answer = await toolkitCommand({
                store,
                channel: toolkitChannel,
                head: text.trim().split(/\s+/)[0] ?? '',
                name: parsed.name,
                args: parsed.args,
                user: { id: envelope.user.id, login: envelope.user.name.toLowerCase(), display: userName(envelope), role },
                prefix,
                game: parsed.name === 'quote' ? streamInfo(await findStreamSource(store, envelope.source)).game : undefined,
              });
              if (answer === null) return skip();
              if (answer !== undefined) return reply(answer);
            } catch (error) {
              // A refusal from the toolkit's records (a giveaway already open, bad input) is told to the moderator.
              if (isBitBratError(error) && (error.code === 'BAD_REQUEST' || error.code === 'NOT_FOUND'))
                return reply(`@${userName(envelope)} ${error.message}`);
              throw error;
            }

            if (isBuiltin(parsed.name)) {
              switch (parsed.name) {
                case 'ping':
                  return reply('pong');
                case 'uptime': {
                  const info = streamInfo(await findStreamSource(store, envelope.source));
                  return reply(info.online ? `The stream has been live for ${info.uptime}.` : 'The stream is offline.');
                }
                case 'scene': {
                  const outcome = sceneCommand(envelope, parsed.args, { prefix, stepIndex: handler.stepIndex, source: SERVICE });
                  return outcome.kind === 'act'
                    ? continueWith(outcome.envelope)
                    : outcome.kind === 'refuse'
                      ? refuse(outcome.message)
                      : reply(outcome.message);
                }
                case 'help':
                case 'commands': {
                  const builtins = BUILTIN_COMMANDS.filter(
                    (name) => !MANAGE_COMMANDS.has(name) || permissions.includes(Permission.commandsManage),
                  );
                  const custom = (await store.listCommands())
                    .filter((command) => command.enabled && roleAtLeast(role, command.minRole))
                    .map((command) => command.name);
                  let list = [...builtins, ...custom].map((name) => `${prefix}${name}`).join(' ');
                  if (list.length > MAX_REPLY_LENGTH - 20) list = `${list.slice(0, MAX_REPLY_LENGTH - 21)}…`;
                  return reply(`Commands: ${list}`);
                }
                default: {
                  if (!permissions.includes(Permission.commandsManage))
                    return refuse(`@${userName(envelope)} only moderators can manage commands.`);
                  const input = parseManageArgs(parsed.args, prefix);
                  if ('error' in input) return reply(`@${userName(envelope)} ${input.error}`);
                  const result = await manageCommand(store, MANAGE_ACTIONS[parsed.name]!, {
                    ...input.input,
                    createdBy: envelope.user.name,
                  });
                  return reply(result.ok ? result.message : `@${userName(envelope)} ${result.message}`);
                }
              }
            }

            const command: CommandRecord | undefined = await findCommand(store, parsed.name);
            if (!command) return quiet('unknown-command', `unknown command ${prefix}${parsed.name}`);
            if (!command.enabled) return quiet('disabled-command', `${prefix}${command.name} is disabled`);
            if (!roleAtLeast(role, command.minRole)) {
              return refuse(
                `@${userName(envelope)} ${prefix}${command.name} is for ${ROLE_LABEL[command.minRole] ?? command.minRole} only.`,
              );
            }
            // Claims live in the store so cooldowns hold across instances; the user's claim goes first so a
            // channel-wide cooldown is not spent on a user who is still cooling down.
            if (!roleAtLeast(role, Role.moderator)) {
              if (
                command.userCooldownSec > 0 &&
                !(await store.claimKey(
                  'cooldown',
                  `user:${channelKey}:${command.name}:${envelope.user.id}`,
                  command.userCooldownSec * 1000,
                ))
              ) {
                return quiet('cooldown', `${prefix}${command.name} is on cooldown (${command.userCooldownSec} s per user)`);
              }
              if (
                command.cooldownSec > 0 &&
                !(await store.claimKey('cooldown', `command:${channelKey}:${command.name}`, command.cooldownSec * 1000))
              ) {
                return quiet('cooldown', `${prefix}${command.name} is on cooldown (${command.cooldownSec} s for the channel)`);
              }
            }
            const count = await store.incrementCommandUse(command.name);
            const stream = needsStream(command.response) ? streamInfo(await findStreamSource(store, envelope.source)) : undefined;
            const counters = /\{count:/i.test(command.response)
              ? await readTemplateCounters(store, toolkitChannel, command.response)
              : undefined;
            const message = renderTemplate(command.response, {
              user: userName(envelope),
              channel: envelope.source.channel.replace(/^#/, ''),
              args: parsed.args,
              count,
              stream,
              counters,
            });
            return message ? reply(message) : quiet('empty-response', `${prefix}${command.name} has an empty response`);
          },
        },
      },
    }),
  });
}

export const service = createCommandsService();
export default service;
