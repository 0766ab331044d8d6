// The end-to-end harness: a real `tollgate up` (its own SQLite file and resources), a real
// Chromium driven by playwright-core, and a record of everything the pages did (console,
// page errors, response bodies) so tests can assert on it.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = dirname(fileURLToPath(import.meta.url))
export const DASHBOARD = resolve(here, '..')
export const DIST = join(DASHBOARD, 'dist')
export const SCREENSHOTS = join(here, 'screenshots')
export const CHROMIUM = process.env.TOLLGATE_CHROMIUM ?? process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const TOLLGATE = join(process.env.TOLLGATE_BIN_DIR ?? '/work/target/debug', 'tollgate')

// mock-1 costs $1 per output token and nothing per input token: with `max_tokens: 5` the
// worst case the gateway reserves equals what the mock answers (5 tokens), so a $20 budget
// takes exactly four requests and is then exhausted (spent == limit).
export const RESOURCES = `apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
    - name: mock-embedding-1
      kind: embedding
`

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Polls `fn` until it returns a truthy value; throws with `what` after `timeout` ms. */
export async function until(what, fn, { timeout = 30_000, interval = 500 } = {}) {
  const end = Date.now() + timeout
  let last
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
      last = v
    } catch (e) {
      last = e
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`)
    await sleep(interval)
  }
}

async function waitForChromium() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium, or set TOLLGATE_CHROMIUM`)
}

/** Starts `tollgate up`; resolves with its URL and admin key once it listens. */
export async function startTollgate() {
  if (!existsSync(TOLLGATE)) throw new Error(`no tollgate binary at ${TOLLGATE} (set TOLLGATE_BIN_DIR)`)
  if (!existsSync(join(DIST, 'index.html'))) throw new Error('dashboard/dist is not built: run `npm run build` (or `npm run test:e2e`, which builds)')
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-dashboard-e2e-'))
  const resources = join(dir, 'resources.yaml')
  await writeFile(resources, RESOURCES)
  const database = `sqlite://${join(dir, 't.db')}`
  const args = ['up', '--listen', '127.0.0.1:0', '--rollup-seconds', '1', '--dashboard', DIST, '-f', resources]
  // The database goes in through the environment: the flag's name (`--database`) has
  // changed before; the variable is the documented alternative.
  const child = spawn(TOLLGATE, args, {
    env: { ...process.env, TOLLGATE_DATABASE_URL: database, TOLLGATE_LOG_FORMAT: 'text' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d.slice(-20_000)))
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })))
  // Never leave it running, even when the test process dies early.
  const reap = () => child.kill('SIGKILL')
  process.once('exit', reap)
  const started = await Promise.race([
    until('tollgate to listen', () => {
      const key = /Admin key \(shown once; store it now\): (tg-\S+)/.exec(stdout)?.[1]
      const url = /Tollgate listening on (http:\/\/\S+)/.exec(stdout)?.[1]
      return key && url ? { key, url: url.replace(/\/$/, '') } : null
    }, { timeout: 60_000, interval: 100 }),
    exited.then(({ code, signal }) => {
      throw new Error(`tollgate exited (${code ?? signal}) before listening:\n${stdout}\n${stderr}`)
    }),
  ])
  return {
    ...started,
    dir,
    logs: () => `${stdout}\n${stderr}`,
    async stop() {
      process.off('exit', reap)
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(t)
      }
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** The admin API and the gateway, with fetch. */
export function apiClient(url) {
  async function call(method, path, key, body) {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    })
    const text = await res.text()
    let json = null
    try {
      json = JSON.parse(text)
    } catch {
      // not JSON
    }
    return { status: res.status, json, text }
  }
  return {
    call,
    async createKey(adminKey, name, role) {
      const r = await call('POST', '/api/v1/keys', adminKey, { principal: { kind: 'developer', name, role } })
      if (r.status !== 201) throw new Error(`POST /api/v1/keys: ${r.status} ${r.text}`)
      return r.json.key
    },
    chat(key, content = 'hi') {
      return call('POST', '/v1/chat/completions', key, {
        model: 'mock-1',
        max_tokens: 5,
        messages: [{ role: 'user', content }],
      })
    },
  }
}

/**
 * The browser, and everything its pages did. `allow(pattern)` permits one console error
 * matching `pattern` (a 4xx a test provokes on purpose shows as "Failed to load resource");
 * `unexpectedErrors()` is every other console error and page error.
 */
export async function startBrowser() {
  await waitForChromium()
  await mkdir(SCREENSHOTS, { recursive: true })
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
  const consoleMessages = []
  const errors = []
  const allowances = []
  const bodies = []
  const pending = new Set()

  function watch(page, label) {
    page.on('console', (m) => {
      const entry = { page: label, type: m.type(), text: m.text(), url: m.location()?.url ?? '' }
      consoleMessages.push(entry)
      if (m.type() === 'error') errors.push(entry)
    })
    page.on('pageerror', (e) => errors.push({ page: label, type: 'pageerror', text: String(e?.stack ?? e) }))
    page.on('response', (r) => {
      const p = r
        .body()
        .then((b) => bodies.push({ url: r.url(), status: r.status(), body: b.toString('utf8') }))
        .catch(() => {})
        .finally(() => pending.delete(p))
      pending.add(p)
    })
  }

  return {
    browser,
    async newPage(label, viewport = { width: 1280, height: 900 }) {
      // Reduced motion: charts draw without animation, so screenshots are stable.
      const context = await browser.newContext({ viewport, reducedMotion: 'reduce' })
      const page = await context.newPage()
      watch(page, label)
      return page
    },
    allow(pattern) {
      allowances.push({ pattern, used: false })
    },
    /** Console and page errors since the last call that no `allow` covers. */
    unexpectedErrors() {
      const fresh = errors.splice(0, errors.length)
      return fresh.filter((e) => {
        const a = allowances.find((x) => !x.used && x.pattern.test(e.text))
        if (a) {
          a.used = true
          return false
        }
        return true
      })
    },
    /** Every response body seen so far (after the pending ones arrive). */
    async responseBodies() {
      await Promise.all([...pending])
      return bodies
    },
    consoleMessages,
    async close() {
      await browser.close()
    },
  }
}

/** Signs in through the form; resolves once the header shows the role. */
export async function signIn(page, base, key) {
  await page.goto(`${base}/sign-in`)
  await page.getByLabel('Key').fill(key)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.locator('[data-testid="role"]').waitFor()
}

export async function signOut(page) {
  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.locator('#signin-key').waitFor()
}

/** Waits until no section of the page is loading. */
export async function settled(page) {
  await page.waitForFunction(() => !document.querySelector('.state-loading, [aria-busy="true"]'), null, { timeout: 15_000 })
  await page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {})
}

/** Opens a page through the navigation (opening the menu first on a narrow screen). */
export async function navigate(page, label) {
  const nav = page.locator('nav[aria-label="Main"]')
  if (!(await nav.isVisible())) await page.getByRole('button', { name: 'Menu' }).click()
  await nav.getByRole('link', { name: label, exact: true }).click()
  await page.getByRole('heading', { level: 1, name: label === 'My usage' ? 'My usage' : label }).waitFor()
  await settled(page)
}

export async function navLabels(page) {
  return page.locator('nav[aria-label="Main"] a').allTextContents()
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true })
}

/** Clicks the page's Refresh button and waits for it to settle. */
export async function refresh(page) {
  await page.getByRole('button', { name: 'Refresh' }).first().click()
  await settled(page)
}
