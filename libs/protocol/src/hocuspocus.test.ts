/**
 * The Hocuspocus codec against the real `@hocuspocus/provider`: what the provider sends decodes
 * here, and what is encoded here the provider reads. The provider runs on a WebSocket stand-in
 * (no network): frames it sends are collected, frames for it are dispatched as message events.
 */
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import {
  HocuspocusType,
  checkHocuspocusClose,
  encodeHocuspocusAuth,
  encodeHocuspocusAuthenticated,
  encodeHocuspocusClose,
  encodeHocuspocusPermissionDenied,
  encodeHocuspocusPrefix,
  encodeHocuspocusStateless,
  encodeHocuspocusSyncStatus,
  prefixMessage,
  readHocuspocusHeader,
  readHocuspocusStateless,
  readHocuspocusToken,
} from './hocuspocus.js'
import {
  decodeMessage,
  encodeAwarenessMessage,
  encodeQueryAwareness,
  encodeSyncStep1,
  encodeSyncStep2,
} from './messages.js'
import { encodeAwarenessUpdate } from './awareness.js'

/** The WebSocket the provider opens: records what it sends, delivers what a test dispatches. */
class StandInSocket extends EventTarget {
  static last: StandInSocket | undefined
  readonly sent: Uint8Array[] = []
  readyState = 0
  binaryType = 'arraybuffer'
  identifier = 0

  constructor(readonly url: string) {
    super()
    StandInSocket.last = this
  }

  open(): void {
    this.readyState = 1
    this.dispatchEvent(new Event('open'))
  }

  send(data: Uint8Array): void {
    this.sent.push(new Uint8Array(data))
  }

  receive(frame: Uint8Array): void {
    this.dispatchEvent(new MessageEvent('message', { data: frame.slice().buffer }))
  }

  close(): void {
    this.readyState = 3
  }
}

// A name with multi-byte characters: the prefix is a varString of UTF-8 bytes.
const NAME = 'team/ünï-✓'
const cleanups: (() => void)[] = []
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup()
})

/** A real provider of NAME on a real provider socket, over a StandInSocket that is open. */
const start = async () => {
  const socket = new HocuspocusProviderWebsocket({
    url: 'ws://stand-in',
    WebSocketPolyfill: StandInSocket,
  })
  await vi.waitFor(() => expect(StandInSocket.last?.url).toBe('ws://stand-in'))
  const ws = StandInSocket.last as StandInSocket
  ws.open()
  const doc = new Y.Doc()
  const events = {
    authenticated: [] as string[],
    denied: [] as string[],
    stateless: [] as string[],
    closes: [] as { code: number; reason: string }[],
  }
  const provider = new HocuspocusProvider({
    websocketProvider: socket,
    name: NAME,
    document: doc,
    token: 'the-token',
    onAuthenticated: ({ scope }) => events.authenticated.push(scope),
    onAuthenticationFailed: ({ reason }) => events.denied.push(reason),
    onStateless: ({ payload }) => events.stateless.push(payload),
    onClose: ({ event }) => events.closes.push({ code: event.code, reason: event.reason }),
  })
  provider.attach()
  cleanups.push(() => {
    provider.destroy()
    socket.destroy()
    doc.destroy()
    StandInSocket.last = undefined
  })
  /** Frames the provider sent, as header + the y-websocket message where there is one. */
  const sent = () => ws.sent.map((frame) => ({ frame, ...readHocuspocusHeader(frame) }))
  const ofType = (type: number) => sent().filter((f) => f.type === type)
  return { ws, doc, provider, events, sent, ofType }
}

const utf8 = new TextEncoder()

describe('frames the provider sends', () => {
  it('auth: the token, byte for byte as encodeHocuspocusAuth', async () => {
    const { ofType } = await start()
    await vi.waitFor(() => expect(ofType(HocuspocusType.auth)).toHaveLength(1))
    const [auth] = ofType(HocuspocusType.auth)
    expect(auth?.doc).toBe(NAME)
    expect(readHocuspocusToken(auth!.frame, auth!.payloadAt)).toBe('the-token')
    expect(auth?.frame).toEqual(encodeHocuspocusAuth(NAME, 'the-token'))
  })

  it('sync step 1 and updates: y-websocket messages after the name', async () => {
    const { doc, ofType } = await start()
    await vi.waitFor(() => expect(ofType(HocuspocusType.sync)).toHaveLength(1))
    const [step1] = ofType(HocuspocusType.sync)
    expect(decodeMessage(step1!.frame.subarray(step1!.messageAt))).toEqual({
      kind: 'sync-step1',
      stateVector: Y.encodeStateVector(doc),
    })
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    doc.getText('text').insert(0, 'edit')
    const [, update] = ofType(HocuspocusType.sync)
    expect(decodeMessage(update!.frame.subarray(update!.messageAt))).toEqual({
      kind: 'sync-update',
      update: updates[0],
    })
  })

  it('awareness: a y-websocket awareness message after the name', async () => {
    const { doc, provider, ofType } = await start()
    await vi.waitFor(() => expect(ofType(HocuspocusType.sync)).toHaveLength(1))
    provider.setAwarenessField('user', { name: 'ü' })
    const frames = ofType(HocuspocusType.awareness)
    const last = frames.at(-1)!
    const message = decodeMessage(last.frame.subarray(last.messageAt))
    expect(message.kind).toBe('awareness')
    const update = message.kind === 'awareness' ? message.update : new Uint8Array()
    const d = decoding.createDecoder(update)
    expect(decoding.readVarUint(d)).toBe(1)
    expect(decoding.readVarUint(d)).toBe(doc.clientID)
    decoding.readVarUint(d)
    expect(JSON.parse(decoding.readVarString(d))).toEqual({ user: { name: 'ü' } })
  })

  it('stateless: the payload as UTF-8 bytes', async () => {
    const { provider, ofType } = await start()
    const payload = JSON.stringify({ comment: 'ünïcödé ✓\nline two' })
    provider.sendStateless(payload)
    const [frame] = ofType(HocuspocusType.stateless)
    expect(frame?.doc).toBe(NAME)
    expect(readHocuspocusStateless(frame!.frame, frame!.payloadAt)).toEqual(utf8.encode(payload))
  })

  it('close: the type alone when the provider detaches', async () => {
    const { provider, ofType } = await start()
    provider.detach()
    const [close] = ofType(HocuspocusType.close)
    expect(close?.doc).toBe(NAME)
    expect(close?.payloadAt).toBe(close?.frame.length)
    expect(() => checkHocuspocusClose(close!.frame, close!.payloadAt)).not.toThrow()
  })
})

