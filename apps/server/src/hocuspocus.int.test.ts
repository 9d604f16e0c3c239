/**
 * Issue 11: the real `@hocuspocus/provider` (v3) against real nodes on one real Redis, next to
 * y-websocket clients on the same documents (decision 0011). Bad input is in
 * hocuspocus-bad-input.int.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as Y from 'yjs'
import WebSocket from 'ws'
import { SignJWT, exportJWK, generateKeyPair } from 'jose'
import { describe, expect, it, vi } from 'vitest'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import {
  HocuspocusType,
  encodeHocuspocusAuth,
  encodeHocuspocusPrefix,
  encodeSyncUpdate,
  prefixMessage,
  readHocuspocusHeader,
} from '@streambed/protocol'
import {
  captureUpdate,
  connectClient,
  connectRaw,
  docContent,
  startBalancer,
  startProcess,
  type TestClient,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { startTestNode } from './testing/test-node.js'

const redis = useRedisServer()

const env = (prefix: string, extra: Record<string, string> = {}) => ({
  REDIS_URL: redis.url,
  REDIS_PREFIX: prefix,
  // Fast liveness so a closed socket's awareness is noticed quickly.
  NODE_HEARTBEAT_MS: '300',
  NODE_TIMEOUT_MS: '1500',
  ...extra,
})

const SECRET = 'hocuspocus-test-secret-of-32-or-more-characters'
const nowS = () => Math.floor(Date.now() / 1000)
const token = (claims: { docs?: string[]; access?: 'read' | 'write'; exp?: number } = {}) => {
  const jwt = new SignJWT({ docs: claims.docs ?? ['*'], access: claims.access ?? 'write' })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt(nowS())
  if (claims.exp !== undefined) jwt.setExpirationTime(claims.exp)
  return jwt.sign(new TextEncoder().encode(SECRET))
}

/**
 * A JWKS endpoint (AUTH_JWKS_URL) that answers only once `release()` is called: until then every
 * admission on the node waits (jose fetches the key set on the first token it verifies).
 */
