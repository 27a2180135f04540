// A static web server for browser tests: serves clients/js/dist under
// /dist/ and the given pages (path → HTML string) on a free loopback port,
// so the page's origin differs from Latch's (http://127.0.0.1:<other port>).
// Pages carry a strict CSP (no inline script), like a careful app would.
import { createServer } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'

export const distDir = fileURLToPath(new URL('../../dist/', import.meta.url))

const types = { '.js': 'text/javascript', '.html': 'text/html; charset=utf-8', '.mjs': 'text/javascript' }

/**
 * serveStatic({ pages: { '/app.html': '<html>…', '/app.js': 'code' }, host })
 * → { origin, close() }. host defaults to 127.0.0.1; pass 'localhost' for
 * a cross-site origin.
 */
export async function serveStatic({ pages = {}, host = '127.0.0.1', connectSrc = '*' } = {}) {
  const srv = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname
    const csp = `default-src 'none'; script-src 'self'; connect-src ${connectSrc}; style-src 'self'; img-src 'self'`
    let body
    let ext = path.slice(path.lastIndexOf('.'))
    if (path in pages) {
      body = pages[path]
    } else if (path.startsWith('/dist/')) {
      const file = normalize(join(distDir, path.slice('/dist/'.length)))
      if (!file.startsWith(distDir)) { res.writeHead(404).end(); return }
      try { body = await readFile(file) } catch { res.writeHead(404).end(); return }
    } else {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'Content-Type': types[ext] ?? 'application/octet-stream', 'Content-Security-Policy': csp, 'Cache-Control': 'no-store' })
    res.end(body)
  })
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const origin = `http://${host}:${srv.address().port}`
  return { origin, close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(r) }) }
}
