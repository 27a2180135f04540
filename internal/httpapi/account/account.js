// The account page's script: the Latch JavaScript client in cookie mode on
// Latch's own origin. No inline script anywhere (the CSP forbids it); the
// issuer and client id come from data attributes of <body>.
import { createClient, LatchError, SessionEndedError } from '/account/lib/index.js'

const $ = (id) => document.getElementById(id)
const latch = createClient({ issuer: document.body.dataset.issuer, clientId: document.body.dataset.client })

function say(msg) { $('error').textContent = ''; $('status').textContent = msg }
function fail(e) {
  $('status').textContent = ''
  $('error').textContent = e instanceof LatchError ? e.message : e instanceof SessionEndedError ? 'You have been signed out.' : 'Latch could not be reached. Try again.'
}

/** Browser and operating system from a User-Agent string, for people. */
export function describe(ua) {
  ua = ua || ''
  const browser =
    /Edg\//.test(ua) ? 'Edge' :
    /OPR\/|Opera/.test(ua) ? 'Opera' :
    /Firefox\//.test(ua) ? 'Firefox' :
    /(Headless)?Chrome\/|CriOS\//.test(ua) ? 'Chrome' :
    /Safari\//.test(ua) && /Version\//.test(ua) ? 'Safari' :
    /^node|undici/i.test(ua) ? 'Node.js' :
    /^curl\//.test(ua) ? 'curl' :
    /^Go-http-client/.test(ua) ? 'Go program' :
    /^latch/i.test(ua) ? 'Latch CLI' : ''
  const os =
    /iPhone|iPad|iPod/.test(ua) ? 'iOS' :
    /Android/.test(ua) ? 'Android' :
    /CrOS/.test(ua) ? 'ChromeOS' :
    /Mac OS X|Macintosh/.test(ua) ? 'macOS' :
    /Windows/.test(ua) ? 'Windows' :
    /Linux|X11/.test(ua) ? 'Linux' : ''
  if (browser && os) return `${browser} on ${os}`
  return browser || os || 'Unknown device'
}

function when(iso) {
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
}

function show(view) {
  $('signin').hidden = view !== 'signin'
  $('account').hidden = view !== 'account'
}

async function busy(button, fn) {
  button.disabled = true
  try { await fn() } catch (e) { fail(e) } finally { button.disabled = false }
}

async function renderDevices() {
  const list = await latch.sessions()
  list.sort((a, b) => (b.current - a.current) || (b.lastUsedAt > a.lastUsedAt ? 1 : -1))
  const ul = $('devices')
  ul.replaceChildren()
  for (const s of list) {
    const li = document.createElement('li')
    li.dataset.session = s.id
    const name = document.createElement('span')
    name.className = 'name'
    name.textContent = describe(s.userAgent)
    if (s.current) {
      const b = document.createElement('span')
      b.className = 'badge'
      b.textContent = 'This device'
      name.append(b)
    }
    const meta = document.createElement('p')
    meta.className = 'meta'
    meta.textContent = `IP ${s.ip || 'unknown'} · last used ${when(s.lastUsedAt)} · signed in ${when(s.createdAt)}`
    li.append(name)
    if (!s.current) {
      const out = document.createElement('button')
      out.type = 'button'
      out.className = 'secondary'
      out.textContent = 'Sign out'
      out.setAttribute('aria-label', `Sign out ${describe(s.userAgent)}, last used ${when(s.lastUsedAt)}`)
      out.addEventListener('click', () => busy(out, async () => {
        await latch.revokeSession(s.id)
        say(`${describe(s.userAgent)} is signed out.`)
        await renderDevices()
      }))
      li.append(out)
    }
    li.append(meta)
    ul.append(li)
  }
  ul.setAttribute('aria-label', `${list.length} ${list.length === 1 ? 'device' : 'devices'}`)
}

async function renderUser() {
  const u = await latch.me()
  const who = $('who')
  who.textContent = `Signed in as ${u.email}`
  const b = document.createElement('span')
  b.className = 'badge'
  b.textContent = u.emailVerified ? 'verified' : 'not verified'
  who.append(b)
  $('verify').hidden = u.emailVerified
}

async function signedIn() {
  show('account')
  await Promise.all([renderUser(), renderDevices()])
  document.body.dataset.state = 'account'
}

function signedOut() {
  show('signin')
  document.body.dataset.state = 'signin'
}

latch.onChange((s) => {
  if (!s && !$('account').hidden) {
    signedOut()
    say('You are signed out.')
    $('signin-title').focus()
  }
})

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const button = ev.submitter ?? $('signin-form').querySelector('button')
  busy(button, async () => {
    const email = $('email').value.trim()
    const password = $('password').value
    if (!email || !password) { $('error').textContent = 'Enter your email and password.'; return }
    await latch.signIn({ email, password })
    $('password').value = ''
    say('Signed in.')
    await signedIn()
    $('account-title').focus()
  })
})

$('signout').addEventListener('click', (ev) => busy(ev.currentTarget, () => latch.signOut({ scope: 'current' })))
$('signout-all').addEventListener('click', (ev) => busy(ev.currentTarget, () => latch.signOut({ scope: 'all' })))
$('signout-others').addEventListener('click', (ev) => busy(ev.currentTarget, async () => {
  await latch.signOut({ scope: 'others' })
  say('Every other device is signed out.')
  await renderDevices()
}))

$('password-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const button = ev.submitter ?? $('password-form').querySelector('button')
  busy(button, async () => {
    await latch.changePassword({ currentPassword: $('current-password').value, newPassword: $('new-password').value })
    $('current-password').value = ''
    $('new-password').value = ''
    say('Your password is changed. Every other device is signed out.')
    await renderDevices()
  })
})

$('verify').addEventListener('click', (ev) => busy(ev.currentTarget, async () => {
  await latch.requestVerification()
  say('A verification link is on its way to your address.')
}))

$('email-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const button = ev.submitter ?? $('email-form').querySelector('button')
  busy(button, async () => {
    const newEmail = $('new-email').value.trim()
    await latch.changeEmail({ newEmail, password: $('email-password').value })
    $('email-password').value = ''
    say(`Open the link sent to ${newEmail} to finish the change.`)
  })
})

$('delete-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const button = ev.submitter ?? $('delete-form').querySelector('button')
  busy(button, async () => {
    await latch.deleteAccount({ password: $('delete-password').value })
    $('delete-password').value = ''
    signedOut()
    say('Your account is deleted.')
    $('signin-title').focus()
  })
})

// A page load: the session is restored from the HttpOnly cookie, if any.
latch.getAccessToken().then(
  (t) => (t ? signedIn() : signedOut()),
  (e) => { signedOut(); fail(e) },
)
