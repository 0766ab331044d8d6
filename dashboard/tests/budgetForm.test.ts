import { flushPromises, mount } from '@vue/test-utils'
import { afterEach, describe, expect, it } from 'vitest'
import BudgetForm from '../src/components/BudgetForm.vue'
import { budgetDocument, emptyBudgetFields } from '../src/lib/budgetForm'
import { apiError, json, mockApi } from './helpers'

async function fill(w: ReturnType<typeof mount>, values: Record<string, string>) {
  for (const [id, v] of Object.entries(values)) await w.find(`#${id}`).setValue(v)
}

describe('budget form', () => {
  afterEach(() => document.body.replaceChildren())

  it('shows the server validation error on the field it names', async () => {
    const seen = mockApi({
      'POST /api/v1/resources/budgets': () =>
        apiError(400, 'spec.limit: expected a USD amount such as "250" or "12.50"', 'spec.limit'),
    })
    const w = mount(BudgetForm, { props: { parents: [] }, attachTo: document.body })
    await fill(w, { 'budget-name': 'dana', 'budget-subject-name': 'dana', 'budget-limit': 'lots' })
    await w.find('form').trigger('submit')
    await flushPromises()

    const sent = (await seen[0]!.json()) as { spec: { limit: string }; metadata: { name: string } }
    expect(sent.spec.limit).toBe('lots')
    expect(sent.metadata.name).toBe('dana')

    const limit = w.find('#budget-limit')
    expect(limit.attributes('aria-invalid')).toBe('true')
    expect(limit.attributes('aria-describedby')).toBe('budget-limit-error')
    expect(w.find('#budget-limit-error').text()).toContain('expected a USD amount')
    // Only that field.
    expect(w.findAll('.field-error')).toHaveLength(1)
    expect(w.find('#budget-name').attributes('aria-invalid')).toBeUndefined()
    expect(w.find('.form-error').exists()).toBe(false)
    expect(w.emitted('saved')).toBeUndefined()
  })

  it('puts a compile error that names a path on that field', async () => {
    mockApi({
      'POST /api/v1/resources/budgets': () =>
        apiError(422, 'the change does not compile with the other resources:\nspec.parent: no Budget "gone" in namespace "default"', null, 'invalid_resource'),
    })
    const w = mount(BudgetForm, { props: { parents: ['default/gone'] } })
    await fill(w, { 'budget-name': 'dana', 'budget-subject-name': 'dana', 'budget-limit': '20' })
    await w.find('#budget-parent').setValue('gone')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#budget-parent-error').text()).toContain('no Budget "gone"')
  })

  it('reads the field from a compile error without param, as the server answers today', async () => {
    mockApi({
      'POST /api/v1/resources/budgets': () =>
        apiError(
          422,
          'the change does not compile with the other resources:\nBudget/default/dana: spec.limit: "lots" is not a decimal amount like "12.50"',
          null,
          'invalid_resource',
        ),
    })
    const w = mount(BudgetForm, { props: { parents: [] } })
    await fill(w, { 'budget-name': 'dana', 'budget-subject-name': 'dana', 'budget-limit': 'lots' })
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#budget-limit-error').text()).toBe('"lots" is not a decimal amount like "12.50"')
    expect(w.find('.form-error').exists()).toBe(false)
  })

  it('maps indexed paths to their field', async () => {
    mockApi({
      'POST /api/v1/resources/budgets': () => apiError(400, 'unknown variant `boss`, expected `developer` or `team`', 'spec.owners[0].kind'),
    })
    const w = mount(BudgetForm, { props: { parents: [] } })
    await fill(w, { 'budget-name': 'dana', 'budget-subject-name': 'dana', 'budget-limit': '1', 'budget-owners': 'team:x' })
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('#budget-owners-error').text()).toContain('unknown variant')
  })

  it('shows an error about no known field for the whole form', async () => {
    mockApi({ 'POST /api/v1/resources/budgets': () => apiError(409, 'Budget default/dana exists already', null, 'conflict') })
    const w = mount(BudgetForm, { props: { parents: [] } })
    await fill(w, { 'budget-name': 'dana', 'budget-subject-name': 'dana', 'budget-limit': '20' })
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('.form-error').text()).toContain('exists already')
  })

  it('creates the budget and reports it saved', async () => {
    const seen = mockApi({
      'POST /api/v1/resources/budgets': async (r) => {
        const doc = (await r.json()) as { metadata: { name: string } }
        return json({ kind: 'Budget', namespace: 'default', name: doc.metadata.name, source: 'api', generation: 1, document: doc }, 201)
      },
    })
    const w = mount(BudgetForm, { props: { parents: [] } })
    await fill(w, {
      'budget-name': 'dana',
      'budget-subject-name': 'dana',
      'budget-limit': '20',
      'budget-thresholds': '50, 90',
      'budget-owners': 'developer:sam, team:payments',
    })
    await w.find('form').trigger('submit')
    await flushPromises()
    const body = (await seen[0]!.json()) as Record<string, unknown>
    expect(body).toEqual({
      apiVersion: 'tollgate.dev/v1alpha1',
      kind: 'Budget',
      metadata: { name: 'dana', namespace: 'default' },
      spec: {
        subject: { kind: 'developer', name: 'dana' },
        limit: '20',
        period: 'monthly',
        enforcement: 'hard',
        onExhausted: 'block',
        alertThresholds: [50, 90],
        owners: [
          { kind: 'developer', name: 'sam' },
          { kind: 'team', name: 'payments' },
        ],
      },
    })
    expect(w.emitted('saved')).toHaveLength(1)
  })

  it('catches what it must turn into JSON itself', () => {
    const out = budgetDocument({ ...emptyBudgetFields(), name: 'x', alertThresholds: '50, lots' })
    expect(out).toEqual({ errors: { alertThresholds: '"lots" is not a whole percentage' } })
  })
})
