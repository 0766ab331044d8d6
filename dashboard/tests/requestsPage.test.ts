import { flushPromises, mount } from '@vue/test-utils'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import RequestsPage from '../src/pages/RequestsPage.vue'
import { signIn, signOut } from '../src/session'
import { json, me, mockApi } from './helpers'

function row(id: number, status = 200) {
  return {
    id,
    requestId: `req-${id}`,
    tsMs: 1_795_800_000_000 + id,
    principalKind: 'developer',
    principalName: 'dana',
    endpoint: 'chat.completions',
    model: 'mock-1',
    provider: 'mock',
    stream: false,
    inputTokens: 1,
    outputTokens: 5,
    latencyMs: 3,
    status,
    costMicros: 5_000_000,
  }
}

describe('requests page', () => {
  beforeEach(() => signOut())
  afterEach(() => signOut())

  it('pages with the cursor the server answered, and filters on the server', async () => {
    const seen = mockApi({
      'GET /api/v1/me': () => json(me('admin')),
      'GET /api/v1/usage/requests': (r) => {
        const cursor = new URL(r.url).searchParams.get('cursor')
        return cursor === 'req-2'
          ? json({ items: [row(1, 429)], nextCursor: null })
          : json({ items: [row(3), row(2)], nextCursor: 'req-2' })
      },
    })
    await signIn('tg-key')
    const w = mount(RequestsPage, { global: { stubs: { RouterLink: true } } })
    await flushPromises()
    const query = () => new URL(seen[seen.length - 1]!.url).searchParams

    expect(w.findAll('tbody tr')).toHaveLength(2)
    expect(query().get('cursor')).toBeNull()
    expect(query().get('limit')).toBe('50')

    await w.findAll('button').find((b) => b.text() === 'Next')!.trigger('click')
    await flushPromises()
    expect(query().get('cursor')).toBe('req-2')
    expect(w.findAll('tbody tr')).toHaveLength(1)
    expect(w.find('.pager-page').text()).toBe('Page 2')
    expect(w.findAll('button').find((b) => b.text() === 'Next')!.attributes('disabled')).toBeDefined()

    await w.findAll('button').find((b) => b.text() === 'Previous')!.trigger('click')
    await flushPromises()
    expect(query().get('cursor')).toBeNull()

    await w.find('#req-outcome').setValue('error')
    await w.find('#req-model').setValue(' mock-1 ')
    await w.find('#req-page-size').setValue('10')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(Object.fromEntries(query())).toEqual({ limit: '10', outcome: 'error', model: 'mock-1' })
    expect(w.find('.pager-page').text()).toBe('Page 1')
  })

  it('offers no principal filter to a developer (they see only their own requests)', async () => {
    mockApi({
      'GET /api/v1/me': () => json(me('developer')),
      'GET /api/v1/usage/requests': () => json({ items: [], nextCursor: null }),
    })
    await signIn('tg-key')
    const w = mount(RequestsPage)
    await flushPromises()
    expect(w.find('#req-principal').exists()).toBe(false)
    expect(w.text()).toContain('No requests match.')
  })
})
