/** Money in the API is integer micro-USD (`*Micros` fields); the UI shows USD. */

const MICROS_PER_USD = 1_000_000

const cents = new Intl.NumberFormat('en-US', {
  style: 'currency',
  currency: 'USD',
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
})

const fine = new Intl.NumberFormat('en-US', {
  style: 'currency',
  currency: 'USD',
  minimumFractionDigits: 2,
  maximumFractionDigits: 6,
})

/**
 * `1_234_500_000` → `$1,234.50`. Amounts under a cent (but not zero) keep their micro-dollar
 * digits (`$0.000123`) so small test charges are not shown as `$0.00`.
 */
export function formatUsd(micros: number | null | undefined): string {
  if (micros === null || micros === undefined || !Number.isFinite(micros)) return '—'
  const usd = micros / MICROS_PER_USD
  if (micros !== 0 && Math.abs(micros) < 10_000) return fine.format(usd)
  return cents.format(usd)
}

/** For chart axes: plain dollars. */
export function microsToUsd(micros: number): number {
  return micros / MICROS_PER_USD
}

const integer = new Intl.NumberFormat('en-US')

/** `12345` → `12,345`. */
export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—'
  return integer.format(n)
}

/** `1 request`, `2 requests` (counts formatted). */
export function plural(n: number | null | undefined, one: string, many = `${one}s`): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`
}
