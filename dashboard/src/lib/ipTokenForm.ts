/** The IP-token form's fields → an IPToken resource document. */
import type { IpTokenDocument, IpTokenSpec } from '../api/types'

export const PROVIDERS = ['openai', 'anthropic', 'azure-openai', 'openai-compatible', 'mock'] as const
export type Provider = (typeof PROVIDERS)[number]

export interface IpTokenFields {
  name: string
  provider: Provider
  baseUrl: string
  models: string
  secretName: string
  secretKey: string
}

export type IpTokenField = keyof IpTokenFields | 'key'

export const IPTOKEN_PARAMS: Record<string, IpTokenField> = {
  'metadata.name': 'name',
  'spec.provider': 'provider',
  'spec.baseUrl': 'baseUrl',
  'spec.models': 'models',
  'spec.secretRef.name': 'secretName',
  'spec.secretRef.key': 'secretKey',
  'spec.secretRef': 'secretName',
  value: 'key',
}

export function emptyIpTokenFields(): IpTokenFields {
  return { name: '', provider: 'openai', baseUrl: '', models: '', secretName: '', secretKey: 'api-key' }
}

export function ipTokenDocument(f: IpTokenFields): IpTokenDocument {
  const models = f.models
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean)
    .map((name) => ({ name }))
  const spec: IpTokenSpec = { provider: f.provider, models } as IpTokenSpec
  if (f.baseUrl.trim()) spec.baseUrl = f.baseUrl.trim()
  const secretName = f.secretName.trim() || f.name.trim()
  if (secretName) spec.secretRef = { name: secretName, key: f.secretKey.trim() || 'api-key' }
  return {
    apiVersion: 'tollgate.dev/v1alpha1',
    kind: 'IPToken',
    metadata: { name: f.name.trim(), namespace: 'default' },
    spec,
  }
}
