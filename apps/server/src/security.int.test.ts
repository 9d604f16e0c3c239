/**
 * Issue 8 against real nodes: one content per id (decision 0010), presence owned by its
 * connection, token lifetime, limits and secure defaults. `streambed revoke` is covered in
 * apps/cli/src/revoke.int.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { SignJWT } from 'jose'
import type WebSocket from 'ws'
import type { WebsocketProvider } from 'y-websocket'
import { describe, expect, it, vi } from 'vitest'
import { CloseCode, createLogger } from '@streambed/common'
import {
  type AwarenessEntry,
  decodeMessage,
  encodeAwarenessMessage,
  encodeAwarenessUpdate,
  encodeSyncStep1,
  encodeSyncUpdate,
} from '@streambed/protocol'
import { openStorage } from '@streambed/storage'
import {
  connectClient,
  connectRaw,
  docContent,
  freePort,
  type RootKind,
  type TestClient,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { parseWorkerConfig } from '@streambed/worker-app'
import { startTestWorker } from '@streambed/worker-app/testing'
import { connectRawWith } from './testing/header-socket.js'
import { startTestNode } from './testing/test-node.js'

/**
 * The README's token refresh, verbatim: when a node closes the socket for its token — expired
 * (4410), revoked (4411), or refused on a reconnect (4401: it expired while the provider was away)
 * — get a fresh token and reconnect. y-websocket (v3) stops reconnecting after a 44xx close, hence
 * `connect()`; edits made meanwhile stay in the Y.Doc and go out with the resync. A fresh token
 * that is refused as well (4401 before the next sync) ends the retries, so a user who lost access
 * does not reconnect in a loop.
 */
export const refreshTokenOnClose = (
  provider: WebsocketProvider,
  getToken: () => Promise<string>,
): void => {
  let refreshed = false
  provider.on('sync', (synced) => {
    if (synced) refreshed = false
  })
  provider.on('connection-close', (event) => {
    const code = event?.code
    if (code !== 4401 && code !== 4410 && code !== 4411) return
    if (code === 4401 && refreshed) return
    refreshed = true
    getToken().then(
      (token) => {
        provider.params.token = token
        provider.connect()
      },
      (err: unknown) => console.error('could not refresh the Streambed token', err),
    )
  })
}

const redis = useRedisServer()

/** The code of every close the provider sees, as they come (undefined: closed locally). */
const closeCodes = (provider: WebsocketProvider): (number | undefined)[] => {
  const codes: (number | undefined)[] = []
  provider.on('connection-close', (event: { code: number } | null) => codes.push(event?.code))
  return codes
}

const SECRET = 'security-test-secret-of-32-or-more-characters'
const key = new TextEncoder().encode(SECRET)

const envFor = (prefix: string, extra: Record<string, string> = {}) => ({
  REDIS_URL: redis.url,
  REDIS_PREFIX: prefix,
  ...extra,
})
const jwtEnv = (prefix: string, extra: Record<string, string> = {}) =>
  envFor(prefix, { AUTH_MODE: 'jwt', AUTH_JWT_SECRET: SECRET, ...extra })

const nowS = () => Math.floor(Date.now() / 1000)

