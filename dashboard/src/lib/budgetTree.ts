/** Budgets as a tree (by `parent`) and the numbers a progress bar needs. */

/** What the tree and the bar need of a budget view. */
export interface BudgetLike {
  /** `namespace/name`. */
  name: string
  /** The parent's `namespace/name`. */
  parent?: string | null
  limitMicros: number
  spentMicros: number
  reservedMicros: number
  remainingMicros: number
  exhausted: boolean
  alertThresholds?: number[] | null
  alertLevel?: number | null
}

export interface BudgetNode<B extends BudgetLike> {
  budget: B
  depth: number
  children: BudgetNode<B>[]
}

/**
 * Builds the forest: a budget whose parent is absent, unknown or not visible to the caller
 * (a developer sees their own budget, not the team's above it) is a root. Children are
 * sorted by name. A parent cycle (the server refuses them) cannot hang the UI: every budget
 * appears exactly once.
 */
export function buildBudgetTree<B extends BudgetLike>(budgets: readonly B[]): BudgetNode<B>[] {
  const byName = new Map<string, B>()
  for (const b of budgets) byName.set(b.name, b)
  const children = new Map<string, B[]>()
  const roots: B[] = []
  for (const b of byName.values()) {
    const parent = b.parent ?? null
    if (parent !== null && parent !== b.name && byName.has(parent)) {
      const list = children.get(parent) ?? []
      list.push(b)
      children.set(parent, list)
    } else {
      roots.push(b)
    }
  }
  const placed = new Set<string>()
  const byNameOrder = (a: B, b: B) => a.name.localeCompare(b.name)
  const build = (b: B, depth: number): BudgetNode<B> => {
    placed.add(b.name)
    const kids = (children.get(b.name) ?? []).filter((c) => !placed.has(c.name)).sort(byNameOrder)
    return { budget: b, depth, children: kids.map((c) => build(c, depth + 1)) }
  }
  const forest = roots.sort(byNameOrder).map((r) => build(r, 0))
  // Budgets only reachable through a cycle: show them as roots.
  for (const b of [...byName.values()].sort(byNameOrder)) {
    if (!placed.has(b.name)) forest.push(build(b, 0))
  }
  return forest
}

/** Depth-first list of the tree (for rendering as rows and for tests). */
export function flattenTree<B extends BudgetLike>(forest: BudgetNode<B>[]): BudgetNode<B>[] {
  const out: BudgetNode<B>[] = []
  const walk = (n: BudgetNode<B>) => {
    out.push(n)
    n.children.forEach(walk)
  }
  forest.forEach(walk)
  return out
}

export type BudgetState = 'ok' | 'alert' | 'exhausted'

export interface Progress {
  /** Bar widths in percent of the limit; they add up to 100. */
  spentPct: number
  reservedPct: number
  remainingPct: number
  /** (spent + reserved) / limit, uncapped, rounded to one decimal (may exceed 100). */
  usedPct: number
  /** The highest alert threshold reached, if any. */
  alertLevel: number | null
  state: BudgetState
}

const clamp = (v: number) => Math.min(100, Math.max(0, v))
const round1 = (v: number) => Math.round(v * 10) / 10

/**
 * The bar of a budget: spent, then reserved (held by requests in flight), then remaining.
 * The alert level is the server's when it says one; otherwise the highest threshold the
 * spent share has reached.
 */
export function budgetProgress(b: BudgetLike): Progress {
  const limit = Math.max(0, b.limitMicros)
  const spent = Math.max(0, b.spentMicros)
  const reserved = Math.max(0, b.reservedMicros)
  let spentPct: number
  let reservedPct: number
  if (limit === 0) {
    spentPct = spent > 0 || b.exhausted ? 100 : 0
    reservedPct = 0
  } else {
    spentPct = clamp((spent / limit) * 100)
    reservedPct = Math.min(100 - spentPct, clamp((reserved / limit) * 100))
  }
  const remainingPct = Math.max(0, 100 - spentPct - reservedPct)
  const usedPct = limit === 0 ? (spent + reserved > 0 ? 100 : 0) : round1(((spent + reserved) / limit) * 100)
  let alertLevel: number | null
  if (b.alertLevel !== undefined) {
    alertLevel = b.alertLevel ?? null
  } else {
    const spentShare = limit === 0 ? (spent > 0 ? Infinity : 0) : (spent / limit) * 100
    const reached = (b.alertThresholds ?? []).filter((t) => spentShare >= t)
    alertLevel = reached.length ? Math.max(...reached) : null
  }
  const exhausted = b.exhausted || (limit > 0 && b.remainingMicros <= 0)
  return {
    spentPct,
    reservedPct,
    remainingPct,
    usedPct,
    alertLevel,
    state: exhausted ? 'exhausted' : alertLevel !== null ? 'alert' : 'ok',
  }
}
