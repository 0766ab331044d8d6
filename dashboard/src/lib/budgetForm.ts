/** The budget form's fields ⇄ a Budget resource document. */
import type { BudgetDocument, BudgetSpec } from '../api/types'

export interface BudgetFields {
  name: string
  subjectKind: 'developer' | 'team' | 'agent' | 'namespace'
  subjectName: string
  limit: string
  period: string
  enforcement: 'hard' | 'soft'
  parent: string
  alertThresholds: string
  onExhausted: string
  owners: string
  timeZone: string
}

export type BudgetField = keyof BudgetFields

/** API field paths (`param` of errors) → form fields. */
export const BUDGET_PARAMS: Record<string, BudgetField> = {
  'metadata.name': 'name',
  'spec.subject.kind': 'subjectKind',
  'spec.subject.name': 'subjectName',
  'spec.subject': 'subjectName',
  'spec.limit': 'limit',
  'spec.period': 'period',
  'spec.enforcement': 'enforcement',
  'spec.parent': 'parent',
  'spec.alertThresholds': 'alertThresholds',
  'spec.onExhausted': 'onExhausted',
  'spec.owners': 'owners',
  'spec.timeZone': 'timeZone',
}

export function emptyBudgetFields(): BudgetFields {
  return {
    name: '',
    subjectKind: 'developer',
    subjectName: '',
    limit: '',
    period: 'monthly',
    enforcement: 'hard',
    parent: '',
    alertThresholds: '50, 90',
    onExhausted: 'block',
    owners: '',
    timeZone: '',
  }
}

/** Errors found before sending (things the form itself turns into the document). */
export type LocalErrors = Partial<Record<BudgetField, string>>

function parseThresholds(text: string): number[] | string {
  const parts = text.split(/[,\s]+/).filter(Boolean)
  const out: number[] = []
  for (const p of parts) {
    if (!/^\d+$/.test(p)) return `"${p}" is not a whole percentage`
    out.push(Number(p))
  }
  return out
}

function parseOwners(text: string): { kind: 'developer' | 'team'; name: string }[] | string {
  const out: { kind: 'developer' | 'team'; name: string }[] = []
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [kind, name] = part.includes(':') ? part.split(':', 2).map((s) => s.trim()) : ['developer', part]
    if (kind !== 'developer' && kind !== 'team') return `"${part}": write developer:NAME or team:NAME`
    if (!name) return `"${part}" names no one`
    out.push({ kind, name })
  }
  return out
}

/**
 * The document for the fields, keeping whatever else `base` (the stored resource, when
 * editing) has in its spec (`allowedModels`, ...). Returns local errors instead when a field
 * cannot be turned into JSON; everything else (the limit's format, names, the period) is
 * left to the server, whose errors name the field.
 */
export function budgetDocument(
  f: BudgetFields,
  base?: { spec?: Partial<BudgetSpec> } | null,
): { document: BudgetDocument } | { errors: LocalErrors } {
  const errors: LocalErrors = {}
  const thresholds = parseThresholds(f.alertThresholds)
  if (typeof thresholds === 'string') errors.alertThresholds = thresholds
  const owners = parseOwners(f.owners)
  if (typeof owners === 'string') errors.owners = owners
  if (typeof thresholds === 'string' || typeof owners === 'string') return { errors }
  const spec: BudgetSpec = {
    ...(base?.spec ?? {}),
    subject: { kind: f.subjectKind, name: f.subjectName.trim() },
    limit: f.limit.trim(),
    period: f.period.trim(),
    enforcement: f.enforcement,
    onExhausted: f.onExhausted.trim() || 'block',
  }
  if (f.parent) spec.parent = f.parent
  else delete spec.parent
  if (thresholds.length) spec.alertThresholds = thresholds
  else delete spec.alertThresholds
  if (owners.length) spec.owners = owners
  else delete spec.owners
  if (f.timeZone.trim()) spec.timeZone = f.timeZone.trim()
  else delete spec.timeZone
  const [namespace, name] = f.name.includes('/') ? f.name.split('/', 2) : ['default', f.name]
  return {
    document: {
      apiVersion: 'tollgate.dev/v1alpha1',
      kind: 'Budget',
      metadata: { name: (name ?? '').trim(), namespace: namespace || 'default' },
      spec,
    },
  }
}

/** The fields for a stored Budget document. */
export function budgetFieldsOf(doc: { metadata?: { name?: string | null }; spec?: Partial<BudgetSpec> }): BudgetFields {
  const s = doc.spec ?? {}
  const f = emptyBudgetFields()
  return {
    ...f,
    name: doc.metadata?.name ?? '',
    subjectKind: (s.subject?.kind as BudgetFields['subjectKind']) ?? f.subjectKind,
    subjectName: s.subject?.name ?? '',
    limit: s.limit ?? '',
    period: s.period ?? f.period,
    enforcement: (s.enforcement as BudgetFields['enforcement']) ?? 'hard',
    parent: s.parent ?? '',
    alertThresholds: (s.alertThresholds ?? []).join(', '),
    onExhausted: s.onExhausted ?? 'block',
    owners: (s.owners ?? []).map((o) => `${o.kind}:${o.name}`).join(', '),
    timeZone: s.timeZone ?? '',
  }
}
