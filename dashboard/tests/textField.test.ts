import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import TextField from '../src/components/TextField.vue'

describe('text field', () => {
  it('labels the input (label for = id), as text with autocomplete off unless told', () => {
    const w = mount(TextField, { props: { id: 'f-name', label: 'Name', modelValue: '' } })
    const input = w.find('input')
    expect(w.find('label').attributes('for')).toBe('f-name')
    expect(w.find('label').text()).toBe('Name')
    expect(input.attributes('id')).toBe('f-name')
    expect(input.attributes('type')).toBe('text')
    expect(input.attributes('autocomplete')).toBe('off')
    expect(input.attributes('aria-invalid')).toBeUndefined()
    expect(input.attributes('aria-describedby')).toBeUndefined()
    expect(w.find('.field').attributes('data-field')).toBe('f-name')
  })

  it('describes the input with its hint', () => {
    const w = mount(TextField, { props: { id: 'f-limit', label: 'Limit', hint: 'A decimal amount', modelValue: '' } })
    expect(w.find('input').attributes('aria-describedby')).toBe('f-limit-hint')
    expect(w.find('#f-limit-hint').text()).toBe('A decimal amount')
  })

  it('shows the error instead of the hint, and describes the input with it', () => {
    const w = mount(TextField, { props: { id: 'f-limit', label: 'Limit', hint: 'A decimal amount', error: 'not a number', modelValue: 'x' } })
    const input = w.find('input')
    expect(input.attributes('aria-invalid')).toBe('true')
    expect(input.attributes('aria-describedby')).toBe('f-limit-error')
    const error = w.find('#f-limit-error')
    expect(error.text()).toBe('not a number')
    expect(error.attributes('role')).toBe('alert')
    expect(w.find('#f-limit-hint').exists()).toBe(false)
    expect(w.find('.field').classes()).toContain('field-invalid')
  })

  it('binds v-model both ways', async () => {
    const w = mount(TextField, {
      props: { id: 'f', label: 'F', modelValue: 'one', 'onUpdate:modelValue': (v: string) => w.setProps({ modelValue: v }) },
    })
    const input = w.find('input')
    expect((input.element as HTMLInputElement).value).toBe('one')
    await input.setValue('two')
    expect(w.emitted('update:modelValue')).toEqual([['two']])
    expect(w.props('modelValue')).toBe('two')
    await w.setProps({ modelValue: '' })
    expect((input.element as HTMLInputElement).value).toBe('')
  })

  it('passes type, placeholder, autocomplete and other attributes to the input, keeping its own description', () => {
    const w = mount(TextField, {
      props: { id: 'f-key', label: 'Key', type: 'password', placeholder: 'tg-…', autocomplete: 'new-password', error: 'refused', modelValue: '' },
      attrs: { required: '', spellcheck: 'false', list: 'choices', 'aria-describedby': 'elsewhere' },
    })
    const input = w.find('input')
    expect(input.attributes()).toMatchObject({
      id: 'f-key',
      type: 'password',
      placeholder: 'tg-…',
      autocomplete: 'new-password',
      required: '',
      spellcheck: 'false',
      list: 'choices',
      'aria-describedby': 'f-key-error',
    })
    expect(w.find('.field').attributes('spellcheck')).toBeUndefined()
  })
})
