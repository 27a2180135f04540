// Headless Debian chromium through puppeteer-core, with a fresh profile.
// Browser tests skip when /usr/bin/chromium is missing, unless
// LATCH_TEST_BROWSER=1 (CI), which makes a missing browser a failure.
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import puppeteer from 'puppeteer-core'

export const CHROMIUM = process.env.LATCH_CHROMIUM ?? '/usr/bin/chromium'

/** For node:test's `skip` option: a reason to skip, or false to run. */
export function browserSkip() {
  if (existsSync(CHROMIUM)) return false
  if (process.env.LATCH_TEST_BROWSER === '1') return false // run, and fail in launch
  return `no browser at ${CHROMIUM} (set LATCH_TEST_BROWSER=1 to require one)`
}

/** Launches chromium; returns { browser, close() }. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`LATCH_TEST_BROWSER=1 but there is no browser at ${CHROMIUM} (apt-get install chromium)`)
  const profile = await mkdtemp(join(tmpdir(), 'latch-chromium-'))
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Long page.evaluate calls (tabs.test.mjs runs one for minutes).
    protocolTimeout: 15 * 60_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${profile}`,
    ],
  })
  return {
    browser,
    async close() {
      await browser.close().catch(() => {})
      await rm(profile, { recursive: true, force: true })
    },
  }
}
