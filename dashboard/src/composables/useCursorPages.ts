import { computed, ref } from 'vue'
import { useAsync } from './useAsync'

interface Page<T> {
  items: T[]
  nextCursor?: string | null
}

/**
 * Cursor pagination: the server answers `nextCursor`, sent back as `cursor` for the next
 * page. Keeps the cursors of the pages seen, so "previous" works too.
 */
export function useCursorPages<T>(load: (cursor: string | null) => Promise<Page<T>>) {
  const cursors = ref<(string | null)[]>([null])
  const current = computed(() => cursors.value[cursors.value.length - 1] ?? null)
  const async = useAsync(() => load(current.value))
  const items = computed<T[]>(() => async.data.value?.items ?? [])
  const nextCursor = computed(() => async.data.value?.nextCursor ?? null)
  return {
    ...async,
    items,
    page: computed(() => cursors.value.length),
    hasNext: computed(() => !!nextCursor.value),
    next() {
      if (!nextCursor.value) return
      cursors.value = [...cursors.value, nextCursor.value]
      void async.run()
    },
    previous() {
      if (cursors.value.length <= 1) return
      cursors.value = cursors.value.slice(0, -1)
      void async.run()
    },
    first() {
      cursors.value = [null]
      void async.run()
    },
  }
}
