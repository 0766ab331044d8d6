import { describe, expect, it } from 'vitest'
import { budgetProgress, buildBudgetTree, flattenTree, type BudgetLike } from '../src/lib/budgetTree'

function budget(name: string, parent: string | null, spent = 0, limit = 100_000_000, extra: Partial<BudgetLike> = {}): BudgetLike {
  return {
    name,
    parent,
    limitMicros: limit,
    spentMicros: spent,
    reservedMicros: 0,
    remainingMicros: Math.max(0, limit - spent),
    exhausted: false,
    ...extra,
  }
}

describe('budget tree', () => {
  it('nests budgets under their parents, sorted by name', () => {
    const forest = buildBudgetTree([
      budget('default/team-b', 'default/org'),
      budget('default/dana', 'default/team-a'),
      budget('default/org', null),
      budget('default/team-a', 'default/org'),
      budget('default/alone', null),
    ])
    expect(forest.map((n) => n.budget.name)).toEqual(['default/alone', 'default/org'])
    const rows = flattenTree(forest).map((n) => `${'  '.repeat(n.depth)}${n.budget.name}`)
    expect(rows).toEqual(['default/alone', 'default/org', '  default/team-a', '    default/dana', '  default/team-b'])
  })

  it('makes a budget whose parent is not visible a root', () => {
    const forest = buildBudgetTree([budget('default/dana', 'default/team-a')])
    expect(forest).toHaveLength(1)
    expect(forest[0]?.depth).toBe(0)
  })

  it('shows every budget once even with a parent cycle', () => {
    const forest = buildBudgetTree([budget('default/a', 'default/b'), budget('default/b', 'default/a'), budget('default/c', 'default/c')])
    const names = flattenTree(forest).map((n) => n.budget.name)
    expect(names.sort()).toEqual(['default/a', 'default/b', 'default/c'])
  })
})

describe('budget progress', () => {
  it('splits the bar into spent, reserved and remaining', () => {
    const p = budgetProgress({ ...budget('x', null, 25_000_000), reservedMicros: 10_000_000, remainingMicros: 65_000_000 })
    expect(p).toMatchObject({ spentPct: 25, reservedPct: 10, remainingPct: 65, usedPct: 35, alertLevel: null, state: 'ok' })
  })

  it('caps the bar at 100% but reports the real use', () => {
    const p = budgetProgress({ ...budget('x', null, 90_000_000), reservedMicros: 30_000_000, remainingMicros: 0 })
    expect(p.spentPct).toBe(90)
    expect(p.reservedPct).toBe(10)
    expect(p.remainingPct).toBe(0)
    expect(p.usedPct).toBe(120)
    expect(p.state).toBe('exhausted')
  })

  it('takes the alert level from the server, else from the thresholds', () => {
    expect(budgetProgress(budget('x', null, 95_000_000, 100_000_000, { alertLevel: 90 })).alertLevel).toBe(90)
    expect(budgetProgress(budget('x', null, 95_000_000, 100_000_000, { alertLevel: null })).alertLevel).toBeNull()
    const computed = budgetProgress(budget('x', null, 60_000_000, 100_000_000, { alertThresholds: [50, 90] }))
    expect(computed.alertLevel).toBe(50)
    expect(computed.state).toBe('alert')
    expect(budgetProgress(budget('x', null, 40_000_000, 100_000_000, { alertThresholds: [50, 90] })).alertLevel).toBeNull()
  })

  it('is exhausted when the server says so or nothing remains', () => {
    expect(budgetProgress(budget('x', null, 1, 100, { exhausted: true })).state).toBe('exhausted')
    expect(budgetProgress(budget('x', null, 100, 100)).state).toBe('exhausted')
  })

  it('handles a zero limit', () => {
    expect(budgetProgress(budget('x', null, 0, 0, { remainingMicros: 0, exhausted: true }))).toMatchObject({ spentPct: 100, state: 'exhausted' })
    expect(budgetProgress(budget('x', null, 0, 0, { remainingMicros: 0 }))).toMatchObject({ spentPct: 0, usedPct: 0 })
  })
})
