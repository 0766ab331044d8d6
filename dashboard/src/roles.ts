/**
 * What each role is offered. The server enforces everything again; this only keeps the UI
 * from offering what a role may not do.
 */

export type Role = 'admin' | 'superuser' | 'developer'

export const ROLES: readonly Role[] = ['admin', 'superuser', 'developer']

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v)
}

export type PageName =
  | 'overview'
  | 'budgets'
  | 'iptokens'
  | 'safety'
  | 'agents'
  | 'usage'
  | 'requests'
  | 'audit'

export interface PageEntry {
  name: PageName
  path: string
  label: string
  roles: readonly Role[]
}

const everyone = ROLES

/** The pages in navigation order. */
export const PAGES: readonly PageEntry[] = [
  { name: 'overview', path: '/', label: 'Overview', roles: everyone },
  { name: 'budgets', path: '/budgets', label: 'Budgets', roles: everyone },
  { name: 'iptokens', path: '/ip-tokens', label: 'IP tokens', roles: ['admin'] },
  { name: 'safety', path: '/safety', label: 'Safety policies', roles: ['admin'] },
  { name: 'agents', path: '/agents', label: 'Agents & sandboxes', roles: ['admin'] },
  { name: 'usage', path: '/usage', label: 'My usage', roles: everyone },
  { name: 'requests', path: '/requests', label: 'Requests', roles: everyone },
  { name: 'audit', path: '/audit', label: 'Audit log', roles: ['admin'] },
]

/** The navigation entries a role sees, in order. */
export function navFor(role: Role | null | undefined): PageEntry[] {
  if (!role) return []
  return PAGES.filter((p) => p.roles.includes(role))
}

export function mayVisit(role: Role | null | undefined, page: PageName): boolean {
  return navFor(role).some((p) => p.name === page)
}

/** Actions that change something. */
export type Action =
  | 'budgets.write'
  | 'iptokens.write'
  | 'safety.write'
  | 'resources.read'
  | 'audit.read'
  | 'preferences.write'

const ACTIONS: Record<Action, readonly Role[]> = {
  'budgets.write': ['admin'],
  'iptokens.write': ['admin'],
  'safety.write': ['admin'],
  'resources.read': ['admin'],
  'audit.read': ['admin'],
  // Everyone's own preference (PUT /api/v1/me/preferences takes any key).
  'preferences.write': everyone,
}

export function can(role: Role | null | undefined, action: Action): boolean {
  return !!role && ACTIONS[action].includes(role)
}
