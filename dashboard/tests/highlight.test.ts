import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import HighlightedText from '../src/components/HighlightedText.vue'
import { byteSpansToIndexSpans, byteToIndexMap, segments } from '../src/lib/highlight'

const utf8 = (s: string) => new TextEncoder().encode(s).length

/** Where `needle` is in `text`, as the server reports it: UTF-8 byte offset and length. */
function byteLocation(text: string, needle: string) {
  const at = text.indexOf(needle)
  return { offset: utf8(text.slice(0, at)), length: utf8(needle) }
}

describe('byte offsets to string indices', () => {
  it('maps every character start of non-ASCII text', () => {
    const text = 'aé€😀b'
    const map = byteToIndexMap(text)
    // a(1) é(2) €(3) 😀(4 bytes, 2 UTF-16 units) b(1)
    expect(map.length).toBe(utf8(text) + 1)
    expect([map[0], map[1], map[3], map[6], map[10], map[11]]).toEqual([0, 1, 2, 3, 5, 6])
  })

  it('converts findings after multi-byte characters', () => {
    const text = 'Grüße 👋 — schreib an jürgen@example.com, bitte'
    const email = 'jürgen@example.com'
    const loc = byteLocation(text, email)
    expect(loc.offset).not.toBe(text.indexOf(email)) // bytes and indices differ here
    const [span] = byteSpansToIndexSpans(text, [{ label: 'pii.email', ...loc }])
    expect(text.slice(span!.start, span!.end)).toBe(email)
  })

  it('ignores findings without a location or outside the text', () => {
    const spans = byteSpansToIndexSpans('abc', [
      { label: 'a', offset: null, length: 2 },
      { label: 'b' },
      { label: 'c', offset: 10, length: 2 },
      { label: 'd', offset: 1, length: 0 },
    ])
    expect(spans).toEqual([])
  })

  it('widens an end that falls inside a character to the whole character', () => {
    const text = 'x€y'
    const [span] = byteSpansToIndexSpans(text, [{ label: 'l', offset: 1, length: 2 }])
    expect(text.slice(span!.start, span!.end)).toBe('€')
  })
})

describe('segments', () => {
  it('cuts the text into plain and marked parts, merging overlaps', () => {
    const parts = segments('0123456789', [
      { start: 2, end: 4, label: 'a' },
      { start: 3, end: 6, label: 'b' },
      { start: 8, end: 9, label: 'c' },
    ])
    expect(parts).toEqual([
      { text: '01', marked: false, labels: [] },
      { text: '2345', marked: true, labels: ['a', 'b'] },
      { text: '67', marked: false, labels: [] },
      { text: '8', marked: true, labels: ['c'] },
      { text: '9', marked: false, labels: [] },
    ])
  })
})

describe('HighlightedText', () => {
  it('marks the matched e-mail address in non-ASCII text', () => {
    const text = 'Ça va? 📧 Écris à zoë@exemple.fr stp'
    const email = 'zoë@exemple.fr'
    const w = mount(HighlightedText, { props: { text, matches: [{ label: 'pii.email', ...byteLocation(text, email) }] } })
    const marks = w.findAll('mark')
    expect(marks.map((m) => m.text())).toEqual([email])
    expect(w.text()).toBe(text)
  })

  it('renders markup in the text as text, never as HTML', () => {
    const text = '<img src=x onerror=alert(1)> a@b.co'
    const w = mount(HighlightedText, { props: { text, matches: [{ label: 'pii.email', ...byteLocation(text, 'a@b.co') }] } })
    expect(w.find('img').exists()).toBe(false)
    expect(w.find('mark').text()).toBe('a@b.co')
    expect(w.text()).toBe(text)
  })
})
