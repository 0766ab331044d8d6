/** The safety-policy form's fields ⇄ a SafetyPolicy resource document. */
import type { DetectorRule, SafetyPolicyDocument, SafetyPolicySpec } from '../api/types'

export const DETECTORS = [
  'pii.*',
  'pii.email',
  'pii.phone',
  'pii.credit_card',
  'pii.us_ssn',
  'pii.iban',
  'pii.ip_address',
  'secrets.*',
  'secrets.aws_access_key',
  'secrets.aws_secret_key',
  'secrets.github_token',
  'secrets.slack_token',
  'secrets.openai_key',
  'secrets.anthropic_key',
  'secrets.google_api_key',
  'secrets.stripe_key',
  'secrets.private_key',
  'secrets.jwt',
  'secrets.generic_assignment',
  '*',
] as const

export const ACTIONS = ['block', 'redact', 'log'] as const
export type RuleAction = (typeof ACTIONS)[number]

export interface DetectorRow {
  id: string
  action: RuleAction
}

export interface SafetyFields {
  name: string
  mode: 'enforce' | 'audit'
  /** `kind:name` pairs, comma-separated (`team:payments, developer:*`); empty: everyone. */
  subjects: string
  input: DetectorRow[]
  output: DetectorRow[]
}

export type SafetyField = 'name' | 'mode' | 'subjects' | 'input' | 'output'

export const SAFETY_PARAMS: Record<string, SafetyField> = {
  'metadata.name': 'name',
  'spec.mode': 'mode',
  'spec.selector': 'subjects',
  'spec.input.detectors': 'input',
  'spec.input': 'input',
  'spec.output.detectors': 'output',
  'spec.output': 'output',
}

export function emptySafetyFields(): SafetyFields {
  return { name: '', mode: 'enforce', subjects: '', input: [{ id: 'pii.email', action: 'redact' }], output: [] }
}

type SubjectKind = 'developer' | 'team' | 'agent' | 'namespace'
const KINDS: readonly string[] = ['developer', 'team', 'agent', 'namespace']

function parseSubjects(text: string): { kind: SubjectKind; name: string }[] | string {
  const out: { kind: SubjectKind; name: string }[] = []
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [kind, name] = part.split(':', 2).map((s) => s.trim())
    if (!kind || !KINDS.includes(kind) || !name) return `"${part}": write KIND:NAME (developer, team, agent or namespace)`
    out.push({ kind: kind as SubjectKind, name })
  }
  return out
}

const rules = (rows: DetectorRow[]): DetectorRule[] =>
  rows.filter((r) => r.id.trim()).map((r) => ({ id: r.id.trim(), action: r.action }))

/**
 * The document for the fields. Parts of the spec the form does not edit (injection,
 * custom rules, limits, tools) are kept from `base` when editing.
 */
export function safetyDocument(
  f: SafetyFields,
  base?: { spec?: Partial<SafetyPolicySpec> } | null,
): { document: SafetyPolicyDocument } | { errors: Partial<Record<SafetyField, string>> } {
  const subjects = parseSubjects(f.subjects)
  if (typeof subjects === 'string') return { errors: { subjects } }
  const old = base?.spec ?? {}
  const spec: SafetyPolicySpec = { ...old, mode: f.mode, selector: subjects.length ? { subjects } : {} } as SafetyPolicySpec
  const input = { ...(old.input ?? {}), detectors: rules(f.input) }
  const output = { ...(old.output ?? {}), detectors: rules(f.output) }
  const meaningful = (o: object) => Object.entries(o).some(([, v]) => (Array.isArray(v) ? v.length > 0 : v !== undefined && v !== null))
  if (meaningful(input)) spec.input = input
  else delete spec.input
  if (meaningful(output)) spec.output = output
  else delete spec.output
  return {
    document: {
      apiVersion: 'tollgate.dev/v1alpha1',
      kind: 'SafetyPolicy',
      metadata: { name: f.name.trim(), namespace: 'default' },
      spec,
    },
  }
}

export function safetyFieldsOf(doc: { metadata?: { name?: string | null }; spec?: Partial<SafetyPolicySpec> }): SafetyFields {
  const s = doc.spec ?? {}
  const rows = (d?: DetectorRule[] | null): DetectorRow[] => (d ?? []).map((r) => ({ id: r.id, action: r.action as RuleAction }))
  return {
    name: doc.metadata?.name ?? '',
    mode: (s.mode as SafetyFields['mode']) ?? 'enforce',
    subjects: (s.selector?.subjects ?? []).map((x) => `${x.kind}:${x.name}`).join(', '),
    input: rows(s.input?.detectors),
    output: rows(s.output?.detectors),
  }
}
