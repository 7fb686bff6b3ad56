import type { Envelope } from '../../core/index.js';
import { Role, highestRole, isRole, permissionsFor, type Permission } from './roles.js';

/** Badge names as Twitch sends them, mapped to platform roles. */
const BADGE_ROLES: Record<string, Role> = {
  broadcaster: Role.broadcaster,
  moderator: Role.moderator,
  lead_moderator: Role.moderator,
  vip: Role.vip,
  subscriber: Role.subscriber,
  founder: Role.subscriber,
};

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/**
 * Badge names from the shapes a normalizer may produce: `['subscriber']`, `{ subscriber: '12' }`,
 * a `Map`, or the IRC tag string `broadcaster/1,subscriber/12`.
 */
export function badgeNames(badges: unknown): string[] {
  if (!badges) return [];
  if (typeof badges === 'string')
    return badges
      .split(',')
      .map((part) => part.split('/')[0]!.trim().toLowerCase())
      .filter(Boolean);
  if (Array.isArray(badges)) {
    return badges
      .map((badge) => (typeof badge === 'string' ? badge : (asRecord(badge)?.name ?? asRecord(badge)?.id ?? asRecord(badge)?.set_id)))
      .filter((name): name is string => typeof name === 'string')
      .map((name) => name.split('/')[0]!.toLowerCase());
  }
  if (badges instanceof Map) return [...badges.keys()].map((key) => String(key).toLowerCase());
  const record = asRecord(badges);
  return record ? Object.keys(record).map((key) => key.toLowerCase()) : [];
}

const normalizeLogin = (value: unknown) => (typeof value === 'string' ? value.trim().replace(/^#/, '').toLowerCase() : '');

/** The role Twitch-style badges and flags give a chat user (never trusts an incoming `user.role`). */
export function badgeRole(envelope: Envelope): Role {
  const payload = envelope.payload;
  const user = envelope.user as Record<string, unknown>;
  const tags = asRecord(asRecord(payload.raw)?.tags);
  const names = new Set([...badgeNames(payload.badges), ...badgeNames(user.badges), ...badgeNames(tags?.badges)]);
  const roles: Role[] = [];
  for (const name of names) {
    const role = BADGE_ROLES[name];
    if (role) roles.push(role);
  }
  const flag = (key: string) => payload[key] === true || user[key] === true;
  if (flag('isBroadcaster')) roles.push(Role.broadcaster);
  if (flag('isMod') || flag('isModerator')) roles.push(Role.moderator);
  if (flag('isVip')) roles.push(Role.vip);
  if (flag('isSubscriber') || flag('isSub') || flag('isFounder')) roles.push(Role.subscriber);
  // The channel owner is the broadcaster even when the badge is missing.
  const channelId = envelope.source.channelId;
  if (
    (channelId && envelope.user.id === channelId) ||
    (normalizeLogin(envelope.source.channel) !== '' && normalizeLogin(envelope.user.name) === normalizeLogin(envelope.source.channel))
  ) {
    roles.push(Role.broadcaster);
  }
  return highestRole(roles);
}

/**
 * A role asserted by a trusted test console: only envelopes from the api-gateway (`source.platform`
 * `api`) carrying `payload.trustedRole` (the role name, or `true` to accept `user.role`) are believed.
 */
export function trustedApiRole(envelope: Envelope): Role | undefined {
  if (envelope.source.platform !== 'api') return undefined;
  const trusted = envelope.payload.trustedRole;
  if (isRole(trusted) && trusted !== Role.system) return trusted;
  if (trusted === true && isRole(envelope.user.role) && envelope.user.role !== Role.system) return envelope.user.role;
  return undefined;
}

export interface ResolvedIdentity {
  role: Role;
  /** Every role held (platform + stored), for `has_role('trusted')` and exemptions. */
  roles: string[];
  permissions: Permission[];
  banned: boolean;
}

/**
 * Combines the platform role with roles stored by moderators: `banned` wins over everything; otherwise the
 * highest role held applies (a stored `moderator` lifts a viewer, a stored `trusted` does not demote a mod).
 */
export function resolveIdentity(platformRole: Role, storedRoles: readonly string[] = []): ResolvedIdentity {
  // A stored role can never make a person `system`.
  const stored = storedRoles.map((role) => role.toLowerCase()).filter((role) => role !== Role.system);
  const roles = [...new Set([platformRole, ...stored])];
  if (roles.includes(Role.banned)) return { role: Role.banned, roles, permissions: [], banned: true };
  const role = highestRole(roles);
  return { role, roles, permissions: permissionsFor(roles), banned: false };
}
