import { describe, expect, it } from 'vitest'
import { ApiError } from '../src/api/client'
import { useFormErrors } from '../src/composables/useFormErrors'

describe('form submit and errors', () => {
  it('is busy while sending, and shows what the server refused on its field', async () => {
    const form = useFormErrors<'limit' | 'name'>({ 'spec.limit': 'limit', 'metadata.name': 'name' })
    let release!: () => void
    const sending = form.send(
      () =>
        new Promise<void>((_, reject) => {
          release = () => reject(new ApiError(400, 'not a decimal amount', 'invalid_request_error', 'spec.limit'))
        }),
    )
    expect(form.busy.value).toBe(true)
    release()
    await sending
    expect(form.busy.value).toBe(false)
    expect(form.errors).toEqual({ limit: 'not a decimal amount' })
    expect(form.formError.value).toBeNull()
  })

  it('shows an error about no known field for the whole form, and clears it on the next send', async () => {
    const form = useFormErrors<'name'>({ 'metadata.name': 'name' })
    await form.send(async () => {
      throw new ApiError(409, 'exists already', 'invalid_request_error', null, 'conflict')
    })
    expect(form.formError.value).toBe('exists already')
    await form.send(async () => {})
    expect(form.formError.value).toBeNull()
    expect(form.busy.value).toBe(false)
  })

  it('shows errors found before sending instead of the ones shown before', async () => {
    const form = useFormErrors<'owners' | 'limit'>({ 'spec.owners': 'owners', 'spec.limit': 'limit' })
    await form.send(async () => {
      throw new ApiError(400, 'bad', 'invalid_request_error', 'spec.limit')
    })
    form.reject({ owners: '"x:y": write developer:NAME or team:NAME' })
    expect(form.errors).toEqual({ owners: '"x:y": write developer:NAME or team:NAME' })
    expect(form.busy.value).toBe(false)
  })
})
