import { flushPromises, mount } from '@vue/test-utils'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createMemoryHistory } from 'vue-router'
import App from '../src/App.vue'
import { can, navFor, type Role } from '../src/roles'
import { makeRouter } from '../src/router'
import { signIn, signOut } from '../src/session'
import { json, me, mockApi } from './helpers'

const EXPECTED: Record<Role, string[]> = {
  admin: ['Overview', 'Budgets', 'IP tokens', 'Safety policies', 'Agents & sandboxes', 'My usage', 'Requests', 'Audit log'],
  superuser: ['Overview', 'Budgets', 'My usage', 'Requests'],
  developer: ['Overview', 'Budgets', 'My usage', 'Requests'],
}

const emptyUsage = { groups: [], total: { key: '', requests: 0, errors: 0, inputTokens: 0, outputTokens: 0, costMicros: 0 } }

async function mountAs(role: Role, path = '/budgets') {
  mockApi({
    'GET /api/v1/me': () => json(me(role)),
    'GET /api/v1/budgets': () => json({ budgets: [] }),
    'GET /api/v1/resources/budgets': () => json({ items: [], nextCursor: null }),
    'GET /api/v1/usage': () => json(emptyUsage),
    'GET /api/v1/safety/violations': () => json({ items: [], byHour: [], total: 0 }),
    'GET /api/v1/breakers': () => json({ items: [] }),
  })
  await signIn('tg-key')
  const router = makeRouter(createMemoryHistory())
  await router.push(path)
  await router.isReady()
  const w = mount(App, { global: { plugins: [router] } })
  await flushPromises()
  return { w, router }
}

describe('role-based navigation', () => {
  beforeEach(() => signOut())
  afterEach(() => signOut())

  it.each(['admin', 'superuser', 'developer'] as const)('offers %s exactly their pages', async (role) => {
    expect(navFor(role).map((p) => p.label)).toEqual(EXPECTED[role])
    const { w } = await mountAs(role)
    expect(w.findAll('nav[aria-label="Main"] a').map((a) => a.text())).toEqual(EXPECTED[role])
    expect(w.find('[data-testid="role"]').text().toLowerCase()).toBe(role)
  })

  it('offers "New budget" to admins only', async () => {
    for (const role of ['admin', 'superuser', 'developer'] as const) {
      const { w } = await mountAs(role)
      const labels = w.findAll('button').map((b) => b.text())
      expect(labels.includes('New budget')).toBe(role === 'admin')
      w.unmount()
      signOut()
    }
  })

  it('sends a role away from pages it is not offered', async () => {
    const { router } = await mountAs('developer', '/ip-tokens')
    expect(router.currentRoute.value.name).toBe('overview')
    await router.push('/audit')
    expect(router.currentRoute.value.name).toBe('overview')
    await router.push('/usage')
    expect(router.currentRoute.value.name).toBe('usage')
  })

  it('asks for a key first, then returns to the page asked for', async () => {
    const router = makeRouter(createMemoryHistory())
    await router.push('/requests')
    expect(router.currentRoute.value.name).toBe('sign-in')
    expect(router.currentRoute.value.query.redirect).toBe('/requests')
  })

  it('knows which actions each role has', () => {
    expect(can('admin', 'budgets.write')).toBe(true)
    expect(can('superuser', 'budgets.write')).toBe(false)
    expect(can('developer', 'iptokens.write')).toBe(false)
    expect(can('developer', 'preferences.write')).toBe(true)
    expect(can(null, 'preferences.write')).toBe(false)
  })
})
