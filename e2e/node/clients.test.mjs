// The official Node SDKs against a real `tollgate up` with the mock provider, changing only
// base URL and key: openai's Responses API (create, stream, retrieve) and Chat Completions,
// and @anthropic-ai/sdk's messages, count_tokens and models.list.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'

import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'

const BIN = process.env.TOLLGATE_BIN_DIR ?? join(process.env.CARGO_TARGET_DIR ?? '../../target', 'debug')

/** Spawns `args`, resolves with the first match of `pattern` on stdout. */
function start(args, pattern, env = {}) {
  if (!existsSync(args[0])) throw new Error(`no binary at ${args[0]} (set TOLLGATE_BIN_DIR)`)
  const child = spawn(args[0], args.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  process.once('exit', () => child.kill('SIGKILL'))
  let out = ''
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (d) => (err = (err + d).slice(-10_000)))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start: ${err}`)), 30_000)
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d
      const m = out.match(pattern)
      if (m) {
        clearTimeout(timer)
        resolve({ child, match: m[1] })
      }
    })
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}: ${err}`)))
  })
}

let mock, gateway, key

before(async () => {
  mock = await start([join(BIN, 'tollgate-mock-provider'), '--listen', '127.0.0.1:0'], /listening on (\S+)/)
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-node-'))
  await writeFile(join(dir, 'resources.yaml'), `apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models: [{name: mock-1}]
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: claude-via-mock}
spec:
  provider: anthropic
  baseUrl: http://${mock.match}/v1
  secretRef: {name: anthropic, key: api-key}
  forwardHeaders: [x-mock-]
  models: [{name: claude-mock, upstreamName: claude-sonnet-4-5}]
`)
  const admin = 'tg-' + randomBytes(18).toString('base64url')
  gateway = await start(
    [join(BIN, 'tollgate'), 'up', '--listen', '127.0.0.1:0', '--database', `sqlite://${join(dir, 't.db')}`, '--resources', dir],
    /listening on (http:\/\/\S+)/,
    { TOLLGATE_ADMIN_KEY: admin, TOLLGATE_SECRET_ANTHROPIC_API_KEY: 'sk-ant-node-test' },
  )
  for (let i = 0; ; i++) {
    const r = await fetch(gateway.match + '/readyz').catch(() => null)
    if (r?.ok) break
    if (i > 200) throw new Error('tollgate up never became ready')
    await new Promise((r) => setTimeout(r, 50))
  }
  const r = await fetch(gateway.match + '/api/v1/keys', {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ principal: { kind: 'developer', name: 'node', role: 'developer' }, models: [] }),
  })
  assert.equal(r.status, 201)
  key = (await r.json()).key
})

after(() => {
  gateway?.child.kill('SIGTERM')
  mock?.child.kill('SIGTERM')
})

const openai = () => new OpenAI({ baseURL: gateway.match + '/v1', apiKey: key, maxRetries: 0 })
const anthropic = () => new Anthropic({ baseURL: gateway.match, apiKey: key, maxRetries: 0 })

for (const model of ['mock-1', 'claude-mock']) {
  test(`openai responses.create on ${model}`, async () => {
    const r = await openai().responses.create({ model, input: 'hello from node', instructions: 'be brief' })
    assert.equal(r.output_text, 'Mock reply to: hello from node')
    assert.ok(r.id.startsWith('resp_') && r.usage.output_tokens > 0)
    const again = await openai().responses.retrieve(r.id)
    assert.equal(again.output_text, r.output_text)
  })

  test(`openai responses.stream on ${model}`, async () => {
    const stream = openai().responses.stream({ model, input: 'node stream' })
    let text = ''
    stream.on('response.output_text.delta', (e) => (text += e.delta))
    const final = await stream.finalResponse()
    assert.equal(text, 'Mock reply to: node stream')
    assert.equal(final.output_text, text)
    assert.equal(final.status, 'completed')
  })
}

test('openai responses function call, chained with previous_response_id', async () => {
  const calls = JSON.stringify([{ name: 'get_weather', arguments: { city: 'Rome' } }])
  const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: false }]
  const r = await openai().responses.create({ model: 'mock-1', input: 'weather?', tools }, { headers: { 'x-mock-tool-calls': calls } })
  const call = r.output.find((o) => o.type === 'function_call')
  assert.deepEqual(JSON.parse(call.arguments), { city: 'Rome' })
  const next = await openai().responses.create(
    { model: 'mock-1', tools, previous_response_id: r.id, input: [{ type: 'function_call_output', call_id: call.call_id, output: 'warm' }] },
    { headers: { 'x-mock-reply': 'Warm in Rome.' } },
  )
  assert.equal(next.output_text, 'Warm in Rome.')
})

test('openai errors are the client exception types', async () => {
  await assert.rejects(openai().responses.create({ model: 'gpt-nope', input: 'x' }), OpenAI.NotFoundError)
  await assert.rejects(openai().responses.retrieve('resp_nope'), OpenAI.NotFoundError)
  await assert.rejects(
    new OpenAI({ baseURL: gateway.match + '/v1', apiKey: 'tg-wrong', maxRetries: 0 }).responses.create({ model: 'mock-1', input: 'x' }),
    OpenAI.AuthenticationError,
  )
})

test('anthropic messages, count_tokens and models.list', async () => {
  const m = await anthropic().messages.create({ model: 'claude-mock', max_tokens: 50, messages: [{ role: 'user', content: 'hi node' }] })
  assert.equal(m.content[0].text, 'Mock reply to: hi node')
  const short = await anthropic().messages.countTokens({ model: 'claude-mock', messages: [{ role: 'user', content: 'hi' }] })
  const long = await anthropic().messages.countTokens({ model: 'claude-mock', messages: [{ role: 'user', content: 'hi '.repeat(100) }] })
  assert.ok(short.input_tokens > 0 && long.input_tokens > short.input_tokens)
  await assert.rejects(
    anthropic().messages.countTokens({ model: 'claude-nope', messages: [{ role: 'user', content: 'x' }] }),
    Anthropic.NotFoundError,
  )
  const ids = []
  for await (const model of anthropic().models.list()) ids.push(model.id)
  assert.deepEqual(ids.sort(), ['claude-mock', 'mock-1'])
  const one = await anthropic().models.retrieve('claude-mock')
  assert.equal(one.type, 'model')
})
