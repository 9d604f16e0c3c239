/**
 * Bad input on Hocuspocus sockets (decision 0011), in raw protocol frames: a clear error for the
 * document or the socket it concerns, and nothing lost for anyone else.
 */
import * as Y from 'yjs'
import WebSocket from 'ws'
import * as decoding from 'lib0/decoding'
import { describe, expect, it, vi } from 'vitest'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import {
  HocuspocusType,
  encodeHocuspocusAuth,
  encodeHocuspocusPrefix,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
  prefixMessage,
  readHocuspocusHeader,
} from '@streambed/protocol'
import {
  type RawClient,
  captureUpdate,
  connectClient,
  connectRaw,
  uniquePrefix,
  useRedisServer,
} from '@streambed/testing'
import { startTestNode } from './testing/test-node.js'

const redis = useRedisServer()
const env = (prefix: string, extra: Record<string, string> = {}) => ({
  REDIS_URL: redis.url,
  REDIS_PREFIX: prefix,
  ...extra,
})

/** What the node sent one raw socket, decoded. */
type Received =
  | { doc: string; kind: 'authenticated'; scope: string }
  | { doc: string; kind: 'denied'; reason: string }
  | { doc: string; kind: 'close'; reason: string }
  | { doc: string; kind: 'status'; applied: boolean }
  | { doc: string; kind: 'other'; type: number }

const received = (raw: RawClient): Received[] =>
  raw.messages.map((frame) => {
    const { doc, type, payloadAt } = readHocuspocusHeader(frame)
    const d = decoding.createDecoder(frame.subarray(payloadAt))
    if (type === HocuspocusType.auth) {
      const kind = decoding.readVarUint(d)
      const text = decoding.readVarString(d)
      return kind === 2
        ? { doc, kind: 'authenticated', scope: text }
        : { doc, kind: 'denied', reason: text }
    }
    if (type === HocuspocusType.close)
      return { doc, kind: 'close', reason: decoding.readVarString(d) }
    if (type === HocuspocusType.syncStatus)
      return { doc, kind: 'status', applied: decoding.readVarUint(d) === 1 }
    return { doc, kind: 'other', type }
  })

const ofDoc = (raw: RawClient, doc: string) => received(raw).filter((r) => r.doc === doc)
const statuses = (raw: RawClient, doc: string) =>
  ofDoc(raw, doc).flatMap((r) => (r.kind === 'status' ? [r.applied] : []))

/** A frame of `doc` carrying the y-websocket `message`. */
const frameOf = (doc: string, message: Uint8Array) =>
  prefixMessage(encodeHocuspocusPrefix(doc), message)
const typeOnly = (doc: string, type: number) => frameOf(doc, new Uint8Array([type]))
const textUpdate = (text: string) => captureUpdate((d) => d.getText('text').insert(0, text))

/** A raw socket on the Hocuspocus path with `docs` authenticated (no token: AUTH_MODE=none). */
const openRaw = async (url: string, docs: string[] = []): Promise<RawClient> => {
  const raw = connectRaw(url)
  await raw.opened
  for (const doc of docs) raw.send(encodeHocuspocusAuth(doc, ''))
  await vi.waitFor(() =>
    expect(received(raw).filter((r) => r.kind === 'authenticated')).toHaveLength(docs.length),
  )
  return raw
}

const storedText = async (httpUrl: string, doc: string): Promise<string> => {
  const res = await fetch(`${httpUrl}/docs/${encodeURIComponent(doc)}`)
  const ydoc = new Y.Doc()
  Y.applyUpdate(ydoc, new Uint8Array(await res.arrayBuffer()))
  return ydoc.getText('text').toString()
}