/** An HS256 token granting every document (unless `docs`), issued now (unless `iat`). */
const token = (claims: { sub?: string; docs?: string[]; exp?: number; iat?: number } = {}) => {
  const jwt = new SignJWT({ docs: claims.docs ?? ['*'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt(claims.iat ?? nowS())
  if (claims.sub !== undefined) jwt.setSubject(claims.sub)
  if (claims.exp !== undefined) jwt.setExpirationTime(claims.exp)
  return jwt.sign(key)
}

/** A directory shared by the nodes and the worker of one test (fs storage). */
const tempDir = async () => {
  const path = await mkdtemp(join(tmpdir(), 'streambed-security-'))
  return { path, [Symbol.asyncDispose]: () => rm(path, { recursive: true, force: true }) }
}

/** The updates of `edits`, one transaction each, by a document whose client id is `client`. */
const updatesAs = (client: number, edits: ((doc: Y.Doc) => void)[]): Uint8Array[] => {
  const doc = new Y.Doc()
  doc.clientID = client
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  for (const edit of edits) doc.transact(() => edit(doc))
  doc.destroy()
  if (updates.length !== edits.length) throw new Error('every edit must produce one update')
  return updates
}
const updateAs = (client: number, edit: (doc: Y.Doc) => void): Uint8Array =>
  updatesAs(client, [edit])[0]!

const roots: Record<string, RootKind> = { m: 'map', t: 'text' }

/** The content of `updates` applied in order to a fresh document (Yjs semantics). */
const contentOf = (...updates: Uint8Array[]): Record<string, unknown> => {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  const content = docContent(doc, roots)
  doc.destroy()
  return content
}
/**
 * What a client shows, read from its own document, once it agrees with its state's round trip
 * through a fresh document (which is what joiners, GET /docs and compaction build on). Applying an
 * update that reuses ids leaves the two apart (the reused ids keep the parent the update named),
 * so both are compared.
 */
const contentOfClient = (c: TestClient) => {
  const shown = { m: c.doc.getMap('m').toJSON(), t: c.doc.getText('t').toString() }
  expect(docContent(c.doc, roots)).toEqual(shown)
  return shown
}

/** `GET /docs/<name>`: the document as one update. */
const readDoc = async (httpUrl: string, name: string, headers: Record<string, string> = {}) => {
  const res = await fetch(`${httpUrl}/docs/${name}`, { headers })
  expect(res.status).toBe(200)
  return new Uint8Array(await res.arrayBuffer())
}

/** Errors the client's sync handler throws applying what the node sent (recorded, not thrown). */
const applyErrors = (client: TestClient): unknown[] => {
  const errors: unknown[] = []
  const handlers = client.provider.messageHandlers
  const sync = handlers[0]!
  handlers[0] = (...args) => {
    try {
      sync(...args)
    } catch (err) {
      errors.push(err)
    }
  }
  return errors
}

/** The value of a counter or gauge in a node's /metrics (0 when it has no sample yet). */
const metric = async (url: string, sample: string, headers: Record<string, string> = {}) => {
  const res = await fetch(`${url}/metrics`, { headers })
  expect(res.status).toBe(200)
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${sample} `))
  return line === undefined ? 0 : Number(line.slice(sample.length + 1))
}

const readyz = async (httpUrl: string) =>
  (await (await fetch(`${httpUrl}/readyz`)).json()) as Record<string, unknown>

const isOpen = (ws: WebSocket) => ws.readyState === ws.OPEN

const streamKey = (prefix: string, doc: string) => `${prefix}:v1:{${doc}}:s`

/** The ids (client, clock, length) of an update's structs, sorted. */
const idsOf = (update: Uint8Array) =>
  Y.decodeUpdate(update)
    .structs.map((s) => [s.id.client, s.id.clock, s.length])
    .sort((x, y) => (x[0]! - y[0]!) * 1e9 + (x[1]! - y[1]!))

const entryUpdates = async (prefix: string, doc: string): Promise<Uint8Array[]> => {
  const entries = (await redis.admin.xrangeBuffer(streamKey(prefix, doc), '-', '+')) as [
    Buffer,
    Buffer[],
  ][]
  return entries.map(([, fields]) => {
    const i = fields.findIndex((f) => f.toString() === 'u')
    return new Uint8Array(fields[i + 1]!)
  })
}

describe('one content per id (decision 0010)', () => {
  it('id reuse: live clients on two nodes, a joiner, GET /docs and the compacted state agree', async () => {
    const prefix = uniquePrefix('reuse')
    await using dir = await tempDir()
    const env = envFor(prefix, { STORAGE_DIR: dir.path })
    await using a = await startTestNode(env)
    await using b = await startTestNode(env)
    await using _worker = await startTestWorker(env)
    const alice = connectClient(a.url, 'reuse')
    const bob = connectClient(b.url, 'reuse')
    const errors = [applyErrors(alice), applyErrors(bob)]
    await Promise.all([alice.synced(), bob.synced()])

    const evil = updateAs(5555, (d) => d.getMap('m').set('k', 'evil'))
    const reuse = updateAs(5555, (d) => d.getText('t').insert(0, 'AAAA'))
    const raw = connectRaw(`${a.url}/reuse`)
    await raw.opened
    raw.send(encodeSyncUpdate(evil))
    await vi.waitFor(() => {
      for (const c of [alice, bob]) expect(c.doc.getMap('m').get('k')).toBe('evil')
    })
    raw.send(encodeSyncUpdate(reuse))
    // Yjs semantics: id 5555:0 keeps its first content; clocks 1-3 of the second update are new
    // (and hang off 5555:0, so they land in the map).
    const expected = contentOf(evil, reuse)
    expect(expected).not.toEqual(contentOf(evil))
    await vi.waitFor(() => {
      for (const c of [alice, bob]) expect(contentOfClient(c)).toEqual(expected)
    })

    const carol = connectClient(b.url, 'reuse')
    errors.push(applyErrors(carol))
    await carol.synced()
    expect(contentOfClient(carol)).toEqual(expected)
    for (const node of [a, b])
      expect(contentOf(await readDoc(node.httpUrl, 'reuse'))).toEqual(expected)

    // The worker compacts through a Y.Doc: the stored state holds the same content.
    const storage = await openStorage(parseWorkerConfig(env), createLogger({ level: 'silent' }))
    try {
      await vi.waitFor(
        async () => {
          const stored = await storage.load('reuse')
          expect(stored?.watermark).toBe(await redis.admin.hget(`${prefix}:v1:{reuse}:m`, 'last'))
        },
        { timeout: 20_000, interval: 100 },
      )
      const stored = await storage.load('reuse')
      expect(contentOf(stored!.state)).toEqual(expected)
    } finally {
      await storage.close()
    }
    // ... and what is read after compaction, too.
    expect(contentOf(await readDoc(a.httpUrl, 'reuse'))).toEqual(expected)
    const dave = connectClient(a.url, 'reuse')
    errors.push(applyErrors(dave))
    await dave.synced()
    expect(contentOfClient(dave)).toEqual(expected)

    // Reusing ids is not an error (the known part is dropped); nobody failed to apply anything.
    expect(isOpen(raw.ws)).toBe(true)
    expect(errors.flat()).toEqual([])
    raw.close()
    for (const c of [alice, bob, carol, dave]) c.destroy()
  })

  it('partial overlap: only the new clocks are appended, whichever node the writer uses', async () => {
    const prefix = uniquePrefix('overlap')
    await using a = await startTestNode(envFor(prefix))
    await using b = await startTestNode(envFor(prefix))
    const alice = connectClient(a.url, 'overlap')
    const bob = connectClient(b.url, 'overlap')
    const errors = [applyErrors(alice), applyErrors(bob)]
    await Promise.all([alice.synced(), bob.synced()])

    const ab = updateAs(6666, (d) => d.getText('t').insert(0, 'ab'))
    // 6666:0-1 are known with other content, 6666:2-3 are new, and so is client 7777.
    const second = Y.mergeUpdates([
      updateAs(6666, (d) => d.getText('t').insert(0, 'WXYZ')),
      updateAs(7777, (d) => d.getMap('m').set('n', 1)),
    ])
    const rawA = connectRaw(`${a.url}/overlap`)
    const rawB = connectRaw(`${b.url}/overlap`)
    await Promise.all([rawA.opened, rawB.opened])
    rawA.send(encodeSyncUpdate(ab))
    await vi.waitFor(() => {
      for (const c of [alice, bob]) expect(c.doc.getText('t').toString()).toBe('ab')
    })
    rawB.send(encodeSyncUpdate(second))
    const expected = contentOf(ab, second)
    expect(expected).toEqual({ m: { n: 1 }, t: 'abYZ' })
    await vi.waitFor(() => {
      for (const c of [alice, bob]) expect(contentOfClient(c)).toEqual(expected)
    })

    // The stream holds each id once: the second entry starts at 6666:2.
    const entries = await entryUpdates(prefix, 'overlap')
    expect(entries.map(idsOf)).toEqual([
      [[6666, 0, 2]],
      [
        [6666, 2, 2],
        [7777, 0, 1],
      ],
    ])
    const carol = connectClient(a.url, 'overlap')
    errors.push(applyErrors(carol))
    await carol.synced()
    expect(contentOfClient(carol)).toEqual(expected)
    for (const node of [a, b])
      expect(contentOf(await readDoc(node.httpUrl, 'overlap'))).toEqual(expected)
    expect(isOpen(rawA.ws) && isOpen(rawB.ws)).toBe(true)
    expect(errors.flat()).toEqual([])
    rawA.close()
    rawB.close()
    for (const c of [alice, bob, carol]) c.destroy()
  })

  it('gap: an update that skips clocks closes the socket with 4509 (resync) and nothing of it is appended', async () => {
    const prefix = uniquePrefix('gap')
    await using a = await startTestNode(envFor(prefix))
    await using b = await startTestNode(envFor(prefix))
    const alice = connectClient(a.url, 'gap')
    const bob = connectClient(b.url, 'gap')
    const errors = [applyErrors(alice), applyErrors(bob)]
    await Promise.all([alice.synced(), bob.synced()])

    // 6666:0-1 "ab", 6666:2-3 "cd" (never sent), 6666:4-5 "ef".
    const [ab, , ef] = updatesAs(6666, [
      (d) => d.getText('t').insert(0, 'ab'),
      (d) => d.getText('t').insert(2, 'cd'),
      (d) => d.getText('t').insert(4, 'ef'),
    ])
    const raw = connectRaw(`${a.url}/gap`)
    await raw.opened
    raw.send(encodeSyncUpdate(ab!))
    await vi.waitFor(() => {
      for (const c of [alice, bob]) expect(c.doc.getText('t').toString()).toBe('ab')
    })
    expect(await redis.admin.xlen(streamKey(prefix, 'gap'))).toBe(1)
    // With a client that is new to the document in the same update: nothing of it may land.
    raw.send(
      encodeSyncUpdate(Y.mergeUpdates([ef!, updateAs(8888, (d) => d.getMap('m').set('g', 1))])),
    )
    const closed = await raw.closed
    // Resync, not 4400: an honest client sends one after a failover lost its last entries, and
    // y-websocket does not reconnect after a 44xx close.
    expect(closed.code).toBe(CloseCode.resync)
    expect(closed.reason).toContain('skips clocks of client 6666')
    expect(await redis.admin.xlen(streamKey(prefix, 'gap'))).toBe(1)
    expect(contentOf(await readDoc(b.httpUrl, 'gap'))).toEqual(contentOf(ab!))

    // Honest writers go on; nobody received any part of the refused update.
    alice.doc.getText('t').insert(2, '!')
    await vi.waitFor(() => expect(bob.doc.getText('t').toString()).toBe('ab!'))
    const carol = connectClient(b.url, 'gap')
    errors.push(applyErrors(carol))
    await carol.synced()
    for (const c of [alice, bob, carol]) {
      expect(contentOfClient(c)).toEqual({ m: {}, t: 'ab!' })
      expect(c.doc.store.pendingStructs).toBeNull()
    }
    expect(errors.flat()).toEqual([])
    for (const c of [alice, bob, carol]) c.destroy()
  })
})

/**
 * An update of one new item, `client:clock`, naming `origin` as its left neighbour and `right` as
 * its right one, whatever the document holds there (Yjs' own encoder; honest clients name the
 * neighbours the item had where it was typed).
 */
const itemNaming = (
  client: number,
  origin: Y.ID | null,
  right: Y.ID | null,
  text: string,
): Uint8Array => {
  const encoder = new Y.UpdateEncoderV1()
  encoding.writeVarUint(encoder.restEncoder, 1)
  encoding.writeVarUint(encoder.restEncoder, 1)
  encoder.writeClient(client)
  encoding.writeVarUint(encoder.restEncoder, 0)
  const id = Y.createID(client, 0)
  new Y.Item(id, null, origin, null, right, null, null, new Y.ContentString(text)).write(encoder, 0)
  encoding.writeVarUint(encoder.restEncoder, 0)
  return encoder.toUint8Array()
}

describe('neighbours an update names (decision 0014)', () => {
  it('an item naming neighbours in an order the document contradicts is refused (4400); all readers agree', async () => {
    const prefix = uniquePrefix('neighbours')
    await using dir = await tempDir()
    const env = envFor(prefix, { STORAGE_DIR: dir.path })
    await using a = await startTestNode(env)
    await using b = await startTestNode(env)
    await using c = await startTestNode(env)
    await using _worker = await startTestWorker(env)
    const alice = connectClient(a.url, 'nb')
    const bob = connectClient(b.url, 'nb')
    const errors = [applyErrors(alice), applyErrors(bob)]
    await Promise.all([alice.synced(), bob.synced()])
    alice.doc.getText('t').insert(0, 'abc')
    await vi.waitFor(() => expect(bob.doc.getText('t').toString()).toBe('abc'))
    const abc = alice.doc.clientID
    // Node a checked alice's update against the document, which it now holds.
    expect(await metric(a.httpUrl, 'streambed_structure_docs')).toBe(1)

    // "Z" between c (abc:2) and b (abc:1): applied it lands after a, read from the document's
    // encoding after c. Without the check, live clients showed "aZbc" and joiners "abcZ".
    const twisted = itemNaming(5151, Y.createID(abc, 2), Y.createID(abc, 1), 'Z')
    const live = new Y.Doc()
    Y.applyUpdate(live, Y.encodeStateAsUpdate(alice.doc))
    Y.applyUpdate(live, twisted)
    const read = new Y.Doc()
    Y.applyUpdate(read, Y.encodeStateAsUpdate(live))
    expect([live.getText('t').toString(), read.getText('t').toString()]).toEqual(['aZbc', 'abcZ'])

    for (const [node, via] of [
      [a, 'socket'],
      [b, 'socket'],
      [c, 'http'],
    ] as const) {
      if (via === 'socket') {
        const raw = connectRaw(`${node.url}/nb`)
        await raw.opened
        raw.send(encodeSyncUpdate(twisted))
        const closed = await raw.closed
        expect(closed.code).toBe(CloseCode.badMessage)
        expect(closed.reason).toContain('in an order the document contradicts')
      } else {
        // Node c serves no socket of the document: it checks against a fresh read.
        const res = await fetch(`${node.httpUrl}/docs/nb`, { method: 'POST', body: twisted })
        expect(res.status).toBe(400)
      }
    }
    // Each refusal dropped the copy it polluted; the next write reads the document again.
    expect(await metric(a.httpUrl, 'streambed_structure_drops_total{reason="refused"}')).toBe(1)
    expect(await metric(c.httpUrl, 'streambed_structure_reads_total{reason="once"}')).toBe(1)
    // An honest item between a and b goes in; everyone holds the same document.
    const honest = itemNaming(5252, Y.createID(abc, 0), Y.createID(abc, 1), 'Y')
    const post = await fetch(`${b.httpUrl}/docs/nb`, { method: 'POST', body: honest })
    expect(post.status).toBe(200)
    await vi.waitFor(() => {
      for (const c of [alice, bob]) expect(c.doc.getText('t').toString()).toBe('aYbc')
    })
    const carol = connectClient(a.url, 'nb')
    errors.push(applyErrors(carol))
    await carol.synced()
    expect(contentOfClient(carol)).toEqual({ m: {}, t: 'aYbc' })
    for (const node of [a, b])
      expect(contentOf(await readDoc(node.httpUrl, 'nb'))).toEqual({ m: {}, t: 'aYbc' })
    expect(errors.flat()).toEqual([])
    for (const client of [alice, bob, carol]) client.destroy()
  })

  it('concurrent inserts at one place from two nodes are all accepted and converge', async () => {
    const prefix = uniquePrefix('concurrent')
    await using a = await startTestNode(envFor(prefix))
    await using b = await startTestNode(envFor(prefix))
    const writers = [a, b, a, b].map((n) => connectClient(n.url, 'cc'))
    const errors = writers.map(applyErrors)
    await Promise.all(writers.map((w) => w.synced()))
    writers[0]!.doc.getText('t').insert(0, '[]')
    await vi.waitFor(() => {
      for (const w of writers) expect(w.doc.getText('t').toString()).toBe('[]')
    })
    // Everyone types inside the brackets at once: the later keystrokes name neighbours with
    // other writers' concurrent characters between them.
    for (let round = 0; round < 20; round++)
      for (const [i, w] of writers.entries()) w.doc.getText('t').insert(1, String(i))
    await vi.waitFor(() => {
      const texts = writers.map((w) => w.doc.getText('t').toString())
      expect(texts[0]).toHaveLength(82)
      expect(new Set(texts).size).toBe(1)
    })
    const joiner = connectClient(b.url, 'cc')
    await joiner.synced()
    expect(joiner.doc.getText('t').toString()).toBe(writers[0]!.doc.getText('t').toString())
    expect(errors.flat()).toEqual([])
    for (const w of [...writers, joiner]) w.destroy()
  })
})

describe('presence belongs to its connection', () => {
  const awarenessFrame = (...entries: AwarenessEntry[]) =>
    encodeAwarenessMessage(encodeAwarenessUpdate(entries))
  const stateOf = (c: TestClient, id: number) => c.provider.awareness.getStates().get(id)
  const has = (c: TestClient, id: number) => c.provider.awareness.getStates().has(id)
  const refused = (url: string, reason: string) =>
    metric(url, `streambed_awareness_refused_total{reason="${reason}"}`)

  it('another socket cannot change or remove a client’s presence; it goes when its own socket does', async () => {
    const prefix = uniquePrefix('spoof')
    await using a = await startTestNode(envFor(prefix))
    await using b = await startTestNode(envFor(prefix))
    const victim = connectClient(a.url, 'presence')
    const observer = connectClient(b.url, 'presence')
    await Promise.all([victim.synced(), observer.synced()])
    const own = { user: { name: 'victim' } }
    victim.provider.awareness.setLocalStateField('user', own.user)
    const victimId = victim.doc.clientID
    await vi.waitFor(() => expect(stateOf(observer, victimId)).toEqual(own))
    const clock = victim.provider.awareness.meta.get(victimId)!.clock

    const attacker = connectRaw(`${a.url}/presence`)
    await attacker.opened
    const mallory = JSON.stringify({ user: { name: 'mallory' } })
    attacker.send(awarenessFrame({ clientId: victimId, clock: clock + 5, state: mallory }))
    attacker.send(awarenessFrame({ clientId: victimId, clock: clock + 6, state: 'null' }))
    // Its own id, last: once the observer has it, the spoofs before it were handled.
    const attackerState = { user: { name: 'attacker' } }
    attacker.send(
      awarenessFrame({ clientId: 7777, clock: 1, state: JSON.stringify(attackerState) }),
    )
    await vi.waitFor(() => expect(stateOf(observer, 7777)).toEqual(attackerState))
    await vi.waitFor(async () => expect(await refused(a.httpUrl, 'not-owner')).toBe(2))
    expect(stateOf(observer, victimId)).toEqual(own)
    expect(victim.provider.awareness.getLocalState()).toEqual(own)
    expect(victim.provider.awareness.meta.get(victimId)!.clock).toBe(clock)
    const joiner = connectClient(b.url, 'presence')
    await joiner.synced()
    await vi.waitFor(() => {
      expect(stateOf(joiner, victimId)).toEqual(own)
      expect(stateOf(joiner, 7777)).toEqual(attackerState)
    })

    // The attacker leaves: its own id goes everywhere, the victim's stays everywhere.
    attacker.close()
    await vi.waitFor(() => {
      for (const c of [observer, joiner, victim]) expect(has(c, 7777)).toBe(false)
    })
    const late = connectClient(a.url, 'presence')
    await late.synced()
    await vi.waitFor(() => expect(stateOf(late, victimId)).toEqual(own))
    expect(has(late, 7777)).toBe(false)
    for (const c of [observer, joiner]) expect(stateOf(c, victimId)).toEqual(own)
    expect(victim.provider.awareness.getLocalState()).toEqual(own)

    // The victim's socket drops without a goodbye from the client: the node removes its presence.
    victim.provider.shouldConnect = false
    ;(victim.provider.ws as unknown as WebSocket).terminate()
    await vi.waitFor(() => {
      for (const c of [observer, joiner, late]) expect(has(c, victimId)).toBe(false)
    })
    expect(await refused(a.httpUrl, 'not-owner')).toBe(2)
    for (const c of [victim, observer, joiner, late]) c.destroy()
  })

  it('a socket owns at most AWARENESS_MAX_CLIENTS_PER_SOCKET client ids at once', async () => {
    const prefix = uniquePrefix('ids')
    const env = envFor(prefix, { AWARENESS_MAX_CLIENTS_PER_SOCKET: '3' })
    await using a = await startTestNode(env)
    await using b = await startTestNode(env)
    const observer = connectClient(b.url, 'ids')
    await observer.synced()
    const raw = connectRaw(`${a.url}/ids`)
    await raw.opened
    const entry = (clientId: number, clock = 1) => ({
      clientId,
      clock,
      state: JSON.stringify({ n: clientId }),
    })
    raw.send(awarenessFrame(...[9001, 9002, 9003, 9004, 9005].map((id) => entry(id))))
    // The accepted ones travel in one relay: once they arrived, the others would have too.
    await vi.waitFor(() => {
      for (const id of [9001, 9002, 9003]) expect(stateOf(observer, id)).toEqual({ n: id })
    })
    expect(has(observer, 9004) || has(observer, 9005)).toBe(false)
    await vi.waitFor(async () => expect(await refused(a.httpUrl, 'too-many-ids')).toBe(2))

    // Giving one up makes room for another.
    raw.send(awarenessFrame({ clientId: 9001, clock: 2, state: 'null' }))
    await vi.waitFor(() => expect(has(observer, 9001)).toBe(false))
    raw.send(awarenessFrame(entry(9004), entry(9005)))
    await vi.waitFor(() => expect(stateOf(observer, 9004)).toEqual({ n: 9004 }))
    await vi.waitFor(async () => expect(await refused(a.httpUrl, 'too-many-ids')).toBe(3))
    expect(has(observer, 9005)).toBe(false)

    // Its ids go with it.
    raw.close()
    await vi.waitFor(() => {
      for (const id of [9002, 9003, 9004]) expect(has(observer, id)).toBe(false)
    })
    observer.destroy()
  })

  it('an awareness state above AWARENESS_MAX_STATE_BYTES closes the socket with 4413', async () => {
    const prefix = uniquePrefix('aw-size')
    await using a = await startTestNode(envFor(prefix, { AWARENESS_MAX_STATE_BYTES: '1024' }))
    const observer = connectClient(a.url, 'sizes')
    await observer.synced()
    // '{"pad":""}' is 10 bytes.
    const stateOfSize = (bytes: number) => JSON.stringify({ pad: 'x'.repeat(bytes - 10) })
    const fits = connectRaw(`${a.url}/sizes`)
    const big = connectRaw(`${a.url}/sizes`)
    await Promise.all([fits.opened, big.opened])
    fits.send(awarenessFrame({ clientId: 9100, clock: 1, state: stateOfSize(1024) }))
    await vi.waitFor(() => expect(has(observer, 9100)).toBe(true))

    big.send(awarenessFrame({ clientId: 9101, clock: 1, state: stateOfSize(1025) }))
    const closed = await big.closed
    expect(closed.code).toBe(CloseCode.messageTooBig)
    expect(closed.reason).toContain('above AWARENESS_MAX_STATE_BYTES (1024)')
    // Sent after the refusal: once the observer has it, 9101 would have arrived before.
    fits.send(awarenessFrame({ clientId: 9100, clock: 2, state: '{"n":2}' }))
    await vi.waitFor(() => expect(stateOf(observer, 9100)).toEqual({ n: 2 }))
    expect(has(observer, 9101)).toBe(false)
    expect(isOpen(fits.ws)).toBe(true)
    fits.close()
    observer.destroy()
  })
})

describe('token lifetime (AUTH_MODE=jwt)', () => {
  it('closes a socket with 4410 when its token expires; the token is refused afterwards (4401)', async () => {
    await using a = await startTestNode(jwtEnv(uniquePrefix('exp')))
    const exp = nowS() + 2
    const short = await token({ sub: 'short', exp })
    const raw = connectRaw(`${a.url}/expiring?token=${short}`)
    await raw.opened
    // Served until then.
    raw.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
    await vi.waitFor(() =>
      expect(raw.messages.map((m) => decodeMessage(m).kind)).toContain('sync-step2'),
    )
    const closed = await raw.closed
    expect(closed).toEqual({
      code: CloseCode.tokenExpired,
      reason: 'token expired; reconnect with a fresh token',
    })
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000)
    const again = connectRaw(`${a.url}/expiring?token=${short}`)
    expect((await again.closed).code).toBe(CloseCode.unauthorized)

    // y-websocket takes 4410 as final: without the app's help the provider stays disconnected.
    const plain = connectClient(a.url, 'expiring', {
      params: { token: await token({ exp: nowS() + 2 }) },
    })
    const final = new Promise<{ code: number; reason: string }>((resolve) =>
      plain.provider.on('closed', resolve),
    )
    await plain.synced()
    expect((await final).code).toBe(CloseCode.tokenExpired)
    expect(plain.provider.shouldConnect).toBe(false)
    plain.destroy()
  })

  it('an app that refreshes its token on close (README pattern) loses no edits', async () => {
    const prefix = uniquePrefix('refresh')
    await using a = await startTestNode(jwtEnv(prefix))
    await using b = await startTestNode(jwtEnv(prefix))
    let release = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    let asked = 0
    let fresh = ''
    const getToken = async () => {
      asked++
      await gate
      fresh = await token({ sub: 'writer', exp: nowS() + 3600 })
      return fresh
    }
    const writer = connectClient(a.url, 'refresh', {
      params: { token: await token({ sub: 'writer', exp: nowS() + 2 }) },
    })
    refreshTokenOnClose(writer.provider, getToken)
    const closes = closeCodes(writer.provider)
    const readerToken = await token({ sub: 'reader' })
    const reader = connectClient(b.url, 'refresh', { params: { token: readerToken } })
    await Promise.all([writer.synced(), reader.synced()])

    writer.doc.getText('t').insert(0, 'before ')
    await vi.waitFor(() => expect(reader.doc.getText('t').toString()).toBe('before '))
    await vi.waitFor(() => expect(closes).toEqual([CloseCode.tokenExpired]), { timeout: 10_000 })
    expect(asked).toBe(1)
    expect(writer.provider.wsconnected).toBe(false)
    // Edits while disconnected (the new token is not there yet).
    writer.doc.getText('t').insert(7, 'while ')
    writer.doc.getMap('m').set('offline', true)
    expect(reader.doc.getText('t').toString()).toBe('before ')

    release()
    await writer.synced()
    expect(writer.provider.params.token).toBe(fresh)
    writer.doc.getText('t').insert(13, 'after')
    const expected = { m: { offline: true }, t: 'before while after' }
    await vi.waitFor(() => expect(contentOfClient(reader)).toEqual(expected))
    expect(contentOfClient(writer)).toEqual(expected)
    const auth = { authorization: `Bearer ${readerToken}` }
    expect(contentOf(await readDoc(a.httpUrl, 'refresh', auth))).toEqual(expected)
    expect(closes).toEqual([CloseCode.tokenExpired])
    writer.destroy()
    reader.destroy()
  })

  it('a token that expired while the provider was away is refreshed on its 4401; a fresh token refused too ends the retries', async () => {
    const prefix = uniquePrefix('away')
    await using a = await startTestNode(jwtEnv(prefix))
    const exp = nowS() + 2
    let asked = 0
    let next = () => token({ sub: 'app', exp: nowS() + 3600 })
    const app = connectClient(a.url, 'away', {
      params: { token: await token({ sub: 'app', exp }) },
    })
    refreshTokenOnClose(app.provider, () => {
      asked++
      return next()
    })
    const closes = closeCodes(app.provider)
    await app.synced()

    // The app goes away (a laptop sleeps) and edits; it comes back after its token expired.
    app.provider.disconnect()
    app.doc.getText('t').insert(0, 'offline')
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(exp * 1000), { timeout: 10_000 })
    app.provider.connect()
    await app.synced()
    expect(closes).toEqual([undefined, CloseCode.unauthorized])
    expect(asked).toBe(1)
    const auth = { authorization: `Bearer ${await token({ sub: 'reader' })}` }
    await vi.waitFor(async () =>
      expect(contentOf(await readDoc(a.httpUrl, 'away', auth))).toEqual({ m: {}, t: 'offline' }),
    )

    // The user lost access: the token service hands out tokens the node refuses.
    next = () => Promise.resolve('not-a-token')
    app.provider.disconnect()
    app.provider.params.token = 'not-a-token-either'
    app.provider.connect()
    await vi.waitFor(() =>
      expect(closes).toEqual([
        undefined,
        CloseCode.unauthorized,
        undefined,
        CloseCode.unauthorized,
        CloseCode.unauthorized,
      ]),
    )
    // The helper decides in the close handler: had it retried, it would have asked already.
    expect(asked).toBe(2)
    expect(app.provider.shouldConnect).toBe(false)
    app.destroy()
  })
})

describe('limits and defaults', () => {
  const typing = (client: number, text: string) =>
    updatesAs(
      client,
      [...text].map((ch, i) => (d: Y.Doc) => d.getText('t').insert(i, ch)),
    )

  it('holds messages over WS_MAX_MESSAGES_PER_SECOND and handles them later: a burst is all appended', async () => {
    const prefix = uniquePrefix('burst')
    await using a = await startTestNode(envFor(prefix, { WS_MAX_MESSAGES_PER_SECOND: '1' }))
    const raw = connectRaw(`${a.url}/burst`)
    await raw.opened
    // 1 per second in bursts of 2: the 3rd, 4th and 5th wait 1, 2 and 3 s.
    for (const u of typing(4242, '01234')) raw.send(encodeSyncUpdate(u))
    await vi.waitFor(async () =>
      expect(await redis.admin.xlen(streamKey(prefix, 'burst'))).toBeGreaterThanOrEqual(1),
    )
    expect(await redis.admin.xlen(streamKey(prefix, 'burst'))).toBeLessThan(5)
    await vi.waitFor(
      async () => expect(contentOf(await readDoc(a.httpUrl, 'burst')).t).toBe('01234'),
      { timeout: 20_000, interval: 200 },
    )
    expect(isOpen(raw.ws)).toBe(true)

    // What waits when the socket closes is handled all the same.
    const leaving = connectRaw(`${a.url}/burst-close`)
    await leaving.opened
    for (const u of typing(4243, 'abcde')) leaving.send(encodeSyncUpdate(u))
    leaving.close()
    expect((await leaving.closed).code).toBe(1005)
    await vi.waitFor(
      async () => expect(contentOf(await readDoc(a.httpUrl, 'burst-close')).t).toBe('abcde'),
      { timeout: 20_000, interval: 200 },
    )
    raw.close()
  })

  // Issue 8 asked for 4429; 8ec1d6b made it 4529 so y-websocket clients back off and reconnect.
  it('closes a socket that keeps sending faster than WS_MAX_MESSAGES_PER_SECOND with 4529', async () => {
    const prefix = uniquePrefix('flood')
    await using a = await startTestNode(envFor(prefix, { WS_MAX_MESSAGES_PER_SECOND: '2' }))
    const raw = connectRaw(`${a.url}/flood`)
    await raw.opened
    let closed = false
    void raw.closed.then(() => (closed = true))
    const text = '0123456789'.repeat(20)
    for (const u of typing(4444, text)) {
      if (closed) break
      raw.send(encodeSyncUpdate(u))
      await new Promise((resolve) => setImmediate(resolve))
    }
    await vi.waitFor(() => expect(closed).toBe(true), { timeout: 10_000 })
    const { code, reason } = await raw.closed
    expect(code).toBe(CloseCode.tooManyInFlight)
    expect(reason).toContain('WS_MAX_MESSAGES_PER_SECOND (2)')
    // What it sent before is appended in order, without a hole (the burst at least).
    await vi.waitFor(async () => {
      const t = contentOf(await readDoc(a.httpUrl, 'flood')).t as string
      expect(t.length).toBeGreaterThanOrEqual(4)
      expect(text.startsWith(t)).toBe(true)
    })
  })

  it('refuses sockets past MAX_CONNECTIONS and MAX_CONNECTIONS_PER_DOC with 4503 and a reason', async () => {
    const prefix = uniquePrefix('conns')
    await using a = await startTestNode(envFor(prefix, { MAX_CONNECTIONS: '2' }))
    await using b = await startTestNode(envFor(prefix, { MAX_CONNECTIONS_PER_DOC: '1' }))
    const connections = async (httpUrl: string) => (await readyz(httpUrl)).connections

    const one = connectRaw(`${a.url}/one`)
    const two = connectRaw(`${a.url}/two`)
    await Promise.all([one.opened, two.opened])
    await vi.waitFor(async () => expect(await connections(a.httpUrl)).toBe(2))
    const three = connectRaw(`${a.url}/three`)
    expect(await three.closed).toEqual({
      code: CloseCode.unavailable,
      reason: 'node holds MAX_CONNECTIONS (2) sockets',
    })
    one.close()
    await vi.waitFor(async () => expect(await connections(a.httpUrl)).toBe(1))
    const four = connectRaw(`${a.url}/three`)
    await four.opened
    await vi.waitFor(async () => expect(await connections(a.httpUrl)).toBe(2))
    expect(isOpen(two.ws) && isOpen(four.ws)).toBe(true)

    const first = connectRaw(`${b.url}/shared`)
    await first.opened
    await vi.waitFor(async () => expect(await connections(b.httpUrl)).toBe(1))
    const second = connectRaw(`${b.url}/shared`)
    expect(await second.closed).toEqual({
      code: CloseCode.unavailable,
      reason: 'document has MAX_CONNECTIONS_PER_DOC (1) sockets on this node',
    })
    const other = connectRaw(`${b.url}/other`)
    await other.opened
    await vi.waitFor(async () => expect(await connections(b.httpUrl)).toBe(2))
    expect(isOpen(first.ws) && isOpen(other.ws)).toBe(true)
    for (const r of [two, four, first, other]) r.close()
  })

  it('answers 429 with retry-after past HTTP_MAX_REQUESTS_PER_SECOND', async () => {
    const prefix = uniquePrefix('http-rate')
    await using a = await startTestNode(envFor(prefix, { HTTP_MAX_REQUESTS_PER_SECOND: '2' }))
    let res = await fetch(`${a.httpUrl}/docs/limited`)
    for (let i = 0; i < 50 && res.status !== 429; i++) {
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      res = await fetch(`${a.httpUrl}/docs/limited`)
    }
    expect(res.status).toBe(429)
    const retryAfter = Number(res.headers.get('retry-after'))
    expect(Number.isInteger(retryAfter) && retryAfter >= 1).toBe(true)
    const body = (await res.json()) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('RATE_LIMITED')
    expect(body.error.message).toContain('HTTP_MAX_REQUESTS_PER_SECOND')
    // The operations endpoints are not the document API: not limited.
    expect((await fetch(`${a.httpUrl}/healthz`)).status).toBe(200)
    expect(await metric(a.httpUrl, 'streambed_http_rate_limited_total')).toBeGreaterThanOrEqual(1)
  })

  it('METRICS_PORT serves /metrics there; the main port answers /metrics 404 and /readyz without details', async () => {
    const metricsPort = await freePort()
    await using a = await startTestNode(
      envFor(uniquePrefix('metrics-port'), { METRICS_PORT: String(metricsPort) }),
    )
    const ops = `http://127.0.0.1:${metricsPort}`
    expect((await fetch(`${a.httpUrl}/metrics`)).status).toBe(404)
    const ready = await fetch(`${a.httpUrl}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({ status: 'ready' })
    const metrics = await fetch(`${ops}/metrics`)
    expect(metrics.status).toBe(200)
    expect(await metrics.text()).toContain('streambed_connections ')
    expect(await (await fetch(`${ops}/readyz`)).json()).toEqual({
      status: 'ready',
      connections: 0,
    })
  })

  it('METRICS_TOKEN: /metrics answers 401 without the bearer token and 200 with it', async () => {
    const metricsToken = 'metrics-token-0123456789'
    await using a = await startTestNode(
      envFor(uniquePrefix('metrics-token'), { METRICS_TOKEN: metricsToken }),
    )
    expect((await fetch(`${a.httpUrl}/metrics`)).status).toBe(401)
    const wrong = { authorization: 'Bearer not-the-metrics-token' }
    expect((await fetch(`${a.httpUrl}/metrics`, { headers: wrong })).status).toBe(401)
    const right = { authorization: `Bearer ${metricsToken}` }
    expect(await metric(a.httpUrl, 'streambed_connections', right)).toBe(0)
    expect(await readyz(a.httpUrl)).toEqual({ status: 'ready' })
    const full = await fetch(`${a.httpUrl}/readyz`, { headers: right })
    expect(await full.json()).toEqual({ status: 'ready', connections: 0 })
  })

  it('ALLOWED_ORIGINS: other origins are refused (4403, 403); allowed ones and non-browsers are served, with CORS', async () => {
    const allowed = 'https://app.example.com'
    const evil = 'https://evil.example.com'
    await using a = await startTestNode(
      envFor(uniquePrefix('origins'), { ALLOWED_ORIGINS: `${allowed},http://localhost:5173` }),
    )
    const refused = connectRawWith(`${a.url}/origins`, { origin: evil })
    const closed = await refused.closed
    expect(closed.code).toBe(CloseCode.forbidden)
    expect(closed.reason).toBe(`origin ${evil} is not in ALLOWED_ORIGINS`)

    for (const raw of [
      connectRawWith(`${a.url}/origins`, { origin: allowed }),
      connectRaw(`${a.url}/origins`),
    ]) {
      await raw.opened
      raw.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
      await vi.waitFor(() =>
        expect(raw.messages.map((m) => decodeMessage(m).kind)).toContain('sync-step2'),
      )
      expect(isOpen(raw.ws)).toBe(true)
      raw.close()
    }

    const get = await fetch(`${a.httpUrl}/docs/origins`, { headers: { origin: allowed } })
    expect(get.status).toBe(200)
    expect(get.headers.get('access-control-allow-origin')).toBe(allowed)
    expect(get.headers.get('vary')).toBe('origin')
    expect(get.headers.get('access-control-expose-headers')).toContain('x-streambed-up-to')
    const fromEvil = await fetch(`${a.httpUrl}/docs/origins`, { headers: { origin: evil } })
    expect(fromEvil.status).toBe(403)
    expect(fromEvil.headers.get('access-control-allow-origin')).toBeNull()
    const plain = await fetch(`${a.httpUrl}/docs/origins`)
    expect(plain.status).toBe(200)
    expect(plain.headers.get('access-control-allow-origin')).toBeNull()

    const preflight = await fetch(`${a.httpUrl}/docs/origins`, {
      method: 'OPTIONS',
      headers: {
        origin: allowed,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    })
    expect(preflight.status).toBe(204)
    expect(preflight.headers.get('access-control-allow-origin')).toBe(allowed)
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST')
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization')
    const evilPreflight = await fetch(`${a.httpUrl}/docs/origins`, {
      method: 'OPTIONS',
      headers: { origin: evil, 'access-control-request-method': 'POST' },
    })
    expect(evilPreflight.status).toBe(403)
  })
})
