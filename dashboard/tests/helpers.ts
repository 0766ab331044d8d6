import { vi } from 'vitest'

export type Handler = (request: Request) => Response | Promise<Response>

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

export function apiError(status: number, message: string, param: string | null = null, code = 'invalid_request'): Response {
  return json({ error: { message, type: 'invalid_request_error', param, code } }, status)
}

/**
 * Stubs `fetch` with handlers keyed by `METHOD /path` (no query string). Unknown routes
 * answer 404 `unknown_url`. Returns the requests seen.
 */
export function mockApi(routes: Record<string, Handler>): Request[] {
  const seen: Request[] = []
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: Request | string | URL, init?: RequestInit) => {
      const request = input instanceof Request ? input : new Request(String(input), init)
      seen.push(request.clone())
      const url = new URL(request.url)
      const handler = routes[`${request.method} ${url.pathname}`]
      if (!handler) return apiError(404, `no route ${url.pathname}`, null, 'unknown_url')
      return handler(request)
    }),
  )
  return seen
}

export function me(role: 'admin' | 'superuser' | 'developer', name = role === 'admin' ? 'admin' : 'dana') {
  return {
    principal: { kind: 'developer', name, role },
    role,
    keyId: `key-${name}`,
    teams: [],
    allowedModels: [],
    preferences: { model: null, provider: null },
    budgets: [],
    usageThisMonth: { key: '', requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, costMicros: 0 },
    modelChoices: [{ model: 'mock-1', providers: ['mock'] }],
  }
}

/** Resolves after pending promises and Vue updates. */
export async function settle(times = 5): Promise<void> {
  for (let i = 0; i < times; i++) await new Promise((r) => setTimeout(r, 0))
}
