import { mount } from '@vue/test-utils'
import { describe, expect, it, vi } from 'vitest'
import { ref } from 'vue'
import { ApiError } from '../src/api/client'
import DataCard from '../src/components/DataCard.vue'
import DataTable from '../src/components/DataTable.vue'
import type { AsyncSource } from '../src/composables/useAsync'

function source(state: { loading?: boolean; error?: ApiError | null } = {}): AsyncSource {
  return { loading: ref(state.loading ?? false), error: ref(state.error ?? null), run: vi.fn(async () => {}) }
}

describe('data table', () => {
  it('has a hidden caption, column headers and the rows of its slot', () => {
    const w = mount(DataTable, {
      props: {
        caption: 'Requests',
        columns: ['When', { label: 'Cost', class: 'num' }, { label: 'Actions', visuallyHidden: true }],
      },
      attrs: { 'data-testid': 'requests' },
      slots: { default: '<tr><td>today</td><td>$1</td><td></td></tr>' },
    })
    expect(w.classes()).toContain('table-wrap')
    const table = w.find('table')
    expect(table.classes()).toEqual(['table'])
    expect(table.attributes('data-testid')).toBe('requests')
    expect(w.attributes('data-testid')).toBeUndefined()
    expect(w.find('caption').text()).toBe('Requests')
    expect(w.find('caption').classes()).toContain('visually-hidden')
    const heads = w.findAll('thead th')
    expect(heads.map((h) => h.text())).toEqual(['When', 'Cost', 'Actions'])
    expect(heads.every((h) => h.attributes('scope') === 'col')).toBe(true)
    expect(heads[0]!.attributes('class')).toBeUndefined()
    expect(heads[1]!.classes()).toEqual(['num'])
    expect(heads[2]!.find('span.visually-hidden').text()).toBe('Actions')
    expect(w.findAll('tbody tr')).toHaveLength(1)
    expect(w.find('tbody td').text()).toBe('today')
  })
})

describe('data card', () => {
  it('shows its title and the content once loaded', () => {
    const w = mount(DataCard, { props: { title: 'Agents', source: source() }, slots: { default: '<p class="content">rows</p>' } })
    expect(w.classes()).toContain('card')
    expect(w.find('h2').text()).toBe('Agents')
    expect(w.find('.content').exists()).toBe(true)
  })

  it('says it is loading while there is nothing yet', () => {
    const w = mount(DataCard, { props: { title: 'Agents', source: source({ loading: true }), empty: true }, slots: { default: 'rows' } })
    expect(w.find('[role="status"]').text()).toBe('Loading…')
    expect(w.find('.async-state').attributes('aria-busy')).toBe('true')
  })

  it('shows the empty text once loaded', () => {
    const w = mount(DataCard, { props: { title: 'Agents', source: source(), empty: true, emptyText: 'No agents.' }, slots: { default: 'rows' } })
    expect(w.find('.state-empty').text()).toBe('No agents.')
    expect(w.text()).not.toContain('rows')
  })

  it('shows the error, and Retry loads again', async () => {
    const s = source({ error: new ApiError(500, 'it broke', 'server_error') })
    const w = mount(DataCard, { props: { title: 'Agents', source: s }, slots: { default: 'rows' } })
    expect(w.find('[role="alert"]').text()).toContain('it broke')
    await w.find('button').trigger('click')
    expect(s.run).toHaveBeenCalledTimes(1)
  })
})