describe('bad input on Hocuspocus sockets', () => {
  it('closes the socket (4400) on a frame without a document name; others lose nothing', async () => {
    await using node = await startTestNode(env(uniquePrefix('hpb-frame')))
    const socket = new HocuspocusProviderWebsocket({ url: node.url, WebSocketPolyfill: WebSocket })
    const doc = new Y.Doc()
    const provider = new HocuspocusProvider({
      websocketProvider: socket,
      name: 'f/doc',
      document: doc,
    })
    provider.attach()
    await vi.waitFor(() => expect(provider.isSynced).toBe(true))
    doc.getText('text').insert(0, 'before')

    const truncated = await openRaw(node.url)
    truncated.send(new Uint8Array([5, 0x61])) // a name of 5 bytes, 1 sent
    expect(await truncated.closed).toEqual({
      code: 4400,
      reason: 'malformed Hocuspocus frame: no document name and message type',
    })
    const noType = await openRaw(node.url, ['f/doc'])
    noType.send(encodeHocuspocusPrefix('f/doc'))
    expect((await noType.closed).code).toBe(4400)

    doc.getText('text').insert(6, ' after')
    const y = connectClient(node.url, 'f/doc')
    await y.synced()
    await vi.waitFor(() => expect(y.doc.getText('text').toString()).toBe('before after'))
    await vi.waitFor(() => expect(provider.hasUnsyncedChanges).toBe(false))
    expect(await storedText(node.httpUrl, 'f/doc')).toBe('before after')
    provider.destroy()
    socket.destroy()
    y.destroy()
  })

  it('closes only the document of an unknown message type; the socket and its other documents go on', async () => {
    await using node = await startTestNode(env(uniquePrefix('hpb-type')))
    const raw = await openRaw(node.url, ['t/one', 't/two'])
    expect(received(raw)).toEqual([
      { doc: 't/one', kind: 'authenticated', scope: 'read-write' },
      { doc: 't/two', kind: 'authenticated', scope: 'read-write' },
    ])
    raw.send(typeOnly('t/one', 42))
    await vi.waitFor(() =>
      expect(ofDoc(raw, 't/one')).toContainEqual({
        doc: 't/one',
        kind: 'close',
        reason: '4400: unknown message type 42',
      }),
    )
    raw.send(frameOf('t/two', encodeSyncUpdate(textUpdate('two'))))
    await vi.waitFor(() => expect(statuses(raw, 't/two')).toEqual([true]))
    expect(await storedText(node.httpUrl, 't/two')).toBe('two')
    // The closed document's updates are answered "not stored" (the provider keeps them unsynced).
    raw.send(frameOf('t/one', encodeSyncUpdate(textUpdate('one'))))
    await vi.waitFor(() => expect(statuses(raw, 't/one')).toEqual([false]))
    expect(await storedText(node.httpUrl, 't/one')).toBe('')
    // A type only servers send.
    raw.send(frameOf('t/two', new Uint8Array([HocuspocusType.syncStatus, 1])))
    await vi.waitFor(() =>
      expect(ofDoc(raw, 't/two')).toContainEqual({
        doc: 't/two',
        kind: 'close',
        reason: '4400: message type 8 is not one a Hocuspocus client sends',
      }),
    )
    // An unknown type for no open document: nothing to close but the socket.
    raw.send(typeOnly('t/three', 42))
    expect(await raw.closed).toEqual({
      code: 4400,
      reason: 'message type 42 (for document "t/three") is not one a Hocuspocus client sends',
    })
  })

  it('denies a bad document name with the rule it breaks; the socket goes on', async () => {
    await using node = await startTestNode(env(uniquePrefix('hpb-name')))
    const raw = await openRaw(node.url)
    raw.send(encodeHocuspocusAuth('../etc', ''))
    raw.send(encodeHocuspocusAuth('a b', ''))
    raw.send(frameOf('../etc', encodeSyncUpdate(textUpdate('x'))))
    raw.send(encodeHocuspocusAuth('good/doc', ''))
    await vi.waitFor(() =>
      expect(received(raw)).toEqual([
        {
          doc: '../etc',
          kind: 'denied',
          reason: expect.stringMatching(/^invalid document name: "\.\." segment; expected 1-200/),
        },
        {
          doc: 'a b',
          kind: 'denied',
          reason: expect.stringMatching(/^invalid document name: character " " not allowed/),
        },
        { doc: '../etc', kind: 'status', applied: false },
        { doc: 'good/doc', kind: 'authenticated', scope: 'read-write' },
      ]),
    )
    raw.close()
  })

  it('closes the document of an invalid Yjs update (4400) and appends nothing of it', async () => {
    await using node = await startTestNode(env(uniquePrefix('hpb-yjs')))
    const raw = await openRaw(node.url, ['y/doc', 'y/other'])
    raw.send(frameOf('y/doc', encodeSyncUpdate(textUpdate('valid'))))
    await vi.waitFor(() => expect(statuses(raw, 'y/doc')).toEqual([true]))
    raw.send(frameOf('y/doc', encodeSyncUpdate(new Uint8Array([1, 2, 3, 4, 5]))))
    await vi.waitFor(() =>
      expect(ofDoc(raw, 'y/doc')).toContainEqual({
        doc: 'y/doc',
        kind: 'close',
        reason: expect.stringMatching(/^4400: /),
      }),
    )
    expect(await storedText(node.httpUrl, 'y/doc')).toBe('valid')
    raw.send(frameOf('y/other', encodeSyncUpdate(textUpdate('other'))))
    await vi.waitFor(() => expect(statuses(raw, 'y/other')).toEqual([true]))
    raw.close()
  })

  it('applies the limits of y-websocket sockets: message size per document, sockets per document', async () => {
    await using node = await startTestNode(
      env(uniquePrefix('hpb-limits'), {
        WS_MAX_MESSAGE_BYTES: '4KiB',
        MAX_CONNECTIONS_PER_DOC: '1',
      }),
    )
    const raw = await openRaw(node.url, ['l/doc', 'l/other'])
    const big = frameOf('l/doc', encodeSyncUpdate(textUpdate('x'.repeat(6000))))
    raw.send(big)
    await vi.waitFor(() =>
      expect(ofDoc(raw, 'l/doc')).toContainEqual({
        doc: 'l/doc',
        kind: 'close',
        reason: `4413: message of ${big.length} bytes exceeds WS_MAX_MESSAGE_BYTES (4096)`,
      }),
    )
    raw.send(frameOf('l/other', encodeSyncUpdate(textUpdate('small'))))
    await vi.waitFor(() => expect(statuses(raw, 'l/other')).toEqual([true]))

    // l/doc's connection is gone: another socket may take the document's only place.
    const y = connectClient(node.url, 'l/doc')
    await y.synced()
    y.destroy()
    raw.close()
  })

  it('denies a full document (MAX_CONNECTIONS_PER_DOC) for that document only; the provider does not reconnect', async () => {
    await using node = await startTestNode(
      env(uniquePrefix('hpb-full'), { MAX_CONNECTIONS_PER_DOC: '1' }),
    )
    const y = connectClient(node.url, 'full/doc')
    await y.synced()
    const raw = await openRaw(node.url, ['full/free'])
    raw.send(encodeHocuspocusAuth('full/doc', ''))
    const reason = 'document has MAX_CONNECTIONS_PER_DOC (1) sockets on this node'
    await vi.waitFor(() =>
      expect(ofDoc(raw, 'full/doc')).toEqual([{ doc: 'full/doc', kind: 'denied', reason }]),
    )
    raw.send(frameOf('full/free', encodeSyncUpdate(textUpdate('free'))))
    await vi.waitFor(() => expect(statuses(raw, 'full/free')).toEqual([true]))

    // The real provider: told once, its socket and the other document on it go on.
    const socket = new HocuspocusProviderWebsocket({ url: node.url, WebSocketPolyfill: WebSocket })
    let opens = 0
    socket.on('open', () => opens++)
    const attach = (name: string) => {
      const doc = new Y.Doc()
      const denied: string[] = []
      const closes: number[] = []
      const provider = new HocuspocusProvider({
        websocketProvider: socket,
        name,
        document: doc,
        onAuthenticationFailed: ({ reason }) => denied.push(reason),
        onClose: ({ event }) => closes.push(event.code),
      })
      provider.attach()
      return { doc, provider, denied, closes }
    }
    const free = attach('full/other')
    const refused = attach('full/doc')
    await vi.waitFor(() => expect(free.provider.isSynced).toBe(true))
    await vi.waitFor(() => expect(refused.denied).toEqual([reason]))
    // Frames of one socket are handled in order: this edit is acknowledged after the denial.
    free.doc.getText('text').insert(0, 'other')
    await vi.waitFor(() => expect(free.provider.hasUnsyncedChanges).toBe(false))
    expect(await storedText(node.httpUrl, 'full/other')).toBe('other')
    expect(opens).toBe(1)
    expect([...free.closes, ...refused.closes]).toEqual([])
    expect(refused.provider.isSynced).toBe(false)
    for (const c of [free, refused]) c.provider.destroy()
    socket.destroy()
    y.destroy()
    raw.close()
  })

  it('counts Hocuspocus sockets against MAX_CONNECTIONS: one while idle, one per open document', async () => {
    await using node = await startTestNode(env(uniquePrefix('hpb-max'), { MAX_CONNECTIONS: '2' }))
    const connections = async () => {
      const res = await fetch(`${node.httpUrl}/readyz`)
      return ((await res.json()) as { connections: number }).connections
    }
    const idle = await openRaw(node.url)
    const y = connectClient(node.url, 'max/y')
    await y.synced()
    // The idle socket holds a place: a third socket of either kind is refused.
    const reason = 'node holds MAX_CONNECTIONS (2) sockets'
    expect(await connectRaw(node.url).closed).toEqual({ code: 4503, reason })
    expect(await connectRaw(`${node.url}/max/plain`).closed).toEqual({ code: 4503, reason })
    // Its first document takes its own place; a second one would be a third.
    idle.send(encodeHocuspocusAuth('max/one', ''))
    idle.send(encodeHocuspocusAuth('max/two', ''))
    await vi.waitFor(() =>
      expect(received(idle)).toEqual([
        { doc: 'max/one', kind: 'authenticated', scope: 'read-write' },
        { doc: 'max/two', kind: 'denied', reason },
      ]),
    )
    y.destroy()
    await vi.waitFor(async () => expect(await connections()).toBe(1))
    idle.send(encodeHocuspocusAuth('max/two', ''))
    await vi.waitFor(() =>
      expect(ofDoc(idle, 'max/two')).toContainEqual({
        doc: 'max/two',
        kind: 'authenticated',
        scope: 'read-write',
      }),
    )
    expect(await connectRaw(node.url).closed).toEqual({ code: 4503, reason })
    idle.close()
  })

  it('closes sockets that wait WS_IDLE_TIMEOUT_S: with no document open (4401), for a sync step 2 (4529)', async () => {
    await using node = await startTestNode(
      env(uniquePrefix('hpb-idle'), { WS_IDLE_TIMEOUT_S: '8' }),
    )
    const raw = await openRaw(node.url)
    const authed = await openRaw(node.url, ['i/doc'])
    // Its only document closed (the provider detached it): the timeout runs again.
    const detached = await openRaw(node.url, ['i/gone'])
    detached.send(typeOnly('i/gone', HocuspocusType.close))
    // Updates held for a step 2 that never comes (the node sent its step 1 in answer to this one).
    const silent = await openRaw(node.url, ['i/silent'])
    silent.send(frameOf('i/silent', encodeSyncStep1(new Uint8Array([0]))))
    silent.send(frameOf('i/silent', encodeSyncUpdate(textUpdate('held'))))
    const idle = { code: 4401, reason: 'no document authenticated within 8 s' }
    expect(await raw.closed).toEqual(idle)
    expect(await detached.closed).toEqual(idle)
    expect(await silent.closed).toEqual({
      code: 4529,
      reason: "no sync step 2 within 8 s of the node's sync step 1, with 1 held update",
    })
    expect(statuses(silent, 'i/silent')).toEqual([])
    // What a socket sent before it closed is handled all the same (as on a y-websocket socket).
    await vi.waitFor(async () => expect(await storedText(node.httpUrl, 'i/silent')).toBe('held'))
    expect(authed.ws.readyState).toBe(WebSocket.OPEN)
    authed.close()
  }, 60_000)

  it('holds updates sent before the sync step 2 until it came (a provider’s queue after a reconnect)', async () => {
    await using node = await startTestNode(env(uniquePrefix('hpb-early')))
    // A client that made 30 edits; the node never got the first 5 (they went to a node that
    // died): the 25 it queued meanwhile skip clocks until its step 2 fills the gap.
    const client = new Y.Doc()
    const updates: Uint8Array[] = []
    client.on('update', (u: Uint8Array) => updates.push(u))
    for (let i = 0; i < 30; i++) client.getText('text').insert(i, String(i % 10))
    const raw = await openRaw(node.url)
    raw.send(encodeHocuspocusAuth('e/doc', ''))
    raw.send(frameOf('e/doc', encodeSyncStep1(new Uint8Array([0]))))
    for (const u of updates.slice(5)) raw.send(frameOf('e/doc', encodeSyncUpdate(u)))
    raw.send(frameOf('e/doc', encodeSyncStep2(Y.encodeStateAsUpdate(client))))
    await vi.waitFor(() => expect(statuses(raw, 'e/doc')).toEqual(Array(26).fill(true)))
    expect(ofDoc(raw, 'e/doc').filter((r) => r.kind === 'close')).toEqual([])
    expect(await storedText(node.httpUrl, 'e/doc')).toBe(client.getText('text').toString())
    raw.close()
  })

  it('bounds the bytes held for a step 2 by one budget per socket (4529)', async () => {
    // Budget: 2 × max(WS_MAX_BYTES_PER_SECOND, WS_MAX_MESSAGE_BYTES) = 8 KiB for all documents.
    await using node = await startTestNode(
      env(uniquePrefix('hpb-budget'), {
        WS_MAX_MESSAGE_BYTES: '4KiB',
        WS_MAX_BYTES_PER_SECOND: '4KiB',
      }),
    )
    const raw = await openRaw(node.url, ['b/one', 'b/two'])
    const update = () => encodeSyncUpdate(textUpdate('x'.repeat(2500)))
    // 3 × 2.5 KiB held for b/one's step 2: within the budget.
    raw.send(frameOf('b/one', encodeSyncStep1(new Uint8Array([0]))))
    for (let i = 0; i < 3; i++) raw.send(frameOf('b/one', update()))
    // Frames of one socket are handled in order: this answer comes after those were held.
    raw.send(frameOf('b/probe', encodeSyncUpdate(textUpdate('probe'))))
    await vi.waitFor(() => expect(statuses(raw, 'b/probe')).toEqual([false]))
    expect(raw.ws.readyState).toBe(WebSocket.OPEN)
    // 2.5 KiB more for b/two: each document holds less than 8 KiB, the socket more.
    raw.send(frameOf('b/two', encodeSyncStep1(new Uint8Array([0]))))
    raw.send(frameOf('b/two', update()))
    expect(await raw.closed).toEqual({
      code: 4529,
      reason:
        'more than 8192 bytes held for the documents of one socket (2 × max(WS_MAX_BYTES_PER_SECOND, WS_MAX_MESSAGE_BYTES))',
    })
    expect(statuses(raw, 'b/one')).toEqual([])
  })
})
