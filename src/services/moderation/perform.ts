/**
 * Performs a moderator's request (an LLM tool call, an API undo, `!so` in chat) over the gateway and logs
 * it. Whoever asks must be a moderator of the channel (checked again here, whatever the caller checked).
 */
import type { Envelope } from '../../core/index.js';
import type { ActionOutcome, ModerationGateway } from '../../platforms/twitch/moderation.js';
import type { Store } from '../../store/index.js';
import { Role, roleAtLeast } from '../auth/roles.js';
import { appendLog, getLogEntry, markUndone, type ModerationLogEntry } from './records.js';
import type { ModerationRequest } from './requests.js';

export interface PerformDeps {
  store: Store;
  gateway: ModerationGateway;
  now: () => number;
  logger: { info: (obj: unknown, msg?: string) => void; warn: (obj: unknown, msg?: string) => void };
}

export interface PerformResult {
  status: ActionOutcome['status'] | 'refused';
  /** For chat or the caller. */
  message: string;
  error?: string;
  logId?: string;
  outcome?: ActionOutcome;
}

const DONE_WORDS: Record<string, string> = {
  delete: 'deleted the message',
  timeout: 'timed out',
  ban: 'banned',
  unban: 'unbanned',
  untimeout: 'lifted the timeout of',
};

/** Runs one request in the envelope's channel; never throws for Twitch's refusals (they are statuses). */
export async function runModerationRequest(
  deps: PerformDeps,
  request: ModerationRequest,
  where: { envelope: Envelope; channel: string; by: string },
): Promise<PerformResult> {
  const { store, gateway, now } = deps;
  const { envelope, channel, by } = where;
  if (!roleAtLeast(envelope.user.role, Role.moderator))
    return { status: 'refused', message: `only moderators may ${request.action}`, error: `role ${envelope.user.role} is not a moderator` };
  const at = () => new Date(now()).toISOString();
  const login = envelope.source.channel.replace(/^#/, '').toLowerCase();
  let broadcaster = { id: envelope.source.channelId ?? '', login };
  if (!broadcaster.id) {
    const found = await gateway.lookupChannel(login);
    if (!found) return { status: 'failed', message: `#${login} is not a Twitch channel the bot can find`, error: 'unknown channel' };
    broadcaster = { id: found.id, login };
  }
  const base = { channel, at: at(), by, reason: request.reason || `requested by ${by}`, correlationId: envelope.correlationId };
  /** Logs the action with how it went; the result carries `message`, the error when any, and the log id. */
  const settle = async (
    outcome: ActionOutcome,
    entry: Pick<ModerationLogEntry, 'action' | 'user'> & Partial<ModerationLogEntry>,
    message: string,
  ): Promise<PerformResult> => {
    const error = outcome.error ? { error: outcome.error } : {};
    const { action, ...rest } = entry;
    const logged = await appendLog(store, { ...base, action, status: outcome.status, ...error, ...rest });
    return { status: outcome.status, message, ...error, logId: logged.id, outcome };
  };

  if (request.action === 'undo') {
    const entry = await getLogEntry(store, request.logId);
    if (!entry || entry.channel !== channel)
      return { status: 'failed', message: `no moderation action ${request.logId} in this channel`, error: 'not found' };
    if (!entry.undo) return { status: 'failed', message: `a ${entry.action} cannot be undone`, error: 'not undoable' };
    if (entry.undone?.status === 'done') return { status: 'done', message: `already undone by ${entry.undone.by}`, logId: entry.id };
    const outcome = await gateway.unban(broadcaster, entry.user);
    await markUndone(store, entry, { at: at(), by, status: outcome.status, ...(outcome.error ? { error: outcome.error } : {}) });
    return await settle(
      outcome,
      { action: entry.undo, user: entry.user, detail: `undo of ${entry.id}` },
      outcome.status === 'done' ? `${DONE_WORDS[entry.undo]} ${entry.user.login}` : `could not undo: ${outcome.error}`,
    );
  }

  if (request.action === 'delete') {
    const outcome = await gateway.deleteMessage(broadcaster, request.messageId);
    const user = request.target
      ? { id: request.target.id ?? '', login: request.target.login.replace(/^@/, '').toLowerCase() }
      : { id: '', login: '' };
    return await settle(
      outcome,
      { action: 'delete', user, messageId: request.messageId },
      outcome.status === 'done' ? 'deleted the message' : `could not delete: ${outcome.error}`,
    );
  }

  const targetLogin = request.target.login.replace(/^@/, '').toLowerCase();
  const target = await gateway.lookupChannel(targetLogin);
  if (!target) return { status: 'failed', message: `there is no Twitch user ${targetLogin}`, error: 'unknown user' };
  const user = { id: target.id, login: target.login };

  if (request.action === 'shoutout') {
    const game = target.gameName ? ` They were last playing ${target.gameName}.` : '';
    const text = `Go check out ${target.displayName} at https://twitch.tv/${target.login} !${game}`;
    const outcome = await gateway.shoutout(broadcaster, user);
    return await settle(outcome, { action: 'shoutout', user }, text);
  }

  const outcome =
    request.action === 'timeout'
      ? await gateway.timeout(broadcaster, user, request.durationSec, base.reason)
      : await gateway.ban(broadcaster, user, base.reason);
  const result = await settle(
    outcome,
    {
      action: request.action,
      user,
      ...(request.action === 'timeout' ? { durationSec: request.durationSec, undo: 'untimeout' as const } : { undo: 'unban' as const }),
    },
    outcome.status === 'done'
      ? `${DONE_WORDS[request.action]} ${user.login}`
      : `could not ${request.action} ${user.login}: ${outcome.error}`,
  );
  deps.logger.info({ channel, action: request.action, user: user.login, by, status: outcome.status }, 'moderation request');
  return result;
}
