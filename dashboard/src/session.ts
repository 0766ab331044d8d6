/**
 * The session: the key (kept in sessionStorage only — gone when the tab closes, never in
 * localStorage or a cookie) and the caller's `/api/v1/me`.
 */
import { computed, reactive, readonly } from 'vue'
import { ApiError, configureAuth } from './api/client'
import { getMe } from './api/endpoints'
import type { Me } from './api/types'
import { isRole, type Role } from './roles'

export const STORAGE_KEY = 'tollgate.key'

interface SessionState {
  key: string | null
  me: Me | null
  /** Restoring a stored key at start. */
  restoring: boolean
}

const state = reactive<SessionState>({ key: null, me: null, restoring: false })

function storage(): Storage | null {
  try {
    return typeof window !== 'undefined' ? window.sessionStorage : null
  } catch {
    return null
  }
}

const listeners = new Set<() => void>()

/** Runs `fn` whenever the session ends (sign out, or the server refusing the key). */
export function onSignedOut(fn: () => void): () => void {
  listeners.add(fn)
  return () => listeners.delete(fn)
}

configureAuth({
  key: () => state.key,
  unauthorized: () => signOut(),
})

/**
 * Checks `key` against `/api/v1/me`; on success keeps it for this tab. Throws the server's
 * error (401 for an unknown, revoked or expired key).
 */
export async function signIn(key: string): Promise<Me> {
  const trimmed = key.trim()
  if (!trimmed) throw new ApiError(400, 'Enter a key', 'invalid_request_error', 'key')
  const me = await getMe(trimmed)
  state.key = trimmed
  state.me = me
  storage()?.setItem(STORAGE_KEY, trimmed)
  return me
}

/** Forgets the key and the caller. */
export function signOut(): void {
  const was = state.key !== null
  state.key = null
  state.me = null
  storage()?.removeItem(STORAGE_KEY)
  if (was) listeners.forEach((fn) => fn())
}

/** Signs in again with the key stored for this tab, if any (after a reload). */
export async function restore(): Promise<void> {
  const stored = storage()?.getItem(STORAGE_KEY)
  if (!stored || state.key) return
  state.restoring = true
  try {
    await signIn(stored)
  } catch (e) {
    // A key the server no longer takes is dropped; a network failure keeps it for a retry.
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) storage()?.removeItem(STORAGE_KEY)
  } finally {
    state.restoring = false
  }
}

/** Reloads `/api/v1/me` (after changing preferences, say). */
export async function refreshMe(): Promise<void> {
  if (!state.key) return
  state.me = await getMe()
}

const role = computed<Role | null>(() => {
  const r = state.me?.role
  return isRole(r) ? r : null
})

export function useSession() {
  return {
    state: readonly(state),
    role,
    signedIn: computed(() => state.key !== null && state.me !== null),
    signIn,
    signOut,
    refreshMe,
  }
}