const startGatedJwks = async () => {
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'gated', alg: 'ES256', use: 'sig' }
  let release = () => {}
  const released = new Promise<void>((resolve) => (release = resolve))
  let requests = 0
  const server = createServer((_req, res) => {
    requests++
    void released.then(() => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ keys: [jwk] }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const close = () =>
    new Promise<void>((resolve) => {
      release()
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    /** A token granting every document, signed with the key the endpoint serves. */
    sign: () =>
      new SignJWT({ docs: ['*'], access: 'write' })
        .setProtectedHeader({ alg: 'ES256', kid: 'gated' })
        .setIssuedAt(nowS())
        .sign(privateKey),
    release: () => release(),
    /** Key set requests received (each is an admission waiting). */
    get requests() {
      return requests
    },
    [Symbol.asyncDispose]: close,
  }
}

/** A provider socket in Node (`ws`), reconnecting fast (the defaults wait 1 s doubling to 30 s). */
const hpSocket = (url: string) =>
  new HocuspocusProviderWebsocket({
    url,
    WebSocketPolyfill: WebSocket,
    delay: 50,
    minDelay: 50,
    maxDelay: 400,
    factor: 1.5,
  })

interface HpClient {
  readonly doc: Y.Doc
  readonly provider: HocuspocusProvider
  readonly socket: HocuspocusProviderWebsocket
  /** Scopes of Authenticated messages, reasons of permission-denied ones. */
  readonly scopes: string[]
  readonly denied: string[]
  /** Close events: a document's close message (code 1000, reason "<code>: …") or the socket's. */
  readonly closes: { code: number; reason: string }[]
  readonly stateless: string[]
  synced(timeoutMs?: number): Promise<void>
  destroy(): void
}

/** A provider of document `name` attached to `socket` (shared by several, or its own). */
const attachHp = (
  socket: HocuspocusProviderWebsocket,
  name: string,
  opts: { token?: string | (() => Promise<string>); ownsSocket?: boolean } = {},
): HpClient => {
  const doc = new Y.Doc()
  const scopes: string[] = []
  const denied: string[] = []
  const closes: { code: number; reason: string }[] = []
  const stateless: string[] = []
  const provider = new HocuspocusProvider({
    websocketProvider: socket,
    name,
    document: doc,
    token: opts.token ?? null,
    onAuthenticated: ({ scope }) => scopes.push(scope),
    onAuthenticationFailed: ({ reason }) => denied.push(reason),
    onClose: ({ event }) => closes.push({ code: event.code, reason: event.reason }),
    onStateless: ({ payload }) => stateless.push(payload),
  })
  provider.attach()
  return {
    doc,
    provider,
    socket,
    scopes,
    denied,
    closes,
    stateless,
    synced: (timeoutMs = 15_000) =>
      vi.waitFor(() => expect(provider.isSynced).toBe(true), { timeout: timeoutMs }),
    destroy: () => {
      provider.destroy()
      if (opts.ownsSocket) socket.destroy()
      doc.destroy()
    },
  }
}

/** A provider with a socket of its own. */
const connectHp = (url: string, name: string, opts: { token?: string } = {}): HpClient =>
  attachHp(hpSocket(url), name, { ...opts, ownsSocket: true })

const textOf = (doc: Y.Doc) => doc.getText('text').toString()

/** The document as the node reads it from Redis and storage (`GET /docs/<name>`). */
const storedDoc = async (httpUrl: string, name: string, bearer?: string): Promise<Y.Doc> => {
  const res = await fetch(`${httpUrl}/docs/${encodeURIComponent(name)}`, {
    headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
  })
  expect(res.status).toBe(200)
  const doc = new Y.Doc()
  Y.applyUpdate(doc, new Uint8Array(await res.arrayBuffer()))
  return doc
}
const userOf = (states: Map<number, Record<string, unknown>>, clientId: number): unknown =>
  states.get(clientId)?.user

describe('Hocuspocus provider next to y-websocket clients', () => {
  it('converges both ways across two nodes, and acknowledges every edit', async () => {
    const prefix = uniquePrefix('hp-sync')
    await using a = await startTestNode(env(prefix))
    await using b = await startTestNode(env(prefix))
    const name = 'team-1/notes'
    const hpA = connectHp(a.url, name)
    const yB = connectClient(b.url, name)
    const hpB = connectHp(b.url, name)
    await Promise.all([hpA.synced(), yB.synced(), hpB.synced()])
    expect(hpA.scopes).toEqual(['read-write'])

    hpA.doc.getText('text').insert(0, 'hocuspocus on a. ')
    yB.doc.getText('text').insert(0, 'y-websocket on b. ')
    hpB.doc.getMap('map').set('from', 'hocuspocus on b')
    yB.doc.getArray('array').push([1, 2, 3])
    const all = [hpA.doc, yB.doc, hpB.doc]
    await vi.waitFor(() => {
      const expected = docContent(yB.doc)
      expect(textOf(yB.doc)).toContain('hocuspocus on a.')
      expect(textOf(yB.doc)).toContain('y-websocket on b.')
      expect(expected.map).toEqual({ from: 'hocuspocus on b' })
      for (const d of all) expect(docContent(d)).toEqual(expected)
    })
    // Every edit was acknowledged once stored.
    await vi.waitFor(() => {
      expect(hpA.provider.hasUnsyncedChanges).toBe(false)
      expect(hpB.provider.hasUnsyncedChanges).toBe(false)
    })

    // Joiners of either protocol read the same document from Redis.
    const lateHp = connectHp(b.url, name)
    const lateY = connectClient(a.url, name)
    await Promise.all([lateHp.synced(), lateY.synced()])
    await vi.waitFor(() => {
      expect(docContent(lateHp.doc)).toEqual(docContent(yB.doc))
      expect(docContent(lateY.doc)).toEqual(docContent(yB.doc))
    })
    for (const c of [hpA, hpB, lateHp]) c.destroy()
    for (const c of [yB, lateY]) c.destroy()
  })

  it('relays awareness both ways across nodes and removes a provider’s state when it leaves', async () => {
    const prefix = uniquePrefix('hp-aw')
    await using a = await startTestNode(env(prefix))
    await using b = await startTestNode(env(prefix))
    const hp = connectHp(a.url, 'aw')
    const y = connectClient(b.url, 'aw')
    await Promise.all([hp.synced(), y.synced()])
    hp.provider.setAwarenessField('user', { name: 'hocuspocus' })
    await vi.waitFor(() =>
      expect(userOf(y.provider.awareness.getStates(), hp.doc.clientID)).toEqual({
        name: 'hocuspocus',
      }),
    )
    y.provider.awareness.setLocalStateField('user', { name: 'y-websocket' })
    await vi.waitFor(() =>
      expect(userOf(hp.provider.awareness!.getStates(), y.doc.clientID)).toEqual({
        name: 'y-websocket',
      }),
    )
    // A late y-websocket joiner gets the provider's state in its snapshot.
    const late = connectClient(b.url, 'aw')
    await late.synced()
    await vi.waitFor(() =>
      expect(userOf(late.provider.awareness.getStates(), hp.doc.clientID)).toEqual({
        name: 'hocuspocus',
      }),
    )
    hp.destroy()
    await vi.waitFor(
      () => {
        expect(y.provider.awareness.getStates().has(hp.doc.clientID)).toBe(false)
        expect(late.provider.awareness.getStates().has(hp.doc.clientID)).toBe(false)
      },
      { timeout: 5000 },
    )
    y.destroy()
    late.destroy()
  })
})

describe('Hocuspocus authentication (AUTH_MODE=jwt)', () => {
  const jwtEnv = (prefix: string) => env(prefix, { AUTH_MODE: 'jwt', AUTH_JWT_SECRET: SECRET })

  it('authenticates with the token, denies bad tokens with a reason, and keeps the socket', async () => {
    const prefix = uniquePrefix('hp-jwt')
    await using a = await startTestNode(jwtEnv(prefix))
    const socket = hpSocket(a.url)
    const invalid = attachHp(socket, 'secret/a', { token: 'not-a-jwt' })
    const missing = attachHp(socket, 'secret/b')
    const other = attachHp(socket, 'secret/c', { token: await token({ docs: ['elsewhere/*'] }) })
    const good = attachHp(socket, 'secret/d', { token: await token({ docs: ['secret/*'] }) })
    await good.synced()
    expect(good.scopes).toEqual(['read-write'])
    await vi.waitFor(() => {
      expect(invalid.denied).toEqual([expect.stringMatching(/^invalid token: /)])
      expect(missing.denied).toEqual([expect.stringMatching(/^missing token/)])
      expect(other.denied).toEqual(['token does not grant document "secret/c"'])
    })
    for (const c of [invalid, missing, other]) {
      expect(c.provider.isSynced).toBe(false)
      expect(c.scopes).toEqual([])
    }
    // The refused documents did not take the socket down: the granted one still works.
    const y = connectClient(a.url, 'secret/d', { params: { token: await token() } })
    await y.synced()
    good.doc.getText('text').insert(0, 'granted')
    await vi.waitFor(() => expect(textOf(y.doc)).toBe('granted'))
    // Edits of a refused document are answered "not stored": they stay unsynced.
    invalid.doc.getText('text').insert(0, 'never stored')
    good.doc.getText('text').insert(7, '!')
    await vi.waitFor(() => expect(textOf(y.doc)).toBe('granted!'))
    expect(invalid.provider.hasUnsyncedChanges).toBe(true)
    expect(textOf(await storedDoc(a.httpUrl, 'secret/a', await token()))).toBe('')
    for (const c of [invalid, missing, other, good]) c.destroy()
    socket.destroy()
    y.destroy()
  })

  it('gives a read-only token the readonly scope; its edits are not stored', async () => {
    const prefix = uniquePrefix('hp-ro')
    await using a = await startTestNode(jwtEnv(prefix))
    await using b = await startTestNode(jwtEnv(prefix))
    const writer = connectClient(b.url, 'ro/doc', { params: { token: await token() } })
    await writer.synced()
    writer.doc.getText('text').insert(0, 'written')
    const reader = connectHp(a.url, 'ro/doc', { token: await token({ access: 'read' }) })
    await reader.synced()
    expect(reader.scopes).toEqual(['readonly'])
    expect(reader.provider.authorizedScope).toBe('readonly')
    await vi.waitFor(() => expect(textOf(reader.doc)).toBe('written'))

    reader.doc.getText('text').insert(0, 'read-only edit ')
    // Frames of one document are handled in order: once the writer sees this awareness change,
    // the node has handled (and refused) the edit before it.
    reader.provider.setAwarenessField('user', { name: 'reader' })
    await vi.waitFor(() =>
      expect(userOf(writer.provider.awareness.getStates(), reader.doc.clientID)).toEqual({
        name: 'reader',
      }),
    )
    expect(reader.provider.hasUnsyncedChanges).toBe(true)
    expect(textOf(writer.doc)).toBe('written')
    // Not a permission-denied message: the provider would read that as a request for its token.
    expect(reader.scopes).toEqual(['readonly'])
    expect(reader.denied).toEqual([])
    expect(textOf(await storedDoc(a.httpUrl, 'ro/doc', await token()))).toBe('written')
    // The reader still receives what writers write.
    writer.doc.getText('text').insert(7, ' more')
    await vi.waitFor(() => expect(textOf(reader.doc)).toContain('written more'))
    reader.destroy()
    writer.destroy()
  })

  it('closes only the document whose token expired (4410), not the others on the socket', async () => {
    const prefix = uniquePrefix('hp-exp')
    await using a = await startTestNode(jwtEnv(prefix))
    const socket = hpSocket(a.url)
    const expiring = attachHp(socket, 'exp/short', { token: await token({ exp: nowS() + 2 }) })
    const lasting = attachHp(socket, 'exp/long', { token: await token() })
    await Promise.all([expiring.synced(), lasting.synced()])
    await vi.waitFor(
      () =>
        expect(expiring.closes).toContainEqual({
          code: 1000,
          reason: '4410: token expired; reconnect with a fresh token',
        }),
      { timeout: 8000 },
    )
    expect(lasting.closes).toEqual([])
    const y = connectClient(a.url, 'exp/long', { params: { token: await token() } })
    await y.synced()
    lasting.doc.getText('text').insert(0, 'still open')
    await vi.waitFor(() => expect(textOf(y.doc)).toBe('still open'))
    await vi.waitFor(() => expect(lasting.provider.hasUnsyncedChanges).toBe(false))
    for (const c of [expiring, lasting]) c.destroy()
    socket.destroy()
    y.destroy()
  })
})

describe('several documents on one socket', () => {
  it('keeps documents apart; detaching one leaves the other working; re-attaching resyncs', async () => {
    const prefix = uniquePrefix('hp-multi')
    await using a = await startTestNode(env(prefix))
    await using b = await startTestNode(env(prefix))
    const socket = hpSocket(a.url)
    const one = attachHp(socket, 'multi/one')
    const two = attachHp(socket, 'multi/two')
    const yOne = connectClient(b.url, 'multi/one')
    const yTwo = connectClient(b.url, 'multi/two')
    await Promise.all([one.synced(), two.synced(), yOne.synced(), yTwo.synced()])

    one.doc.getText('text').insert(0, 'one')
    two.doc.getText('text').insert(0, 'two')
    yTwo.doc.getMap('map').set('by', 'y-websocket')
    await vi.waitFor(() => {
      expect(textOf(yOne.doc)).toBe('one')
      expect(textOf(yTwo.doc)).toBe('two')
      expect(two.doc.getMap('map').toJSON()).toEqual({ by: 'y-websocket' })
    })
    expect(one.doc.getMap('map').toJSON()).toEqual({})
    expect(textOf(one.doc)).toBe('one')

    one.provider.setAwarenessField('user', { name: 'one' })
    two.provider.setAwarenessField('user', { name: 'two' })
    await vi.waitFor(() => {
      expect(userOf(yOne.provider.awareness.getStates(), one.doc.clientID)).toEqual({
        name: 'one',
      })
      expect(userOf(yTwo.provider.awareness.getStates(), two.doc.clientID)).toEqual({
        name: 'two',
      })
    })
    expect(yOne.provider.awareness.getStates().has(two.doc.clientID)).toBe(false)

    // Detach: the provider sends a close message; the node closes that document only.
    one.provider.detach()
    await vi.waitFor(() =>
      expect(yOne.provider.awareness.getStates().has(one.doc.clientID)).toBe(false),
    )
    expect(userOf(yTwo.provider.awareness.getStates(), two.doc.clientID)).toEqual({ name: 'two' })
    two.doc.getText('text').insert(3, ' still')
    yTwo.doc.getText('text').insert(0, '> ')
    await vi.waitFor(() => {
      expect(textOf(yTwo.doc)).toBe('> two still')
      expect(textOf(two.doc)).toBe('> two still')
    })
    await vi.waitFor(() => expect(two.provider.hasUnsyncedChanges).toBe(false))

    // Meanwhile document one moved on; attached again, the provider resyncs it.
    yOne.doc.getText('text').insert(3, ' and more')
    one.provider.attach()
    await vi.waitFor(() => expect(textOf(one.doc)).toBe('one and more'))
    one.doc.getText('text').insert(0, 'back: ')
    await vi.waitFor(() => expect(textOf(yOne.doc)).toBe('back: one and more'))
    for (const c of [one, two]) c.destroy()
    socket.destroy()
    for (const c of [yOne, yTwo]) c.destroy()
  })

  it('re-authenticates a document detached and attached again while it was authenticating', async () => {
    // A shared socket, as React StrictMode uses it: the provider detaches (a close message) and
    // attaches again (a new auth and sync step 1) before the node answered its first auth.
    await using jwks = await startGatedJwks()
    await using a = await startTestNode(
      env(uniquePrefix('hp-reattach'), { AUTH_MODE: 'jwt', AUTH_JWKS_URL: jwks.url }),
    )
    const bearer = await jwks.sign()
    const socket = hpSocket(a.url)
    const statuses: { doc: string; applied: boolean }[] = []
    socket.on('message', (event: { data: ArrayBuffer }) => {
      const frame = new Uint8Array(event.data)
      const { doc, type, payloadAt } = readHocuspocusHeader(frame)
      if (type === HocuspocusType.syncStatus)
        statuses.push({ doc, applied: frame[payloadAt] === 1 })
    })
    const hp = attachHp(socket, 'again/doc', { token: bearer })
    const sent: (number | undefined)[] = []
    hp.provider.on('outgoingMessage', ({ message }: { message: { type?: number } }) =>
      sent.push(message.type),
    )
    // The node holds the first auth: its admission waits for the key set.
    await vi.waitFor(() => expect(jwks.requests).toBe(1))
    hp.provider.detach()
    hp.provider.attach()
    // The provider sends its token after an await, then its sync step 1.
    await vi.waitFor(() => {
      expect(sent.filter((t) => t === HocuspocusType.auth)).toHaveLength(2)
      expect(sent.slice(sent.lastIndexOf(HocuspocusType.auth))).toContain(HocuspocusType.sync)
    })
    expect(sent).toContain(HocuspocusType.close)
    // Frames of one socket are handled in order: once this update of a document that is not open
    // is answered, the node holds the close message, the auth and the step 1 before it.
    socket.send(
      prefixMessage(
        encodeHocuspocusPrefix('again/probe'),
        encodeSyncUpdate(captureUpdate((d) => d.getText('text').insert(0, 'probe'))),
      ),
    )
    await vi.waitFor(() => expect(statuses).toEqual([{ doc: 'again/probe', applied: false }]))
    expect(hp.provider.isSynced).toBe(false)
    jwks.release()

    await hp.synced()
    const y = connectClient(a.url, 'again/doc', { params: { token: bearer } })
    await y.synced()
    hp.doc.getText('text').insert(0, 'attached again')
    await vi.waitFor(() => expect(textOf(y.doc)).toBe('attached again'))
    await vi.waitFor(() => expect(hp.provider.hasUnsyncedChanges).toBe(false))
    hp.destroy()
    socket.destroy()
    y.destroy()
  })

  it('bounds what documents still authenticating hold by one budget per socket (4529)', async () => {
    // Budget: 2 × max(WS_MAX_BYTES_PER_SECOND, WS_MAX_MESSAGE_BYTES) = 8 KiB for all documents.
    await using jwks = await startGatedJwks()
    await using a = await startTestNode(
      env(uniquePrefix('hp-held'), {
        AUTH_MODE: 'jwt',
        AUTH_JWKS_URL: jwks.url,
        WS_MAX_MESSAGE_BYTES: '4KiB',
        WS_MAX_BYTES_PER_SECOND: '4KiB',
      }),
    )
    const bearer = await jwks.sign()
    const raw = connectRaw(a.url)
    await raw.opened
    const frameOf = (doc: string, text: string) =>
      prefixMessage(
        encodeHocuspocusPrefix(doc),
        encodeSyncUpdate(captureUpdate((d) => d.getText('text').insert(0, text))),
      )
    raw.send(encodeHocuspocusAuth('held/one', bearer))
    raw.send(encodeHocuspocusAuth('held/two', bearer))
    await vi.waitFor(() => expect(jwks.requests).toBeGreaterThan(0))
    // 3 × 2.5 KiB held while held/one authenticates: within the budget.
    for (let i = 0; i < 3; i++) raw.send(frameOf('held/one', 'x'.repeat(2500)))
    // Frames of one socket are handled in order: this answer comes after those were held.
    raw.send(frameOf('held/probe', 'probe'))
    await vi.waitFor(() => expect(raw.messages).toHaveLength(1))
    expect(readHocuspocusHeader(raw.messages[0]!).doc).toBe('held/probe')
    expect(raw.ws.readyState).toBe(WebSocket.OPEN)
    // 2.5 KiB more for held/two: each document holds less than 8 KiB, the socket more.
    raw.send(frameOf('held/two', 'x'.repeat(2500)))
    expect(await raw.closed).toEqual({
      code: 4529,
      reason:
        'more than 8192 bytes held for the documents of one socket (2 × max(WS_MAX_BYTES_PER_SECOND, WS_MAX_MESSAGE_BYTES))',
    })
  })

  it('closes one document with a close message when it is deleted; the other goes on', async () => {
    const prefix = uniquePrefix('hp-del')
    await using a = await startTestNode(env(prefix))
    const socket = hpSocket(a.url)
    const doomed = attachHp(socket, 'del/doomed')
    const kept = attachHp(socket, 'del/kept')
    await Promise.all([doomed.synced(), kept.synced()])
    doomed.doc.getText('text').insert(0, 'doomed')
    await vi.waitFor(() => expect(doomed.provider.hasUnsyncedChanges).toBe(false))
    const res = await fetch(`${a.httpUrl}/docs/del%2Fdoomed`, { method: 'DELETE' })
    expect(res.status).toBe(200)
    await vi.waitFor(() =>
      expect(doomed.closes).toContainEqual({ code: 1000, reason: '4405: document deleted' }),
    )
    expect(kept.closes).toEqual([])
    const y = connectClient(a.url, 'del/kept')
    await y.synced()
    kept.doc.getText('text').insert(0, 'kept')
    await vi.waitFor(() => expect(textOf(y.doc)).toBe('kept'))
    // The deleted document's provider writes nothing back.
    doomed.doc.getText('text').insert(0, 'after delete ')
    kept.doc.getText('text').insert(4, '!')
    await vi.waitFor(() => expect(textOf(y.doc)).toBe('kept!'))
    expect(textOf(await storedDoc(a.httpUrl, 'del/doomed'))).toBe('')
    for (const c of [doomed, kept]) c.destroy()
    socket.destroy()
    y.destroy()
  })
})

describe('stateless messages', () => {
  it('reach the document’s other providers on every node, not the sender, not other documents', async () => {
    const prefix = uniquePrefix('hp-stateless')
    await using a = await startTestNode(env(prefix))
    await using b = await startTestNode(env(prefix))
    const socketA = hpSocket(a.url)
    const sender = attachHp(socketA, 'st/doc')
    const elsewhere = attachHp(socketA, 'st/other')
    const sameNode = connectHp(a.url, 'st/doc')
    const otherNode = connectHp(b.url, 'st/doc')
    const y = connectClient(b.url, 'st/doc')
    await Promise.all([sender, elsewhere, sameNode, otherNode, y].map((c) => c.synced()))

    const payload = JSON.stringify({ comment: 'ünïcödé ✓\nline two' })
    sender.provider.sendStateless(payload)
    await vi.waitFor(() => {
      expect(sameNode.stateless).toEqual([payload])
      expect(otherNode.stateless).toEqual([payload])
    })
    // One channel carries both in order: had the sender's own come back, it would be here first.
    otherNode.provider.sendStateless('reply')
    await vi.waitFor(() => expect(sender.stateless).toEqual(['reply']))
    await vi.waitFor(() => expect(sameNode.stateless).toEqual([payload, 'reply']))
    expect(otherNode.stateless).toEqual([payload])
    expect(elsewhere.stateless).toEqual([])
    // y-websocket clients of the document are not disturbed.
    sender.doc.getText('text').insert(0, 'after stateless')
    await vi.waitFor(() => expect(textOf(y.doc)).toBe('after stateless'))
    expect(y.provider.wsconnected).toBe(true)
    for (const c of [sender, elsewhere, sameNode, otherNode]) c.destroy()
    socketA.destroy()
    y.destroy()
  })
})

describe('stateless limits', () => {
  it('closes only the document of a stateless message above AWARENESS_MAX_STATE_BYTES (4413)', async () => {
    const prefix = uniquePrefix('hp-stateless-big')
    await using a = await startTestNode(env(prefix, { AWARENESS_MAX_STATE_BYTES: '1024' }))
    const socket = hpSocket(a.url)
    const sender = attachHp(socket, 'big/doc')
    const kept = attachHp(socket, 'big/kept')
    const listener = connectHp(a.url, 'big/doc')
    await Promise.all([sender, kept, listener].map((c) => c.synced()))
    sender.provider.sendStateless('x'.repeat(2048))
    await vi.waitFor(() =>
      expect(sender.closes.map((c) => c.reason)).toContainEqual(expect.stringMatching(/^4413: /)),
    )
    expect(listener.stateless).toEqual([])
    // The socket and its other document go on.
    kept.doc.getText('text').insert(0, 'still here')
    const reader = connectHp(a.url, 'big/kept')
    await reader.synced()
    await vi.waitFor(() => expect(textOf(reader.doc)).toBe('still here'))
    for (const c of [sender, kept, listener, reader]) c.destroy()
    socket.destroy()
  })
})

describe('SyncStatus', () => {
  it('clears hasUnsyncedChanges only once the update is in Redis', async () => {
    const prefix = uniquePrefix('hp-status')
    await using a = await startTestNode(env(prefix, { REDIS_COMMAND_TIMEOUT_MS: '20000' }))
    const hp = connectHp(a.url, 'status/doc')
    await hp.synced()
    await vi.waitFor(() => expect(hp.provider.hasUnsyncedChanges).toBe(false))
    // Redis holds every write for a while: the append waits, and so must the acknowledgement.
    await redis.admin.call('CLIENT', 'PAUSE', '20000', 'WRITE')
    let unpausedAt = Infinity
    let clearedAt = -Infinity
    hp.provider.on('unsyncedChanges', ({ number }: { number: number }) => {
      if (number === 0) clearedAt = performance.now()
    })
    try {
      hp.doc.getText('text').insert(0, 'durable')
      expect(hp.provider.hasUnsyncedChanges).toBe(true)
      // Long enough for an acknowledgement sent on receipt to arrive.
      await new Promise((r) => setTimeout(r, 700))
      expect(hp.provider.hasUnsyncedChanges).toBe(true)
    } finally {
      unpausedAt = performance.now()
      await redis.admin.call('CLIENT', 'UNPAUSE')
    }
    await vi.waitFor(() => expect(hp.provider.hasUnsyncedChanges).toBe(false), { timeout: 10_000 })
    expect(clearedAt).toBeGreaterThan(unpausedAt)
    expect(textOf(await storedDoc(a.httpUrl, 'status/doc'))).toBe('durable')
    hp.destroy()
  })
})

/** An in-process test node in a child process of its own, so it can be SIGKILLed. */
const spawnTestNode = async (nodeEnv: Record<string, string>) => {
  const testNode = fileURLToPath(new URL('./testing/test-node.ts', import.meta.url))
  const script = `const { startTestNode } = await import(${JSON.stringify(testNode)})
const node = await startTestNode(JSON.parse(process.env.TEST_NODE_ENV))
console.log('listening on ' + node.port)`
  const proc = startProcess(
    process.execPath,
    ['--conditions=streambed-source', '--import', 'tsx', '--input-type=module', '-e', script],
    {
      cwd: fileURLToPath(new URL('../', import.meta.url)),
      env: { ...process.env, TEST_NODE_ENV: JSON.stringify(nodeEnv) },
    },
  )
  const line = await proc.waitForLine(/^listening on \d+$/, 60_000)
  return { proc, port: Number(line.split(' ').pop()) }
}

describe('node failure', () => {
  it('loses nothing when the node of providers is SIGKILLed: they resync through another node', async () => {
    const prefix = uniquePrefix('hp-crash')
    const storageDir = await mkdtemp(join(tmpdir(), 'streambed-hp-crash-'))
    const nodeEnv = env(prefix, { STORAGE_DIR: storageDir })
    const nodes = await Promise.all([spawnTestNode(nodeEnv), spawnTestNode(nodeEnv)])
    await using lb = await startBalancer(nodes.map((n) => n.port))
    const clients: HpClient[] = []
    let y: TestClient | undefined
    try {
      // Round robin: the providers' sockets land on both nodes.
      for (let i = 0; i < 4; i++) clients.push(connectHp(lb.url, 'crash/doc'))
      y = connectClient(lb.url, 'crash/doc', { maxBackoffTime: 300 })
      await Promise.all([...clients.map((c) => c.synced()), y.synced()])
      const typed = clients.map(() => 0)
      const timer = setInterval(() => {
        clients.forEach((c, i) => c.doc.getArray<string>('log').push([`hp${i}:${typed[i]!++}`]))
      }, 25)
      try {
        await vi.waitFor(() => expect(Math.min(...typed)).toBeGreaterThanOrEqual(20), {
          timeout: 20_000,
        })
        const victim = nodes[0]
        await victim.proc.kill('SIGKILL')
        expect(await victim.proc.exited).toBe('SIGKILL')
        lb.setBackends([nodes[1].port])
        // The providers of the killed node (round robin: some of them) lost their socket...
        await vi.waitFor(
          () => expect(clients.filter((c) => c.closes.length > 0).length).toBeGreaterThan(0),
          { timeout: 20_000 },
        )
        // ... and keep typing while they reconnect through the balancer to the other node.
        const before = [...typed]
        await vi.waitFor(
          () => typed.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(before[i]! + 20)),
          { timeout: 30_000 },
        )
      } finally {
        clearInterval(timer)
      }
      const expected = new Set(
        typed.flatMap((n, i) => Array.from({ length: n }, (_, k) => `hp${i}:${k}`)),
      )
      await vi.waitFor(
        () => {
          for (const c of clients) expect(c.provider.hasUnsyncedChanges).toBe(false)
          const have = new Set(y!.doc.getArray<string>('log').toArray())
          expect([...expected].filter((e) => !have.has(e))).toEqual([])
        },
        { timeout: 30_000, interval: 200 },
      )
      // Stored state agrees: a fresh provider sees every entry exactly once.
      const fresh = connectHp(lb.url, 'crash/doc')
      await fresh.synced()
      await vi.waitFor(() => {
        const log = fresh.doc.getArray<string>('log').toArray()
        expect(log.length).toBe(expected.size)
        expect(new Set(log)).toEqual(expected)
      })
      fresh.destroy()
    } finally {
      for (const c of clients) c.destroy()
      y?.destroy()
      await Promise.all(nodes.map((n) => n.proc.kill('SIGKILL')))
      await rm(storageDir, { recursive: true, force: true })
    }
  })
})
