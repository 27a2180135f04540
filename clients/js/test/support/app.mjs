// A test app page: loads dist/index.js with <script type="module"> (no
// inline script; the static server's CSP forbids it) and exposes the
// client as window.latch. Query parameters: issuer, client (default
// "web"), lockTimeout (ms). window.events records onChange: "in" / "out".
export const appPages = {
  '/app.html': '<!doctype html><html lang="en"><title>app</title><script type="module" src="/app.js"></script></html>',
  '/app.js': `import { createClient } from '/dist/index.js'
const q = new URLSearchParams(location.search)
const opts = { issuer: q.get('issuer'), clientId: q.get('client') || 'web' }
if (q.get('lockTimeout')) opts.lockTimeoutMs = Number(q.get('lockTimeout'))
if (q.get('dpop')) opts.dpop = true
const latch = createClient(opts)
window.latch = latch
window.events = []
latch.onChange((s) => window.events.push(s ? 'in' : 'out'))
// Calls an API through latch.fetch every interval ms for duration ms;
// resolves with the statuses seen and any thrown errors.
window.hammer = async (url, duration, interval) => {
  const out = { statuses: {}, errors: [], calls: 0 }
  const end = Date.now() + duration
  while (Date.now() < end) {
    try {
      const r = await latch.fetch(url)
      out.statuses[r.status] = (out.statuses[r.status] || 0) + 1
    } catch (e) {
      out.errors.push(String(e))
    }
    out.calls++
    await new Promise((r) => setTimeout(r, interval))
  }
  return out
}
document.title = 'ready'
`,
}

/** Opens the app page in a new tab of browser and waits for it. */
export async function openApp(browser, site, issuer, params = {}) {
  const page = await browser.newPage()
  const q = new URLSearchParams({ issuer, ...params })
  await page.goto(`${site.origin}/app.html?${q}`)
  await page.waitForFunction(() => document.title === 'ready')
  return page
}

/** Counts the refresh requests a page sends (POST /oauth/token, refresh grant), with their times. */
export function countRefreshes(page, into = []) {
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/oauth/token') && (r.postData() ?? '').includes('grant_type=refresh_token')) into.push(Date.now())
  })
  return into
}
