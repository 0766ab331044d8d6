/**
 * The typed API client: `openapi-fetch` over the generated `paths` (`schema.d.ts`). Every
 * request carries the session's key (`Authorization: Bearer`); errors become [`ApiError`]s
 * with the server's `{"error": {message, type, param, code}}`.
 */
import createClient, { type Middleware } from 'openapi-fetch'
import type { paths } from './schema'

/** An error answered by the API (or the network failing). */
export class ApiError extends Error {
  readonly status: number
  readonly type: string
  /** The field the error is about (`spec.limit`, `model`), when the server names one. */
  readonly param: string | null
  readonly code: string | null

  constructor(status: number, message: string, type = 'api_error', param: string | null = null, code: string | null = null) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.type = type
    this.param = param
    this.code = code
  }

  /** From an error body (`{"error": {...}}`), text, or anything else. */
  static from(status: number, body: unknown): ApiError {
    if (body && typeof body === 'object' && 'error' in body) {
      const e = (body as { error: unknown }).error
      if (e && typeof e === 'object') {
        const o = e as Record<string, unknown>
        const str = (v: unknown) => (typeof v === 'string' ? v : null)
        return new ApiError(status, str(o.message) ?? `HTTP ${status}`, str(o.type) ?? 'api_error', str(o.param), str(o.code))
      }
    }
    if (typeof body === 'string' && body.trim()) return new ApiError(status, body.trim().slice(0, 300))
    return new ApiError(status, `HTTP ${status}`)
  }
}

interface AuthHooks {
  /** The key to send, if signed in. */
  key: () => string | null
  /** Called when a request made with the session's key answers 401. */
  unauthorized: () => void
}

let hooks: AuthHooks = { key: () => null, unauthorized: () => {} }

/** The session module wires the key in here (keeps this module free of UI state). */
export function configureAuth(h: AuthHooks): void {
  hooks = h
}

const auth: Middleware = {
  onRequest({ request }) {
    const key = hooks.key()
    if (key && !request.headers.has('Authorization')) request.headers.set('Authorization', `Bearer ${key}`)
    return request
  },
  onResponse({ request, response }) {
    const key = hooks.key()
    if (response.status === 401 && key && request.headers.get('Authorization') === `Bearer ${key}`) {
      hooks.unauthorized()
    }
    return undefined
  },
}

function origin(): string {
  return typeof window !== 'undefined' && window.location ? window.location.origin : ''
}

/** The client. `fetch` is looked up per call (tests stub it). */
export const api = createClient<paths>({
  baseUrl: origin(),
  fetch: (request) => globalThis.fetch(request),
})
api.use(auth)

type Result = { data?: unknown; error?: unknown; response: Response }

/**
 * The body of a successful answer; throws [`ApiError`] otherwise. Network failures become
 * status-0 errors.
 */
export async function unwrap<R extends Result>(pending: Promise<R>): Promise<Exclude<R['data'], undefined>> {
  let result: R
  try {
    result = await pending
  } catch (e) {
    throw new ApiError(0, `The control plane cannot be reached (${e instanceof Error ? e.message : String(e)})`, 'network_error')
  }
  if (result.error !== undefined || !result.response.ok) {
    throw ApiError.from(result.response.status, result.error)
  }
  return result.data as Exclude<R['data'], undefined>
}

/** Bearer header for a key that is not (yet) the session's. */
export function bearer(key: string): { Authorization: string } {
  return { Authorization: `Bearer ${key}` }
}
