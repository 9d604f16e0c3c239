import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { us_listen_socket } from 'uWebSockets.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { contentTypeOf, loadStaticSite, mountStaticSite, type StaticSite } from './static-files.js'
import { uWS } from './uws.js'

const NOT_BUILT = 'the page is not built: run "npm run build"'

let root = ''
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'streambed-static-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A built site on disk, with a secret next to it that must never be served. */
const writeSite = async (name: string): Promise<string> => {
  const dir = join(root, name, 'dist')
  await mkdir(join(dir, 'assets'), { recursive: true })
  await writeFile(join(root, name, 'secret.txt'), 'secret')
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>demo</title>')
  await writeFile(join(dir, 'assets', 'index-1a2b.js'), 'console.log(1)')
  await writeFile(join(dir, 'assets', 'index-1a2b.css'), 'body{}')
  await writeFile(join(dir, '.env'), 'SECRET=1')
  await symlink(join(root, name, 'secret.txt'), join(dir, 'linked.txt'))
  return dir
}

/** `site` on a fresh uWS app with the node's catch-all 404 and a socket route, like a node. */
const serve = async (site: StaticSite) => {
  const app = uWS.App()
  app.ws('/*', {
    upgrade: (res, req, context) => {
      res.upgrade(
        { url: req.getUrl() },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      )
    },
    open: (ws) => {
      ws.send(`socket ${(ws.getUserData() as { url: string }).url}`)
    },
  })
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').end('catch-all')
  })
  const errors: number[] = []
  // Mounted after the catch-all on purpose: exact routes must win whatever the order.
  mountStaticSite(app, site, (_err, status) => errors.push(status))
  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (ls) => (ls ? resolve(ls) : reject(new Error('no port')))),
  )
  const base = `http://127.0.0.1:${uWS.us_socket_local_port(listenSocket)}`
  return {
    base,
    errors,
    [Symbol.dispose]: () => uWS.us_listen_socket_close(listenSocket),
  }
}

/**
 * A raw GET, so the path reaches the server exactly as written (fetch normalizes `..`); what
 * arrived until the server closed, or until the first WebSocket frame after a 101.
 */
const rawRequest = (
  base: string,
  path: string,
  headers: Record<string, string> = { Connection: 'close' },
): Promise<string> =>
  new Promise((resolve, reject) => {
    const { port } = new URL(base)
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`)
    const socket = connect(Number(port), '127.0.0.1', () =>
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n${lines.join('')}\r\n`),
    )
    let text = ''
    socket.on('data', (d) => {
      text += String(d)
      if (/^HTTP\/1\.1 101 [^]*\r\n\r\n[^]+/.test(text)) socket.destroy()
    })
    socket.on('close', () => resolve(text))
    socket.on('error', reject)
  })

describe('static site', () => {
  it('names content types by extension', () => {
    expect(contentTypeOf('/index.html')).toBe('text/html; charset=utf-8')
    expect(contentTypeOf('/assets/a.JS')).toBe('text/javascript; charset=utf-8')
    expect(contentTypeOf('/assets/a.css')).toBe('text/css; charset=utf-8')
    expect(contentTypeOf('/logo.svg')).toBe('image/svg+xml')
    expect(contentTypeOf('/LICENSE')).toBe('application/octet-stream')
  })

  it('serves each file from memory with its type, / as index.html, GET and HEAD only', async () => {
    const dir = await writeSite('ok')
    const site = await loadStaticSite({ dir, notBuilt: NOT_BUILT })
    expect(site.problem).toBeNull()
    // Dotfiles and symlinks are not part of the site.
    expect([...site.files.keys()].sort()).toEqual([
      '/assets/index-1a2b.css',
      '/assets/index-1a2b.js',
      '/index.html',
    ])
    using server = await serve(site)

    const index = await fetch(`${server.base}/?token=abc`)
    expect(index.status).toBe(200)
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(index.headers.get('cache-control')).toBe('no-cache')
    expect(index.headers.get('x-content-type-options')).toBe('nosniff')
    expect(await index.text()).toBe('<!doctype html><title>demo</title>')
    expect(await (await fetch(`${server.base}/index.html`)).text()).toContain('<title>demo')

    const js = await fetch(`${server.base}/assets/index-1a2b.js`)
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
    expect(await js.text()).toBe('console.log(1)')

    const head = await fetch(`${server.base}/assets/index-1a2b.css`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe('6')
    expect(head.headers.get('content-type')).toBe('text/css; charset=utf-8')

    // Other methods and paths are the node's: its catch-all answers them.
    const post = await fetch(`${server.base}/`, { method: 'POST', body: 'x' })
    expect([post.status, await post.text()]).toEqual([404, 'catch-all'])
    for (const path of ['/assets/other.js', '/.env', '/linked.txt', '/secret.txt']) {
      const res = await fetch(`${server.base}${path}`)
      expect([path, res.status, await res.text()]).toEqual([path, 404, 'catch-all'])
    }
    expect(server.errors).toEqual([])
  })

  it('never reads a request path from disk: traversal attempts get the 404', async () => {
    const dir = await writeSite('traversal')
    using server = await serve(await loadStaticSite({ dir, notBuilt: NOT_BUILT }))
    for (const path of ['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt']) {
      const response = await rawRequest(server.base, path)
      expect(response).toMatch(/^HTTP\/1\.1 404/)
      expect(response).not.toContain('secret')
    }
  })

  it('lets a WebSocket to a document named like a file through to the socket route', async () => {
    const dir = await writeSite('ws')
    using server = await serve(await loadStaticSite({ dir, notBuilt: NOT_BUILT }))
    const upgrade = {
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version': '13',
    }
    for (const path of ['/index.html', '/']) {
      const response = await rawRequest(server.base, path, upgrade)
      expect(response).toMatch(/^HTTP\/1\.1 101 /)
      expect(response).toContain(`socket ${path}`)
    }
  })

  it('reports a site that is not built and answers / with a 404 naming the build command', async () => {
    const notFound = 'the page is not installed: run "npm ci"'
    await mkdir(join(root, 'empty'), { recursive: true })
    for (const dir of [join(root, 'missing', 'dist'), join(root, 'empty'), null]) {
      const site = await loadStaticSite({ dir, notBuilt: dir === null ? notFound : NOT_BUILT })
      expect(site.files.size).toBe(0)
      // No directory at all (its package cannot be resolved): the caller's text is the problem.
      expect(site.problem).toBe(dir === null ? notFound : `${NOT_BUILT} (no index.html in ${dir})`)
      using server = await serve(site)
      const res = await fetch(`${server.base}/`)
      expect(res.status).toBe(404)
      expect(res.headers.get('content-type')).toBe('application/json')
      expect(await res.json()).toEqual({
        error: { code: 'NOT_FOUND', message: site.problem },
      })
      expect(server.errors).toEqual([404])
    }
  })
})
