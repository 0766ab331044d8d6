import { reactive, ref } from 'vue'
import { ApiError } from '../api/client'
import { toApiError } from './useAsync'

/**
 * Submitting a form, and server validation errors shown on the field they are about. The API
 * names the field in `param` (`spec.limit`, `spec.owners[1].name`, `model`); `fields` maps
 * those paths to the form's field ids. An error about no known field is shown for the whole
 * form.
 */
export function useFormErrors<F extends string>(fields: Record<string, F>) {
  const errors = reactive({}) as Partial<Record<F, string>>
  const formError = ref<string | null>(null)
  const busy = ref(false)

  /** The field an error is about, and what to say there. */
  function locate(param: string | null, message: string): { field: F; text: string } | null {
    const paths = Object.keys(fields).sort((a, b) => b.length - a.length)
    if (param) {
      for (const p of paths) {
        if (param === p || param.startsWith(`${p}.`) || param.startsWith(`${p}[`)) {
          return { field: fields[p] as F, text: message }
        }
      }
    }
    // Errors from compiling the change with the other resources carry no param; a line of
    // their message names the path (`Budget/default/x: spec.parent: no Budget "y" ...`).
    for (const line of message.split('\n')) {
      for (const p of paths) {
        const at = new RegExp(`(?:^|[\\s:])${p.replace(/[.[\]]/g, '\\$&')}(?:\\[\\d+\\])*(?:\\.[\\w.[\\]]+)?:\\s*(.*)$`).exec(line)
        if (at) return { field: fields[p] as F, text: at[1] || line }
      }
    }
    return null
  }

  function clear() {
    for (const k of Object.keys(errors) as F[]) delete errors[k]
    formError.value = null
  }

  /** Shows `e`; returns the field it landed on (or null for a form-level error). */
  function show(e: unknown): F | null {
    clear()
    const err: ApiError = toApiError(e)
    const found = locate(err.param, err.message)
    if (found) errors[found.field] = found.text
    else formError.value = err.message
    return found?.field ?? null
  }

  /** Shows errors found before sending (instead of any shown before). */
  function reject(found: Partial<Record<F, string>>) {
    clear()
    Object.assign(errors, found)
  }

  /** Clears the errors and runs `request` while `busy`, showing what it throws. */
  async function send(request: () => Promise<void>) {
    clear()
    busy.value = true
    try {
      await request()
    } catch (e) {
      show(e)
    } finally {
      busy.value = false
    }
  }

  return { errors, formError, busy, clear, show, reject, send }
}
