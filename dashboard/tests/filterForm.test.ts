import { flushPromises, mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import FilterForm from '../src/components/FilterForm.vue'
import AuditPage from '../src/pages/AuditPage.vue'
import { json, mockApi } from './helpers'

describe('filter form', () => {
  it('holds the filters of its slot and the page size; Apply submits, Clear resets', async () => {
    const w = mount(FilterForm, {
      props: { label: 'Filter things', idPrefix: 'things', pageSize: 50, 'onUpdate:pageSize': (n: number) => w.setProps({ pageSize: n }) },
      slots: { default: '<div class="field"><label for="things-name">Name</label><input id="things-name" /></div>' },
    })
    expect(w.find('form').attributes('aria-label')).toBe('Filter things')
    expect(w.find('#things-name').exists()).toBe(true)
    expect(w.find('label[for="things-page-size"]').text()).toBe('Rows per page')
    const size = w.find('#things-page-size')
    expect((size.element as HTMLSelectElement).value).toBe('50')
    expect(w.findAll('#things-page-size option').map((o) => o.text())).toEqual(['10', '25', '50', '100'])
    await size.setValue('10')
    expect(w.emitted('update:pageSize')).toEqual([[10]])

    await w.find('form').trigger('submit')
    expect(w.emitted('apply')).toHaveLength(1)
    await w.findAll('button').find((b) => b.text() === 'Clear')!.trigger('click')
    expect(w.emitted('reset')).toHaveLength(1)
  })
})

describe('audit page', () => {
  it('filters on the server and pages with the cursor it answered', async () => {
    const entry = (id: number) => ({ id, tsMs: 1_795_800_000_000, actor: 'admin', action: 'create', target: `Budget/b${id}` })
    const seen = mockApi({
      'GET /api/v1/audit': (r) =>
        new URL(r.url).searchParams.get('cursor') === '2'
          ? json({ items: [entry(1)], nextCursor: null })
          : json({ items: [entry(3), entry(2)], nextCursor: '2' }),
    })
    const w = mount(AuditPage)
    await flushPromises()
    const query = () => Object.fromEntries(new URL(seen[seen.length - 1]!.url).searchParams)
    expect(query()).toEqual({ limit: '50' })
    expect(w.findAll('[data-testid="audit"] tbody tr')).toHaveLength(2)

    await w.findAll('button').find((b) => b.text() === 'Next')!.trigger('click')
    await flushPromises()
    expect(query()).toEqual({ limit: '50', cursor: '2' })
    expect(w.find('.pager-page').text()).toBe('Page 2')

    await w.find('#audit-action').setValue('create')
    await w.find('#audit-actor').setValue(' adm ')
    await w.find('#audit-page-size').setValue('25')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(query()).toEqual({ limit: '25', action: 'create', actor: 'adm' })
    expect(w.find('.pager-page').text()).toBe('Page 1')

    await w.findAll('button').find((b) => b.text() === 'Clear')!.trigger('click')
    await flushPromises()
    expect(query()).toEqual({ limit: '25' })
    expect((w.find('#audit-action').element as HTMLInputElement).value).toBe('')
  })
})
