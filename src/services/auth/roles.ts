/**
 * Roles and permissions. Pure, shared by auth (which assigns them), the router (`has_role`), the analyzer
 * (spam exemptions) and commands (minimum roles).
 *
 * Order (lowest to highest): viewer < subscriber < vip = trusted < moderator < broadcaster < system.
 * `banned` sits below everything and `trusted` is a stored role (set by moderators) ranked like `vip`.
 */
export const Role = {
  banned: 'banned',
  viewer: 'viewer',
  subscriber: 'subscriber',
  vip: 'vip',
  trusted: 'trusted',
  moderator: 'moderator',
  broadcaster: 'broadcaster',
  system: 'system',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

const RANK: Record<Role, number> = {
  banned: -1,
  viewer: 0,
  subscriber: 1,
  vip: 2,
  trusted: 2,
  moderator: 3,
  broadcaster: 4,
  system: 5,
};

/** Preference when two roles rank the same: the more specific one first. */
const PREFERENCE: Role[] = [Role.system, Role.broadcaster, Role.moderator, Role.trusted, Role.vip, Role.subscriber, Role.viewer];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && Object.hasOwn(RANK, value);
}

/** Rank of a role; unknown roles rank as viewers. */
export function roleRank(role: string | undefined): number {
  return isRole(role) ? RANK[role] : RANK.viewer;
}

/** Whether `role` is at least `minimum` in the role order. `banned` never satisfies a minimum above banned. */
export function roleAtLeast(role: string | undefined, minimum: string): boolean {
  if (role === Role.banned) return minimum === Role.banned;
  return roleRank(role) >= roleRank(minimum);
}

/** The highest of several roles (unknown names ignored); `viewer` when none is known. */
export function highestRole(roles: Iterable<string>): Role {
  const known = new Set([...roles].filter(isRole));
  let best: Role = Role.viewer;
  // PREFERENCE is highest first, so on equal rank the more specific role (trusted over vip) wins.
  for (const role of PREFERENCE) {
    if (known.has(role) && RANK[role] > RANK[best]) best = role;
  }
  return best;
}

export const Permission = {
  chat: 'chat',
  commandsUse: 'commands:use',
  linksPost: 'links:post',
  spamExempt: 'spam:exempt',
  commandsManage: 'commands:manage',
  rulesRead: 'rules:read',
  rulesWrite: 'rules:write',
  usersModerate: 'users:moderate',
  usersRoles: 'users:roles',
  dlqReplay: 'dlq:replay',
  admin: 'admin',
} as const;
export type Permission = (typeof Permission)[keyof typeof Permission];

export const ALL_PERMISSIONS: readonly Permission[] = Object.values(Permission);

const P = Permission;
const VIEWER: Permission[] = [P.chat, P.commandsUse];
const MODERATOR: Permission[] = [...VIEWER, P.linksPost, P.spamExempt, P.commandsManage, P.rulesRead, P.usersModerate, P.dlqReplay];

/** Permissions granted by each role. */
export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  banned: [],
  viewer: VIEWER,
  subscriber: VIEWER,
  vip: [...VIEWER, P.linksPost],
  trusted: [...VIEWER, P.linksPost, P.spamExempt],
  moderator: MODERATOR,
  broadcaster: ALL_PERMISSIONS,
  system: ALL_PERMISSIONS,
};

/** Union of the permissions of every role held; `banned` anywhere means none. */
export function permissionsFor(roles: Iterable<string>): Permission[] {
  const list = [...roles];
  if (list.includes(Role.banned)) return [];
  const granted = new Set<Permission>();
  for (const role of list) if (isRole(role)) for (const permission of ROLE_PERMISSIONS[role]) granted.add(permission);
  if (granted.size === 0) for (const permission of ROLE_PERMISSIONS.viewer) granted.add(permission);
  return ALL_PERMISSIONS.filter((permission) => granted.has(permission));
}
