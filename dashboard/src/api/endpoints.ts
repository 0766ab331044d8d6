/** One function per API call the dashboard makes, typed from the generated schema. */
import { api, bearer, unwrap } from './client'
import type { KindPath, Preferences, ResourceBody, ResourceView } from './types'

export const getMe = (key?: string) => unwrap(api.GET('/api/v1/me', key ? { headers: bearer(key) } : {}))

export const putPreferences = (prefs: Preferences) => unwrap(api.PUT('/api/v1/me/preferences', { body: prefs }))

export const getBudgets = () => unwrap(api.GET('/api/v1/budgets'))

export type GroupBy = 'day' | 'hour' | 'model' | 'provider' | 'principal' | 'team'

export interface UsageQuery {
  by?: GroupBy
  /** RFC 3339. */
  from?: string
  to?: string
  /** Only the caller's own usage. */
  me?: boolean
}

export const getUsage = (q: UsageQuery) =>
  unwrap(api.GET('/api/v1/usage', { params: { query: { by: q.by, from: q.from, to: q.to, me: q.me || undefined } } }))

/** Empty filter fields are left out of the query. */
const given = (s: string | null | undefined) => (s && s.trim() ? s.trim() : undefined)

interface PageQuery {
  limit?: number
  cursor?: string | null
}

export interface RequestFilter {
  principal?: string
  model?: string
  outcome?: '' | 'ok' | 'error'
}

export const getRequests = (q: RequestFilter & PageQuery) =>
  unwrap(
    api.GET('/api/v1/usage/requests', {
      params: {
        query: {
          limit: q.limit,
          cursor: q.cursor ?? undefined,
          principal: given(q.principal),
          model: given(q.model),
          outcome: q.outcome || undefined,
        },
      },
    }),
  )

export interface AuditFilter {
  action?: string
  actor?: string
  target?: string
}

export const getAudit = (q: AuditFilter & PageQuery) =>
  unwrap(
    api.GET('/api/v1/audit', {
      params: {
        query: {
          limit: q.limit,
          cursor: q.cursor ?? undefined,
          action: given(q.action),
          actor: given(q.actor),
          target: given(q.target),
        },
      },
    }),
  )

/** The caller's own keys (prefixes only). */
export const getOwnKeys = () => unwrap(api.GET('/api/v1/keys', { params: { query: { limit: 500, mine: true } } }))

/** Every resource of a kind (all pages: the lists are short, and trees need them all). */
export async function listResources(kind: KindPath): Promise<ResourceView[]> {
  const items: ResourceView[] = []
  let cursor: string | undefined
  for (let i = 0; i < 50; i++) {
    const page = await unwrap(api.GET('/api/v1/resources/{kind}', { params: { path: { kind }, query: { limit: 500, cursor } } }))
    items.push(...page.items)
    if (!page.nextCursor) break
    cursor = page.nextCursor
  }
  return items
}

/** A whole resource document of any kind. */
type AnyDocument = ResourceBody

export const createResource = (kind: KindPath, document: AnyDocument) =>
  unwrap(api.POST('/api/v1/resources/{kind}', { params: { path: { kind } }, body: document }))

export const replaceResource = (kind: KindPath, document: AnyDocument) =>
  unwrap(
    api.PUT('/api/v1/resources/{kind}/{namespace}/{name}', {
      params: { path: { kind, namespace: document.metadata.namespace ?? 'default', name: document.metadata.name } },
      body: document,
    }),
  )

/** Replaces the stored resource (`replace`) or creates it. */
export const saveResource = (kind: KindPath, document: AnyDocument, replace: boolean) =>
  replace ? replaceResource(kind, document) : createResource(kind, document)

/** Sets an IPToken's provider key. The API never returns it. */
export const setProviderKey = (namespace: string, name: string, value: string) =>
  unwrap(
    api.PUT('/api/v1/resources/{kind}/{namespace}/{name}/key', {
      params: { path: { kind: 'iptokens', namespace, name } },
      body: { value },
    }),
  )

export const checkSafety = (policy: string, text: string, stage: 'input' | 'output') =>
  unwrap(api.POST('/api/v1/safety/check', { body: { policy, text, stage } }))

export const getViolations = (q: { from?: string; to?: string; limit?: number }) =>
  unwrap(api.GET('/api/v1/safety/violations', { params: { query: q } }))

export const getBreakers = () => unwrap(api.GET('/api/v1/breakers'))
