import type { ResourceView } from '../api/types'

/**
 * A resource document as the CRD schema of its kind describes it. The API types
 * `ResourceView.document` as any JSON (it holds any kind), so pages say which kind they
 * read; fields may be missing in documents written elsewhere, hence `Partial`.
 */
export interface ResourceDoc<Spec, Status = never> {
  apiVersion?: string
  kind?: string
  metadata?: { name?: string | null; namespace?: string | null }
  spec?: Partial<Spec>
  status?: Status | null
}

export function documentOf<Spec, Status = never>(r: Pick<ResourceView, 'document'>): ResourceDoc<Spec, Status> {
  const d = r.document
  return d && typeof d === 'object' ? (d as ResourceDoc<Spec, Status>) : {}
}

/** `namespace/name`. */
export const resourceId = (r: Pick<ResourceView, 'namespace' | 'name'>) => `${r.namespace}/${r.name}`
