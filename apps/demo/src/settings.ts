/**
 * What the page is pointed at and who is typing: pure functions over the page's address and a
 * `Storage`, so the editor wiring in main.ts stays thin and this is tested in Node.
 *
 * Address: `/#<document>` (the name may contain `/`), `?token=<jwt>` when nodes run
 * AUTH_MODE=jwt, `?server=ws://host:port` to use another node than the one serving the page.
 */

export interface Target {
  /** Document name, as the y-websocket room (the node validates it: close 4404 with the rule). */
  readonly doc: string
  readonly token: string | null
  /** WebSocket base URL; the provider appends `/<doc>`. */
  readonly serverUrl: string
}

export interface User {
  readonly name: string
  readonly color: string
}

/** `ws(s)://` of the page's own origin: the node that served the page. */
export const sameOriginServer = (href: string): string => {
  const url = new URL(href)
  return `${url.protocol === 'https:' ? 'wss:' : 'ws:'}//${url.host}`
}

/** A short random document name for a page opened without one. */
export const randomDocName = (random: () => number = Math.random): string =>
  `note-${Math.floor(random() * 36 ** 5)
    .toString(36)
    .padStart(5, '0')}`

const decode = (s: string): string => {
  try {
    return decodeURIComponent(s)
  } catch {
    // A stray `%` in a hand-typed address: take the text as it is.
    return s
  }
}

/** The target an address names; `doc` is empty when the hash names none. */
export const targetOf = (href: string, defaultServer = sameOriginServer(href)): Target => {
  const url = new URL(href)
  const token = url.searchParams.get('token')?.trim()
  const server = url.searchParams.get('server')?.trim()
  return {
    doc: decode(url.hash.slice(1)).trim(),
    token: token ? token : null,
    serverUrl: (server ? server : defaultServer).replace(/\/+$/, ''),
  }
}

/** The address for `doc` and `token`, keeping everything else of `href`. */
export const hrefFor = (href: string, doc: string, token: string | null): string => {
  const url = new URL(href)
  if (token) url.searchParams.set('token', token)
  else url.searchParams.delete('token')
  // Keep `/` readable in the hash: `#team/notes`, not `#team%2Fnotes`.
  url.hash = encodeURIComponent(doc).replace(/%2F/gi, '/')
  return url.href
}

export const sameTarget = (a: Target, b: Target): boolean =>
  a.doc === b.doc && a.token === b.token && a.serverUrl === b.serverUrl

const USER_KEY = 'streambed-demo-user'
const NAMES = ['Ada', 'Grace', 'Alan', 'Barbara', 'Edsger', 'Margaret', 'Donald', 'Frances']
const COLORS = ['#e4572e', '#2e86ab', '#3aa655', '#a23b72', '#f18f01', '#6a4c93', '#c73e1d']
const COLOR = /^#[0-9a-f]{6}$/i
export const MAX_NAME_LENGTH = 40

const pick = <T>(list: readonly T[], random: () => number): T =>
  list[Math.floor(random() * list.length) % list.length] as T

/** A name and colour for a first visit. */
export const randomUser = (random: () => number = Math.random): User => ({
  name: pick(NAMES, random),
  color: pick(COLORS, random),
})

/** `user` cleaned: a trimmed, non-empty name of at most MAX_NAME_LENGTH, a `#rrggbb` colour. */
export const validUser = (user: { name?: unknown; color?: unknown }, fallback: User): User => {
  const name = typeof user.name === 'string' ? user.name.trim().slice(0, MAX_NAME_LENGTH) : ''
  const color = typeof user.color === 'string' && COLOR.test(user.color) ? user.color : ''
  return { name: name || fallback.name, color: color || fallback.color }
}

/** The user saved by `saveUser`, or a random one (not saved until the user edits it). */
export const loadUser = (
  storage: Pick<Storage, 'getItem'>,
  random: () => number = Math.random,
): User => {
  const fallback = randomUser(random)
  const raw = storage.getItem(USER_KEY)
  if (raw === null) return fallback
  try {
    const saved: unknown = JSON.parse(raw)
    return typeof saved === 'object' && saved !== null ? validUser(saved, fallback) : fallback
  } catch {
    // Not ours or corrupted: start over.
    return fallback
  }
}

export const saveUser = (storage: Pick<Storage, 'setItem'>, user: User): void => {
  storage.setItem(USER_KEY, JSON.stringify({ name: user.name, color: user.color }))
}
