import { onBeforeUnmount, onMounted, ref, shallowRef, type Ref, type ShallowRef } from 'vue'
import { ApiError } from '../api/client'

/** What the loading, error and empty states of a source show (`AsyncState`). */
export interface AsyncSource {
  error: Ref<ApiError | null>
  loading: Ref<boolean>
  /** Loads again; an older load finishing late is ignored. */
  run: () => Promise<void>
}

export interface AsyncData<T> extends AsyncSource {
  data: ShallowRef<T | null>
}

export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e
  return new ApiError(0, e instanceof Error ? e.message : String(e), 'client_error')
}

/** Loading, error and data of one async source; loads at once unless `immediate: false`. */
export function useAsync<T>(load: () => Promise<T>, options: { immediate?: boolean } = {}): AsyncData<T> {
  const data = shallowRef<T | null>(null)
  const error = ref<ApiError | null>(null)
  const loading = ref(false)
  let sequence = 0
  async function run() {
    const mine = ++sequence
    loading.value = true
    error.value = null
    try {
      const value = await load()
      if (mine === sequence) data.value = value
    } catch (e) {
      if (mine === sequence) error.value = toApiError(e)
    } finally {
      if (mine === sequence) loading.value = false
    }
  }
  if (options.immediate !== false) void run()
  return { data, error, loading, run }
}

/**
 * Calls `fn` every `ms` while the component is mounted and the tab is visible (usage is
 * rolled up by the server every few seconds; pages refresh on their own).
 */
export function useInterval(fn: () => void, ms: number): void {
  let timer: ReturnType<typeof setInterval> | undefined
  onMounted(() => {
    timer = setInterval(() => {
      if (typeof document === 'undefined' || document.visibilityState !== 'hidden') fn()
    }, ms)
  })
  onBeforeUnmount(() => clearInterval(timer))
}
