// Test harness: a real `latch serve` on a free loopback port with its own
// temporary SQLite database. The binary comes from LATCH_BIN (the Go test
// clients/js/js_test.go builds it and sets it). See README.md here.
import { spawn, execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** The latch binary, or a thrown error saying how to get one. */
export function latchBin() {
  const bin = process.env.LATCH_BIN
  if (!bin) throw new Error('LATCH_BIN is not set: run these tests through `go test ./clients/js` or set it to a built latch binary')
  return bin
}

/** A free TCP port on 127.0.0.1 (listen on 0, read it, close). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * Starts `latch serve` with the given extra flags. Every test signs up
 * from 127.0.0.1, so the rate limits are off unless rateLimit is true.
 * Returns
 * { url, port, database, dir, log(), admin(...args), stop() }.
 * `admin` runs an admin command (`clients create web --web …`) on the same
 * database; run those before requests that need them (the server reads
 * clients from storage on each request).
 */
export async function startLatch({ flags = [], env = {}, rateLimit = false } = {}) {
  const bin = latchBin()
  const dir = await mkdtemp(join(tmpdir(), 'latch-js-'))
  const database = 'sqlite:' + join(dir, 'latch.db')
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const args = ['serve', '--addr', `127.0.0.1:${port}`, '--database', database, ...(rateLimit ? [] : ['--rate-limit=false']), ...flags]
  let output = ''
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', (b) => { output += b })
  child.stderr.on('data', (b) => { output += b })
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)))
  const deadline = Date.now() + 20_000
  for (;;) {
    const code = await Promise.race([exited, new Promise((r) => setTimeout(r, 50, undefined))])
    if (code !== undefined) throw new Error(`latch serve exited with ${code}:\n${output}`)
    try {
      const res = await fetch(url + '/healthz')
      if (res.ok) break
    } catch {}
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`latch serve did not answer /healthz within 20 s:\n${output}`)
    }
  }
  return {
    url,
    port,
    database,
    dir,
    log: () => output,
    async admin(...adminArgs) {
      const { stdout } = await run(bin, [...adminArgs, '--database', database], { env: { ...process.env, ...env } })
      return stdout
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(t)
      }
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** A fresh email address, unique per call. */
let seq = 0
export function freshEmail(tag = 'user') {
  return `${tag}-${process.pid}-${Date.now()}-${seq++}@example.com`
}

/** A password that passes Latch's policy. */
export const PASSWORD = 'correct horse battery staple 42'
