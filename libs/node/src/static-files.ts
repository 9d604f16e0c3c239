import { readdir, readFile } from 'node:fs/promises'
import { extname, join } from 'node:path'
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import { AppError } from '@streambed/common'
import { createReply } from './http.js'

/**
 * A built single-page site (the demo) served from memory: every file is read once at start and
 * gets a route of its own, so a request path never reaches the file system (no traversal, no
 * `..`, no symlinks followed) and files added later are not served. Only GET and HEAD; `/` is
 * `index.html`. Other methods and unknown paths fall through to the node's 404 route.
 */
export interface StaticFile {
  readonly body: Buffer
  readonly contentType: string
  readonly cacheControl: string
}

export interface StaticSite {
  /** Null when the site's package could not be found at all. */
  readonly dir: string | null
  /** By URL path: `/index.html`, `/assets/index-1a2b.js`. Empty when the site is missing. */
  readonly files: ReadonlyMap<string, StaticFile>
  /** Why the site is not served and what to do (the `notBuilt` text), or null. */
  readonly problem: string | null
}

export interface StaticSiteOptions {
  /**
   * The build output directory, with an `index.html`; null when the caller could not find the
   * site at all (its package is not installed): the site is then served as not built.
   */
  dir: string | null
  /** Said in the warning and the 404 for `/` when `dir` is null or holds no `index.html`. */
  notBuilt: string
}

const contentTypes: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
}

export const contentTypeOf = (path: string): string =>
  contentTypes[extname(path).toLowerCase()] ?? 'application/octet-stream'

/** Bundlers put content-hashed files under `assets/`: a new build gives them new names. */
const IMMUTABLE_PREFIX = '/assets/'

/**
 * Names a route can hold as they are: uWebSockets.js patterns give `:` and `*` a meaning, and
 * request paths arrive percent-encoded. Build output names (`index-1a2b.js`) always fit.
 */
const ROUTABLE_NAME = /^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$/

/** `dir`'s regular files, recursively, as URL paths; dotfiles and symlinks are left out. */
const listFiles = async (dir: string, prefix = ''): Promise<string[]> => {
  const entries = await readdir(dir, { withFileTypes: true })
  const nested = await Promise.all(
    entries
      .filter((e) => ROUTABLE_NAME.test(e.name))
      .map(async (e) => {
        if (e.isDirectory()) return listFiles(join(dir, e.name), `${prefix}/${e.name}`)
        return e.isFile() ? [`${prefix}/${e.name}`] : []
      }),
  )
  return nested.flat()
}

const isMissing = (err: unknown): boolean =>
  err instanceof Error && 'code' in err && (err.code === 'ENOENT' || err.code === 'ENOTDIR')

/** Reads the site into memory. A missing directory or `index.html` is a `problem`, not an error. */
export const loadStaticSite = async (opts: StaticSiteOptions): Promise<StaticSite> => {
  const { dir } = opts
  if (dir === null) return { dir, files: new Map(), problem: opts.notBuilt }
  let paths: string[]
  try {
    paths = await listFiles(dir)
  } catch (err) {
    if (!isMissing(err)) throw err
    paths = []
  }
  if (!paths.includes('/index.html')) {
    return { dir, files: new Map(), problem: `${opts.notBuilt} (no index.html in ${dir})` }
  }
  const files = new Map<string, StaticFile>()
  for (const path of paths) {
    files.set(path, {
      body: await readFile(join(dir, ...path.split('/'))),
      contentType: contentTypeOf(path),
      cacheControl: path.startsWith(IMMUTABLE_PREFIX)
        ? 'public, max-age=31536000, immutable'
        : 'no-cache',
    })
  }
  return { dir, files, problem: null }
}

/**
 * A WebSocket to a document named like a file (`/index.html`) must reach the socket route:
 * yielding hands the request to the next matching route.
 */
const isUpgrade = (req: HttpRequest): boolean => req.getHeader('upgrade') !== ''

const sendFile = (res: HttpResponse, file: StaticFile, head: boolean): void => {
  res.cork(() => {
    res.writeStatus('200 OK')
    res.writeHeader('content-type', file.contentType)
    res.writeHeader('cache-control', file.cacheControl)
    res.writeHeader('x-content-type-options', 'nosniff')
    if (head) {
      res.writeHeader('content-length', String(file.body.byteLength))
      res.endWithoutBody()
    } else {
      res.end(file.body)
    }
  })
}

/**
 * Routes for every file of `site`, and `/` for its index.html; a site with a `problem` answers `/`
 * with a 404 naming it. Exact routes win over the node's `/*` routes whatever the order they are
 * added in (uWebSockets.js ranks static segments above wildcards).
 */
export const mountStaticSite = (
  app: TemplatedApp,
  site: StaticSite,
  onHttpError: (err: unknown, status: number) => void,
): void => {
  if (site.problem !== null) {
    const problem = site.problem
    app.get('/', (res, req) => {
      if (isUpgrade(req)) {
        req.setYield(true)
        return
      }
      createReply(res, onHttpError).error(new AppError('NOT_FOUND', problem))
    })
    return
  }
  const routes = [...site.files].map(([path, file]) => [path, file] as const)
  const index = site.files.get('/index.html')
  if (index) routes.push(['/', index])
  for (const [path, file] of routes) {
    app.get(path, (res, req) => {
      if (isUpgrade(req)) {
        req.setYield(true)
        return
      }
      sendFile(res, file, false)
    })
    app.head(path, (res) => sendFile(res, file, true))
  }
}
