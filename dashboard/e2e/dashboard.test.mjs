// End-to-end: the built dashboard served by a real `tollgate up`, in a real Chromium.
// Run with `npm run test:e2e` (builds dist/ first). Needs /usr/bin/chromium and the
// tollgate binary ($TOLLGATE_BIN_DIR/tollgate, default /work/target/debug/tollgate).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import {
  apiClient,
  navigate,
  navLabels,
  refresh,
  screenshot,
  settled,
  signIn,
  signOut,
  startBrowser,
  startTollgate,
  until,
} from './harness.mjs'

const PAGES = {
  admin: ['Overview', 'Budgets', 'IP tokens', 'Safety policies', 'Agents & sandboxes', 'My usage', 'Requests', 'Audit log'],
  superuser: ['Overview', 'Budgets', 'My usage', 'Requests'],
  developer: ['Overview', 'Budgets', 'My usage', 'Requests'],
}
const ROLE_LABEL = { admin: 'Admin', superuser: 'Superuser', developer: 'Developer' }
const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')

describe('dashboard end to end', { timeout: 15 * 60_000 }, () => {
  let tg
  let b
  let api
  const keys = {}
  const canaries = []

  before(async () => {
    tg = await startTollgate()
    api = apiClient(tg.url)
    keys.admin = tg.key
    keys.developer = await api.createKey(tg.key, 'dana', 'developer')
    keys.superuser = await api.createKey(tg.key, 'sam', 'superuser')
    // A team budget owned by sam (a superuser); the UI test puts dana's budget under it.
    const parent = await api.call('POST', '/api/v1/resources/budgets', tg.key, {
      apiVersion: 'tollgate.dev/v1alpha1',
      kind: 'Budget',
      metadata: { name: 'engineering' },
      spec: {
        subject: { kind: 'team', name: 'engineering' },
        limit: '1000',
        period: 'monthly',
        owners: [{ kind: 'developer', name: 'sam' }],
      },
    })
    assert.equal(parent.status, 201, parent.text)
    b = await startBrowser()
  })

  after(async () => {
    await b?.close()
    await tg?.stop()
  })

  function assertNoUnexpectedErrors() {
    const bad = b.unexpectedErrors()
    assert.deepEqual(bad, [], `console errors or page errors:\n${JSON.stringify(bad, null, 2)}`)
  }

  test('the dashboard is served at / with an SPA fallback and hashed assets', async () => {
    const index = await fetch(`${tg.url}/`)
    assert.equal(index.status, 200)
    const html = await index.text()
    assert.match(html, /<div id="app">/)
    const asset = /src="(\/assets\/index-[\w-]+\.js)"/.exec(html)?.[1]
    assert.ok(asset, 'index.html loads a hashed bundle under /assets/')
    assert.equal((await fetch(`${tg.url}${asset}`)).status, 200)
    const deep = await fetch(`${tg.url}/budgets`)
    assert.equal(deep.status, 200)
    assert.match(await deep.text(), /<div id="app">/)
  })

  test('admin creates a budget through the form, seeing the server error on the field first', async () => {
    const page = await b.newPage('admin-budget')
    await signIn(page, tg.url, keys.admin)
    await navigate(page, 'Budgets')
    await page.getByRole('button', { name: 'New budget' }).click()
    await page.getByLabel('Name', { exact: true }).fill('dana')
    await page.getByLabel('Subject kind').selectOption('developer')
    await page.getByLabel('Subject name').fill('dana')
    await page.getByLabel('Limit (USD)').fill('twenty dollars')
    await page.getByLabel('Parent budget').selectOption('engineering')
    await page.getByLabel('Alert thresholds (%)').fill('50, 90')
    // The server refuses it (422); the browser logs that failed request as a console error.
    b.allow(/status of 4\d\d/)
    await page.getByRole('button', { name: 'Create budget' }).click()
    const error = page.locator('#budget-limit-error')
    await error.waitFor()
    assert.match(await error.innerText(), /decimal amount/)
    assert.equal(await page.getByLabel('Limit (USD)').getAttribute('aria-invalid'), 'true')
    assert.equal(await page.locator('.field-error').count(), 1, 'only the limit field shows an error')

    await page.getByLabel('Limit (USD)').fill('20')
    await page.getByRole('button', { name: 'Create budget' }).click()
    await page.getByText('Saved budget default/dana.').waitFor()
    // Shown in the tree under its parent.
    const row = page.locator('li[data-budget="default/engineering"] li[data-budget="default/dana"]')
    await row.waitFor()
    assert.equal(await row.getAttribute('data-state'), 'ok')
    assert.equal(await row.locator('.bar').first().getAttribute('data-used'), '0')

    // Edit the parent: the form starts with what is stored.
    await page.getByRole('button', { name: 'Edit budget default/engineering' }).click()
    assert.equal(await page.getByLabel('Limit (USD)').inputValue(), '1000')
    assert.equal(await page.getByLabel('Owners').inputValue(), 'developer:sam')
    await page.getByLabel('Limit (USD)').fill('500')
    await page.getByRole('button', { name: 'Save budget' }).click()
    await page.getByText('Saved budget default/engineering.').waitFor()
    const parent = page.locator('li[data-budget="default/engineering"]')
    await until('the new limit to show', async () => (await parent.locator('[data-field="limit"]').first().innerText()) === '$500.00')
    await page.context().close()
    assertNoUnexpectedErrors()
  })

  test("the developer's requests move their usage chart and the budget's bar, until it is exhausted", async () => {
    const dev = await b.newPage('developer-usage')
    await signIn(dev, tg.url, keys.developer)
    await navigate(dev, 'My usage')
    const todaySpend = dev.locator('[data-testid="my-usage-chart"] table[data-chart-table] tbody tr:last-child td').first()
    assert.equal(Number(await todaySpend.getAttribute('data-value')), 0)

    const admin = await b.newPage('admin-bars')
    await signIn(admin, tg.url, keys.admin)
    await navigate(admin, 'Budgets')
    const bar = admin.locator('li[data-budget="default/dana"]').locator('.bar').first()
    const parentBar = admin.locator('li[data-budget="default/engineering"]').locator('.bar').first()
    assert.equal(await bar.getAttribute('data-used'), '0')

    const first = await api.chat(keys.developer)
    assert.equal(first.status, 200, first.text)

    // Spend is read from rollups (every second here): poll.
    await until('the usage chart to show today’s spend', async () => {
      await refresh(dev)
      return Number(await todaySpend.getAttribute('data-value')) === 5
    })
    assert.match(await dev.locator('[data-testid="my-spend"]').innerText(), /\$5\.00/)
    await until('the budget bar to move', async () => {
      await refresh(admin)
      return (await bar.getAttribute('data-used')) === '25'
    })
    // The charge counts against the parent too ($5 of $500).
    assert.equal(await parentBar.getAttribute('data-used'), '1')

    // $5 a request against $20: three more are admitted, the next is refused.
    let refused = null
    for (let i = 0; i < 10 && !refused; i++) {
      const r = await api.chat(keys.developer)
      if (r.status === 429) refused = r
      else assert.equal(r.status, 200, r.text)
    }
    assert.ok(refused, 'the hard budget refuses requests at the limit')
    assert.equal(refused.json?.error?.code, 'budget_exceeded')

    const row = admin.locator('li[data-budget="default/dana"]')
    await until('the budget to show exhausted', async () => {
      await refresh(admin)
      return (await row.getAttribute('data-state')) === 'exhausted'
    })
    await row.getByText('Exhausted', { exact: true }).waitFor()
    assert.equal(await row.locator('[data-field="spent"]').innerText(), '$20.00')
    assert.equal(await row.locator('[data-field="remaining"]').innerText(), '$0.00')

    // The developer sees their own budget, exhausted, read-only.
    await navigate(dev, 'Budgets')
    const own = dev.locator('li[data-budget="default/dana"]')
    await own.getByText('Exhausted', { exact: true }).waitFor()
    assert.equal(await dev.getByRole('button', { name: /^Edit/ }).count(), 0)
    await until('the developer chart to show the whole spend', async () => {
      await navigate(dev, 'My usage')
      return Number(await todaySpend.getAttribute('data-value')) === 20
    })
    await dev.context().close()
    await admin.context().close()
    assertNoUnexpectedErrors()
  })

  test('an IP token key is write-only: never in the page, a response or the console', async () => {
    const canary = `sk-canary-${randomBytes(12).toString('hex')}`
    const rotated = `sk-canary-${randomBytes(12).toString('hex')}`
    canaries.push(canary, rotated)
    const page = await b.newPage('admin-iptokens')
    await signIn(page, tg.url, keys.admin)
    await navigate(page, 'IP tokens')
    await page.getByRole('button', { name: 'Add IP token' }).click()
    await page.getByLabel('Name', { exact: true }).fill('canary')
    await page.getByLabel('Provider', { exact: true }).selectOption('openai')
    await page.getByLabel('Models').fill('gpt-canary')
    const keyField = page.getByLabel('Provider key')
    assert.equal(await keyField.getAttribute('type'), 'password')
    await keyField.fill(canary)
    await page.getByRole('button', { name: 'Add IP token', exact: true }).last().click()
    await page.getByText('Added IP token default/canary.').waitFor()
    const row = page.locator('tr[data-token="default/canary"]')
    await row.getByText('key set').waitFor()
    assert.notEqual((await row.locator('td').nth(3).innerText()).trim(), '—', 'the last rotation is shown')

    // Rotate: the field is a password input and is cleared after the submit.
    await row.getByRole('button', { name: 'Rotate the key of default/canary' }).click()
    const rotateField = page.getByLabel('New key for canary')
    assert.equal(await rotateField.getAttribute('type'), 'password')
    await rotateField.fill(rotated)
    await page.getByRole('button', { name: 'Save key' }).click()
    await page.getByText('Stored a new key for default/canary.').waitFor()

    // Pages that show the token and what happened to it.
    await navigate(page, 'Audit log')
    await page.getByText('set-provider-key').first().waitFor()
    await navigate(page, 'IP tokens')
    await page.getByRole('button', { name: 'Add IP token' }).click()
    assert.equal(await page.getByLabel('Provider key').inputValue(), '', 'a new form starts empty')

    const html = await page.content()
    for (const c of canaries) assert.ok(!html.includes(c), 'the key is not in the page')
    await page.context().close()
    for (const r of await b.responseBodies()) {
      for (const c of canaries) assert.ok(!r.body.includes(c), `the key is not in the response of ${r.url}`)
    }
    for (const m of b.consoleMessages) for (const c of canaries) assert.ok(!m.text.includes(c), 'the key is not in the console')
    assertNoUnexpectedErrors()
  })

  test('a safety policy created in the UI highlights an e-mail address in the prompt tester', async () => {
    const page = await b.newPage('admin-safety')
    await signIn(page, tg.url, keys.admin)
    await navigate(page, 'Safety policies')
    await page.getByRole('button', { name: 'New policy' }).click()
    await page.getByLabel('Name', { exact: true }).fill('pii-guard')
    // The form starts with one input detector: pii.email → redact.
    assert.equal(await page.locator('#policy-input-0-id').inputValue(), 'pii.email')
    await page.getByRole('button', { name: 'Create policy' }).click()
    await page.getByText('Saved policy default/pii-guard.').waitFor()
    await page.locator('[data-testid="policies"]').getByText('pii.email → redact').waitFor()

    const text = 'Grüße 👋 — bitte schreib an dana@example.com, danke'
    await page.getByLabel('Policy', { exact: true }).selectOption('default/pii-guard')
    await page.getByLabel('Text', { exact: true }).fill(text)
    await page.getByRole('button', { name: 'Check' }).click()
    await page.locator('[data-testid="verdict"]').waitFor()
    assert.equal(await page.locator('[data-testid="verdict"]').innerText(), 'redact')
    const marks = await page.locator('[data-testid="highlighted"] mark').allInnerTexts()
    assert.deepEqual(marks, ['dana@example.com'])
    assert.equal(await page.locator('[data-testid="highlighted"]').innerText(), text)

    // A request with an address is a violation: it shows in the chart and on the overview.
    const r = await api.chat(keys.admin, 'mail me at someone@example.org')
    assert.equal(r.status, 200, r.text)
    await until('the violation to be counted', async () => {
      await refresh(page)
      const cells = await page.locator('figure table[data-chart-table] tbody td').evaluateAll((tds) =>
        tds.map((td) => Number(td.getAttribute('data-value'))),
      )
      return cells.reduce((a, n) => a + n, 0) >= 1
    })
    await navigate(page, 'Overview')
    await page.getByText('default/pii-guard · pii.email').first().waitFor()
    await page.context().close()
    assertNoUnexpectedErrors()
  })

  test('the request log filters and pages', async () => {
    for (let i = 0; i < 12; i++) assert.equal((await api.chat(keys.admin)).status, 200)
    const page = await b.newPage('admin-requests')
    await signIn(page, tg.url, keys.admin)
    await navigate(page, 'Requests')
    const rows = page.locator('[data-testid="requests"] tbody tr')
    assert.ok((await rows.count()) >= 18)

    // Ten per page: the next page continues where the first ended (nextCursor → cursor).
    await page.getByLabel('Rows per page').selectOption('10')
    await page.getByRole('button', { name: 'Apply filters' }).click()
    await settled(page)
    const ids = () => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('title')))
    const first = await ids()
    assert.equal(first.length, 10)
    await page.getByRole('button', { name: 'Next' }).click()
    await settled(page)
    const second = await ids()
    assert.ok(second.length >= 8, `a second page: ${second.length}`)
    assert.equal(second.filter((id) => first.includes(id)).length, 0, 'no row on both pages')
    await page.getByText('Page 2').waitFor()
    await page.getByRole('button', { name: 'Previous' }).click()
    await settled(page)
    assert.deepEqual(await ids(), first)
    await page.getByLabel('Rows per page').selectOption('50')

    await page.getByLabel('Outcome').selectOption('error')
    await page.getByRole('button', { name: 'Apply filters' }).click()
    await settled(page)
    const statuses = await page.locator('[data-testid="requests"] tbody tr td:nth-child(6) .badge').allInnerTexts()
    assert.ok(statuses.length >= 1 && statuses.every((s) => Number(s) >= 400), `only errors: ${statuses}`)
    await page.getByLabel('Outcome').selectOption('')
    await page.getByLabel('Principal').fill('dana')
    await page.getByRole('button', { name: 'Apply filters' }).click()
    await settled(page)
    const who = await page.locator('[data-testid="requests"] tbody tr td:nth-child(2)').allInnerTexts()
    assert.ok(who.length >= 5 && who.every((w) => w === 'dana'), `only dana: ${who}`)
    await page.context().close()
    assertNoUnexpectedErrors()
  })

  for (const role of ['admin', 'superuser', 'developer']) {
    test(`${role}: exactly the allowed pages and actions, on every page; sign out`, async () => {
      const page = await b.newPage(`${role}-tour`)
      await signIn(page, tg.url, keys[role])
      assert.equal(await page.locator('[data-testid="role"]').innerText(), ROLE_LABEL[role])
      assert.deepEqual(await navLabels(page), PAGES[role])
      for (const label of PAGES[role]) {
        await navigate(page, label)
        await screenshot(page, `${role}-${slug(label)}`)
      }

      await navigate(page, 'Budgets')
      const admin = role === 'admin'
      assert.equal(await page.getByRole('button', { name: 'New budget' }).count(), admin ? 1 : 0)
      assert.equal(await page.getByRole('button', { name: /^Edit budget/ }).count(), admin ? 2 : 0)
      // dana's budget is dana's own, and under engineering, which sam (a superuser) owns.
      assert.equal(await page.locator('li[data-budget="default/dana"]').count(), 1)
      assert.equal(await page.locator('li[data-budget="default/engineering"]').count(), role === 'developer' ? 0 : 1)

      if (!admin) {
        // Pages a role is not offered are not reachable by URL either.
        for (const path of ['/ip-tokens', '/safety', '/agents', '/audit']) {
          await page.goto(`${tg.url}${path}`)
          await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
        }
        await settled(page)
        assert.equal(await page.getByRole('button', { name: /New|Add IP token|Rotate/ }).count(), 0)
      } else {
        await navigate(page, 'IP tokens')
        assert.equal(await page.getByRole('button', { name: 'Add IP token' }).count(), 1)
      }

      // Everyone may set their own preferences.
      await navigate(page, 'My usage')
      await page.getByLabel('Preferred model').selectOption('mock-1')
      await page.getByLabel('Preferred provider').selectOption('mock')
      await page.getByRole('button', { name: 'Save preferences' }).click()
      await page.getByText('Saved.', { exact: true }).waitFor()

      // A reload keeps the session (sessionStorage), never localStorage.
      await page.reload()
      await page.locator('[data-testid="role"]').waitFor()
      const stored = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length }))
      assert.deepEqual(stored, { local: 0, session: 1 })

      await signOut(page)
      assert.equal(await page.evaluate(() => sessionStorage.length), 0)
      await page.goto(`${tg.url}/budgets`)
      await page.locator('#signin-key').waitFor()
      await page.context().close()
      assertNoUnexpectedErrors()
    })
  }

  for (const role of ['admin', 'developer']) {
    test(`${role} on a narrow screen: the navigation collapses behind a menu button`, async () => {
      const page = await b.newPage(`${role}-narrow`, { width: 400, height: 800 })
      await signIn(page, tg.url, keys[role])
      const nav = page.locator('nav[aria-label="Main"]')
      assert.equal(await nav.isVisible(), false)
      const menu = page.getByRole('button', { name: 'Menu' })
      assert.equal(await menu.getAttribute('aria-expanded'), 'false')
      await settled(page)
      await screenshot(page, `${role}-narrow-overview`)
      await menu.click()
      assert.equal(await menu.getAttribute('aria-expanded'), 'true')
      await page.waitForTimeout(300) // charts redraw for the new layout
      assert.deepEqual(await navLabels(page), PAGES[role])
      await screenshot(page, `${role}-narrow-menu`)
      await nav.getByRole('link', { name: 'Budgets' }).click()
      await page.getByRole('heading', { level: 1, name: 'Budgets' }).waitFor()
      assert.equal(await nav.isVisible(), false, 'choosing a page closes the menu')
      await settled(page)
      await screenshot(page, `${role}-narrow-budgets`)
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
      assert.ok(overflow <= 0, `no horizontal scrolling of the page (${overflow}px)`)
      await page.context().close()
      assertNoUnexpectedErrors()
    })
  }
})
