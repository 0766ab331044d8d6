/**
 * The safety check reports matches as BYTE offsets into the UTF-8 text; JavaScript strings
 * index UTF-16 code units. These helpers convert between the two and cut a text into plain
 * and marked segments (rendered as text nodes and `<mark>` elements, never as HTML).
 */

/** UTF-8 length of one code point. */
function utf8Length(codePoint: number): number {
  if (codePoint < 0x80) return 1
  if (codePoint < 0x800) return 2
  if (codePoint < 0x10000) return 3
  return 4
}

/**
 * Maps every UTF-8 byte offset that starts a character (and the end of the text) to the
 * UTF-16 index of that character. Offsets inside a character map to the character's start.
 */
export function byteToIndexMap(text: string): Int32Array {
  const total = new TextEncoder().encode(text).length
  const map = new Int32Array(total + 1)
  let byte = 0
  let index = 0
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0
    const len = utf8Length(cp)
    for (let i = 0; i < len; i++) map[byte + i] = index
    byte += len
    index += ch.length
  }
  map[total] = index
  return map
}

/** A matched span in string indices, with what matched there. */
export interface Span {
  start: number
  end: number
  label: string
}

/** Something with a byte location, as the API reports findings. */
export interface ByteLocated {
  label: string
  offset?: number | null
  length?: number | null
}

/**
 * Converts byte-located findings to string spans. Findings without a location, or whose
 * location lies outside the text, are left out (they are listed, not highlighted).
 */
export function byteSpansToIndexSpans(text: string, located: ByteLocated[]): Span[] {
  const map = byteToIndexMap(text)
  const bytes = map.length - 1
  const spans: Span[] = []
  for (const f of located) {
    if (f.offset === null || f.offset === undefined || f.length === null || f.length === undefined) continue
    if (f.offset < 0 || f.length <= 0 || f.offset > bytes) continue
    const endByte = Math.min(f.offset + f.length, bytes)
    const start = map[f.offset] ?? 0
    // An end inside a character extends to that character's end.
    let end = map[endByte] ?? text.length
    if (endByte < bytes && map[endByte - 1] === end) {
      let b = endByte
      while (b < bytes && map[b] === end) b++
      end = map[b] ?? text.length
    }
    if (end > start) spans.push({ start, end, label: f.label })
  }
  return spans
}

/** A piece of the text: plain, or marked with the labels of the spans covering it. */
export interface Segment {
  text: string
  marked: boolean
  labels: string[]
}

/**
 * Cuts `text` into segments; overlapping or touching spans become one marked segment
 * carrying all their labels.
 */
export function segments(text: string, spans: Span[]): Segment[] {
  const sorted = spans
    .filter((s) => s.end > s.start && s.start < text.length)
    .map((s) => ({ ...s, start: Math.max(0, s.start), end: Math.min(text.length, s.end) }))
    .sort((a, b) => a.start - b.start || a.end - b.end)
  const merged: { start: number; end: number; labels: string[] }[] = []
  for (const s of sorted) {
    const last = merged[merged.length - 1]
    if (last && s.start <= last.end) {
      last.end = Math.max(last.end, s.end)
      if (!last.labels.includes(s.label)) last.labels.push(s.label)
    } else {
      merged.push({ start: s.start, end: s.end, labels: [s.label] })
    }
  }
  const out: Segment[] = []
  let at = 0
  for (const m of merged) {
    if (m.start > at) out.push({ text: text.slice(at, m.start), marked: false, labels: [] })
    out.push({ text: text.slice(m.start, m.end), marked: true, labels: m.labels })
    at = m.end
  }
  if (at < text.length || out.length === 0) out.push({ text: text.slice(at), marked: false, labels: [] })
  return out
}
