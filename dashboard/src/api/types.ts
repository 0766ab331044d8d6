/**
 * The shapes the dashboard works with, all from the generated OpenAPI types (`schema.d.ts`,
 * `npm run gen:api` from ../operator/openapi.json).
 */
import type { components, paths } from './schema'

export type Schemas = components['schemas']

export type Me = Schemas['Me']
export type ModelChoice = Schemas['ModelChoice']
export type Preferences = Schemas['Preferences']
export type Role = Schemas['Role']

export type BudgetList = Schemas['BudgetList']
export type BudgetView = Schemas['BudgetView']

export type UsageSummary = Schemas['UsageSummary']
export type UsageTotals = Schemas['UsageTotals']

export type RequestPage = Schemas['UsageRowList']
export type RequestRow = Schemas['UsageRow']

export type KeyPage = Schemas['KeyRecordList']
export type KeyRecord = Schemas['KeyRecord']

export type AuditPage = Schemas['AuditEntryList']
export type AuditEntry = Schemas['AuditEntry']

export type ResourcePage = Schemas['ResourceViewList']
export type ResourceView = Schemas['ResourceView']

export type SafetyCheck = Schemas['CheckResult']
export type Finding = Schemas['Finding']

export type Violations = Schemas['Violations']
export type Violation = Schemas['FindingEvent']

export type Breakers = Schemas['BreakerList']
export type Breaker = Schemas['BreakerView']

/** Resource kinds as the API paths spell them (`kind_param` also takes the singular). */
export type KindPath = 'iptokens' | 'budgets' | 'safetypolicies' | 'agents' | 'sandboxes' | 'dataplanes'

// Resource specs (request bodies).
export type BudgetSpec = Schemas['BudgetSpec']
export type IpTokenSpec = Schemas['IpTokenSpec']
export type SafetyPolicySpec = Schemas['SafetyPolicySpec']
export type DetectorRule = Schemas['DetectorRule']
export type AgentSpec = Schemas['AgentSpec']
export type AgentStatus = Schemas['AgentStatus']
export type SandboxSpec = Schemas['SandboxSpec']
export type SandboxStatus = Schemas['SandboxStatus']

/** The generated body of POST /api/v1/resources/{kind}: one of the resource documents. */
export type ResourceBody = NonNullable<paths['/api/v1/resources/{kind}']['post']['requestBody']>['content']['application/json']

/** Whole resource documents (apiVersion, kind, metadata, spec) as the API takes them. */
export type BudgetDocument = Schemas['Budget']
export type IpTokenDocument = Schemas['IPToken']
export type SafetyPolicyDocument = Schemas['SafetyPolicy']
