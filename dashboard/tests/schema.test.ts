// @vitest-environment node
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generate, OUTPUT, SPEC } from '../scripts/gen-api.mjs'

describe('generated API types', () => {
  it('src/api/schema.d.ts matches ../operator/openapi.json (run `npm run gen:api` when this fails)', async () => {
    const expected = await generate()
    const committed = await readFile(OUTPUT, 'utf8')
    expect(committed === expected, 'src/api/schema.d.ts is stale: run `npm run gen:api`').toBe(true)
  }, 60_000)

  it('would notice a change to the OpenAPI document', async () => {
    const spec = JSON.parse(await readFile(SPEC, 'utf8')) as { paths: Record<string, unknown> }
    spec.paths['/api/v1/staleness-probe'] = {
      get: { operationId: 'probe', responses: { '200': { description: 'ok', content: { 'application/json': { schema: { type: 'string' } } } } } },
    }
    const dir = await mkdtemp(join(tmpdir(), 'tollgate-openapi-'))
    try {
      const file = join(dir, 'openapi.json')
      await writeFile(file, JSON.stringify(spec))
      const changed = await generate(file)
      expect(changed).not.toBe(await readFile(OUTPUT, 'utf8'))
      expect(changed).toContain('/api/v1/staleness-probe')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
