import { ref } from 'vue'

/** Whether the navigation is open on a narrow screen (on wide screens it always shows). */
const open = ref(false)

export function useNavToggle() {
  return {
    open,
    toggle: () => (open.value = !open.value),
    close: () => (open.value = false),
  }
}
