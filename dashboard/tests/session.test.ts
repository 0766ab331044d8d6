import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { getBudgets } from '../src/api/endpoints'
import { restore, signIn, signOut, STORAGE_KEY, useSession } from '../src/session'
import { apiError, json, me, mockApi, settle } from './helpers'

const KEY = 'tg-test-key-0123456789'

describe('session store', () => {
  beforeEach(() => {
    signOut()
    sessionStorage.clear()
    localStorage.clear()
  })
  afterEach(() => {
    signOut()
  })

  it('signs in with a key the server accepts, keeping it in sessionStorage only', async () => {
    const setItem = vi.spyOn(Storage.prototype, 'setItem')
    const seen = mockApi({ 'GET /api/v1/me': () => json(me('developer')) })

    const answer = await signIn(`  ${KEY}  `)

    expect(answer.role).toBe('developer')
    expect(seen[0]?.headers.get('Authorization')).toBe(`Bearer ${KEY}`)
    const { state, role, signedIn } = useSession()
    expect(signedIn.value).toBe(true)
    expect(role.value).toBe('developer')
    expect(state.key).toBe(KEY)
    expect(sessionStorage.getItem(STORAGE_KEY)).toBe(KEY)
    expect(localStorage.length).toBe(0)
    for (const call of setItem.mock.contexts) expect(call).toBe(sessionStorage)
    expect(document.cookie).not.toContain(KEY)
  })

  it('sends the session key on later requests', async () => {
    const seen = mockApi({
      'GET /api/v1/me': () => json(me('admin')),
      'GET /api/v1/budgets': () => json({ budgets: [] }),
    })
    await signIn(KEY)
    await getBudgets()
    expect(seen[1]?.headers.get('Authorization')).toBe(`Bearer ${KEY}`)
  })

  it('refuses a key the server does not know and stores nothing', async () => {
    mockApi({ 'GET /api/v1/me': () => apiError(401, 'invalid API key', null, 'invalid_api_key') })
    await expect(signIn(KEY)).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' })
    expect(useSession().signedIn.value).toBe(false)
    expect(sessionStorage.length).toBe(0)
    expect(localStorage.length).toBe(0)
  })

  it('refuses an empty key without calling the server', async () => {
    const seen = mockApi({})
    await expect(signIn('   ')).rejects.toMatchObject({ param: 'key' })
    expect(seen).toHaveLength(0)
  })

  it('signs out: forgets the key and the caller', async () => {
    mockApi({ 'GET /api/v1/me': () => json(me('admin')) })
    await signIn(KEY)
    signOut()
    const { state, signedIn, role } = useSession()
    expect(signedIn.value).toBe(false)
    expect(state.key).toBeNull()
    expect(state.me).toBeNull()
    expect(role.value).toBeNull()
    expect(sessionStorage.getItem(STORAGE_KEY)).toBeNull()
  })

  it('signs out when the server stops accepting the key', async () => {
    let revoked = false
    mockApi({
      'GET /api/v1/me': () => json(me('admin')),
      'GET /api/v1/budgets': () => (revoked ? apiError(401, 'key revoked', null, 'invalid_api_key') : json({ budgets: [] })),
    })
    await signIn(KEY)
    revoked = true
    await expect(getBudgets()).rejects.toMatchObject({ status: 401 })
    await settle()
    expect(useSession().signedIn.value).toBe(false)
    expect(sessionStorage.length).toBe(0)
  })

  it('restores the session of this tab after a reload', async () => {
    sessionStorage.setItem(STORAGE_KEY, KEY)
    mockApi({ 'GET /api/v1/me': () => json(me('superuser')) })
    await restore()
    expect(useSession().role.value).toBe('superuser')
  })

  it('drops a stored key the server refuses on restore', async () => {
    sessionStorage.setItem(STORAGE_KEY, KEY)
    mockApi({ 'GET /api/v1/me': () => apiError(401, 'invalid API key') })
    await restore()
    expect(useSession().signedIn.value).toBe(false)
    expect(sessionStorage.getItem(STORAGE_KEY)).toBeNull()
  })
})
