#!/usr/bin/env node
// Generates src/api/schema.d.ts from the control plane's OpenAPI document
// (../operator/openapi.json, itself generated from the Rust code). `npm run gen:api`
// writes it; `--check` exits 1 when the committed file is stale. The Vitest suite calls
// `generate()` too (tests/schema.test.ts), so both use the same options.
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript'

const here = dirname(fileURLToPath(import.meta.url))
export const SPEC = resolve(here, '../../operator/openapi.json')
export const OUTPUT = resolve(here, '../src/api/schema.d.ts')

/** The TypeScript text for the OpenAPI document at `spec`. */
export async function generate(spec = SPEC) {
  const document = JSON.parse(await readFile(spec, 'utf8'))
  const ast = await openapiTS(document, {
    // Fields with a server-side default may be left out of request bodies.
    defaultNonNullable: false,
    alphabetize: true,
    silent: true,
  })
  return `${COMMENT_HEADER}${astToString(ast)}`
}

const main = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]
if (main) {
  const text = await generate()
  if (process.argv.includes('--check')) {
    const current = await readFile(OUTPUT, 'utf8').catch(() => '')
    if (current !== text) {
      console.error('src/api/schema.d.ts is stale: run `npm run gen:api`')
      process.exit(1)
    }
    console.log('src/api/schema.d.ts is up to date')
  } else {
    await writeFile(OUTPUT, text)
    console.log(`wrote ${OUTPUT}`)
  }
}
