import { bucketLabel, buckets, parseTime } from './time'

interface Keyed {
  key: string
}

/**
 * Lines up time-keyed groups (`key`: RFC 3339 bucket start) with every bucket from `from`
 * to `to`, zero where the server has no group. Returns the labels and, per field asked
 * for, the values.
 */
export function timeSeries<G extends Keyed, F extends keyof G>(
  groups: readonly G[],
  from: Date,
  to: Date,
  unit: 'day' | 'hour',
  fields: readonly F[],
  scale: (field: F, value: number) => number = (_f, v) => v,
): { labels: string[]; values: Record<F, number[]> } {
  const slots = buckets(from, to, unit)
  const index = new Map<number, number>()
  slots.forEach((d, i) => index.set(d.getTime(), i))
  const values = {} as Record<F, number[]>
  for (const f of fields) values[f] = slots.map(() => 0)
  for (const g of groups) {
    const t = parseTime(g.key)
    if (!t) continue
    const i = index.get(t.getTime())
    if (i === undefined) continue
    for (const f of fields) {
      const v = Number(g[f])
      const row = values[f]
      if (Number.isFinite(v) && row) row[i] = (row[i] ?? 0) + scale(f, v)
    }
  }
  return { labels: slots.map((d) => bucketLabel(d, unit)), values }
}

/** The `n` largest groups by `field`, largest first. */
export function top<G, F extends keyof G>(groups: readonly G[], field: F, n: number): G[] {
  return [...groups].sort((a, b) => Number(b[field]) - Number(a[field])).slice(0, n)
}
