import { computed, ref, shallowReactive, type ComputedRef, type Ref } from 'vue'
import { useAsync, type AsyncData } from './useAsync'

interface Page<T> {
  items: T[]
  nextCursor?: string | null
}

/** What a pager (`CursorPager`) shows and does. */
export interface Pager {
  /** 1 for the first page. */
  page: ComputedRef<number>
  hasNext: ComputedRef<boolean>
  loading: Ref<boolean>
  first: () => void
  previous: () => void
  next: () => void
}

export interface CursorPages<T> extends AsyncData<Page<T>>, Pager {
  items: ComputedRef<T[]>
}

/**
 * Cursor pagination: the server answers `nextCursor`, sent back as `cursor` for the next
 * page. Keeps the cursors of the pages seen, so "previous" works too.
 */
export function useCursorPages<T>(load: (cursor: string | null) => Promise<Page<T>>): CursorPages<T> {
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

export const PAGE_SIZES: readonly number[] = [10, 25, 50, 100]

/**
 * A filter form over a cursor-paginated list (`FilterForm`). `draft` and `pageSize` are what
 * the form holds; the list shows what was last applied, from its first page.
 */
export function useFilteredPages<F extends object, T>(
  empty: () => F,
  load: (query: F & { limit: number; cursor: string | null }) => Promise<Page<T>>,
) {
  const draft = shallowReactive(empty())
  const applied = shallowReactive(empty())
  const pageSize = ref(50)
  const appliedSize = ref(50)
  const pages = useCursorPages((cursor) => load({ ...applied, limit: appliedSize.value, cursor }))

  function apply() {
    Object.assign(applied, draft)
    appliedSize.value = pageSize.value
    pages.first()
  }
  function reset() {
    Object.assign(draft, empty())
    apply()
  }
  return { draft, pageSize, pages, apply, reset }
}