describe('frames the provider reads', () => {
  it('authenticated, with the scope', async () => {
    const { ws, provider, events } = await start()
    ws.receive(encodeHocuspocusAuthenticated(NAME, 'readonly'))
    expect(events.authenticated).toEqual(['readonly'])
    expect(provider.authorizedScope).toBe('readonly')
    expect(provider.isAuthenticated).toBe(true)
  })

  it('permission denied, with the reason', async () => {
    const { ws, provider, events } = await start()
    ws.receive(encodeHocuspocusPermissionDenied(NAME, 'token does not grant document "x" ✓'))
    expect(events.denied).toEqual(['token does not grant document "x" ✓'])
    expect(provider.isAuthenticated).toBe(false)
  })

  it('sync step 1 and step 2 after a prefix: answered, applied, synced', async () => {
    const { ws, doc, provider, ofType } = await start()
    await vi.waitFor(() => expect(ofType(HocuspocusType.sync)).toHaveLength(1))
    const server = new Y.Doc()
    server.getText('text').insert(0, 'from the node')
    const prefix = encodeHocuspocusPrefix(NAME)
    ws.receive(prefixMessage(prefix, encodeSyncStep1(Y.encodeStateVector(server))))
    ws.receive(prefixMessage(prefix, encodeSyncStep2(Y.encodeStateAsUpdate(server))))
    expect(doc.getText('text').toString()).toBe('from the node')
    expect(provider.isSynced).toBe(true)
    // Its answer to our step 1: a step 2 of this document.
    const answer = ofType(HocuspocusType.sync).at(-1)!
    expect(decodeMessage(answer.frame.subarray(answer.messageAt)).kind).toBe('sync-step2')
  })

  it('sync status: an applied one counts an unsynced change down, a refused one does not', async () => {
    const { ws, doc, provider } = await start()
    doc.getText('text').insert(0, 'a')
    doc.getText('text').insert(1, 'b')
    expect(provider.unsyncedChanges).toBe(2)
    ws.receive(encodeHocuspocusSyncStatus(NAME, false))
    expect(provider.unsyncedChanges).toBe(2)
    ws.receive(encodeHocuspocusSyncStatus(NAME, true))
    ws.receive(encodeHocuspocusSyncStatus(NAME, true))
    expect(provider.hasUnsyncedChanges).toBe(false)
  })

  it('stateless, decoded as the UTF-8 string', async () => {
    const { ws, events } = await start()
    const payload = 'ünïcödé ✓ 🚀'
    ws.receive(encodeHocuspocusStateless(NAME, utf8.encode(payload)))
    expect(events.stateless).toEqual([payload])
  })

  it('close of the document: a close event with code 1000 and the reason', async () => {
    const { ws, events } = await start()
    ws.receive(encodeHocuspocusClose(NAME, '4405: document deleted'))
    expect(events.closes).toEqual([{ code: 1000, reason: '4405: document deleted' }])
  })

  it('awareness and query awareness after a prefix', async () => {
    const { ws, provider, ofType } = await start()
    const prefix = encodeHocuspocusPrefix(NAME)
    const peer = { clientId: 4242, clock: 1, state: JSON.stringify({ user: { name: 'peer' } }) }
    ws.receive(prefixMessage(prefix, encodeAwarenessMessage(encodeAwarenessUpdate([peer]))))
    expect(provider.awareness?.getStates().get(4242)).toEqual({ user: { name: 'peer' } })
    const before = ofType(HocuspocusType.awareness).length
    ws.receive(prefixMessage(prefix, encodeQueryAwareness()))
    // Answered with every state it knows.
    expect(ofType(HocuspocusType.awareness)).toHaveLength(before + 1)
  })

  it('frames of another document are not this provider’s', async () => {
    const { ws, events } = await start()
    ws.receive(encodeHocuspocusClose('team/other', 'not mine'))
    ws.receive(encodeHocuspocusAuthenticated('team/other', 'read-write'))
    expect(events.closes).toEqual([])
    expect(events.authenticated).toEqual([])
  })
})
