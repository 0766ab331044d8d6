/** Dates and ranges for usage queries (UTC, as the server's rollups). */

const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS

/** Midnight UTC of the day `now` falls in. */
export function startOfUtcDay(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()))
}

/** The first of the month (UTC) `now` falls in. */
export function startOfUtcMonth(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))
}

/** `days` whole days back from today's midnight (UTC). */
export function daysAgo(now: Date, days: number): Date {
  return new Date(startOfUtcDay(now).getTime() - days * DAY_MS)
}

/** `hours` back from the start of the current hour. */
export function hoursAgo(now: Date, hours: number): Date {
  const hour = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS
  return new Date(hour - hours * HOUR_MS)
}

/**
 * Every bucket start from `from` up to `to` (exclusive), so a time series has a point for
 * every day or hour, zero where nothing happened.
 */
export function buckets(from: Date, to: Date, unit: 'day' | 'hour'): Date[] {
  const step = unit === 'day' ? DAY_MS : HOUR_MS
  const first = unit === 'day' ? startOfUtcDay(from).getTime() : Math.floor(from.getTime() / HOUR_MS) * HOUR_MS
  const out: Date[] = []
  for (let t = first; t < to.getTime() && out.length < 10_000; t += step) out.push(new Date(t))
  return out
}

/** A bucket's label: `Nov 27` for days, `Nov 27 14:00` for hours (UTC). */
export function bucketLabel(d: Date, unit: 'day' | 'hour'): string {
  const month = d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' })
  const day = d.getUTCDate()
  if (unit === 'day') return `${month} ${day}`
  return `${month} ${day} ${String(d.getUTCHours()).padStart(2, '0')}:00`
}

/** Parses an RFC 3339 time or epoch milliseconds; `null` for anything else. */
export function parseTime(v: string | number | null | undefined): Date | null {
  if (v === null || v === undefined || v === '') return null
  const d = typeof v === 'number' ? new Date(v) : new Date(v)
  return Number.isNaN(d.getTime()) ? null : d
}

/** `2026-11-27 14:03:09 UTC`. */
export function formatTime(v: string | number | null | undefined): string {
  const d = parseTime(v)
  if (!d) return '—'
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`
}

/** `2026-11-27`. */
export function formatDate(v: string | number | null | undefined): string {
  const d = parseTime(v)
  return d ? d.toISOString().slice(0, 10) : '—'
}
