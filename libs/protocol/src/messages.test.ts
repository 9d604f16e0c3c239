import { appErrorOf } from '@streambed/testing'
import { describe, it, expect, onTestFinished } from 'vitest'
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'
import {
  decodeMessage,
  encodeAwarenessMessage,
  encodePermissionDenied,
  encodeQueryAwareness,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
  keepaliveMessage,
  MessageType,
  SyncStep,
} from './messages.js'

const frame = (write: (encoder: encoding.Encoder) => void): Uint8Array => {
  const encoder = encoding.createEncoder()
  write(encoder)
  return encoding.toUint8Array(encoder)
}

const bytes = (...values: number[]) => new Uint8Array(values)

/** A document with some content, and its full state as an update. */
const sampleDoc = (): Y.Doc => {
  const doc = new Y.Doc()
  doc.getText('t').insert(0, 'hello world')
  doc.getMap('m').set('k', 42)
  return doc
}

const awarenessOf = (doc: Y.Doc): awarenessProtocol.Awareness => {
  const awareness = new awarenessProtocol.Awareness(doc)
  // The Awareness instance runs an interval timer until destroyed.
  onTestFinished(() => awareness.destroy())
  return awareness
}

describe('encoders round-trip through decodeMessage', () => {
  const payload = bytes(1, 2, 3, 0, 255)

  it('sync step 1 carries the state vector', () => {
    expect(decodeMessage(encodeSyncStep1(payload))).toEqual({
      kind: 'sync-step1',
      stateVector: payload,
    })
  })

  it('sync step 2 carries the update', () => {
    expect(decodeMessage(encodeSyncStep2(payload))).toEqual({ kind: 'sync-step2', update: payload })
  })

  it('sync update carries the update', () => {
    expect(decodeMessage(encodeSyncUpdate(payload))).toEqual({
      kind: 'sync-update',
      update: payload,
    })
  })

  it('an empty payload survives', () => {
    expect(decodeMessage(encodeSyncUpdate(new Uint8Array()))).toEqual({
      kind: 'sync-update',
      update: new Uint8Array(),
    })
  })

  it('a payload with a three-byte length survives', () => {
    const big = new Uint8Array(20_000).map((_, i) => i % 251)
    const message = decodeMessage(encodeSyncStep2(big))
    expect(message.kind).toBe('sync-step2')
    // Buffer comparison: element-wise toEqual on 20 kB is needlessly slow.
    expect(message.kind === 'sync-step2' && Buffer.from(message.update).equals(big)).toBe(true)
  })

  it('awareness carries the awareness update', () => {
    expect(decodeMessage(encodeAwarenessMessage(payload))).toEqual({
      kind: 'awareness',
      update: payload,
    })
  })

  it('query-awareness has no payload', () => {
    expect(encodeQueryAwareness()).toEqual(bytes(MessageType.queryAwareness))
    expect(decodeMessage(encodeQueryAwareness())).toEqual({ kind: 'query-awareness' })
  })

  it('permission denied carries the reason, including non-ASCII text', () => {
    const reason = 'no access to “doc/ü” 🚫'
    expect(decodeMessage(encodePermissionDenied(reason))).toEqual({ kind: 'auth', reason })
  })

  it('keepaliveMessage is an awareness message with zero entries', () => {
    expect(decodeMessage(keepaliveMessage)).toEqual({ kind: 'awareness', update: bytes(0) })
  })

  it('uses the y-websocket message type and sync step numbers', () => {
    expect(encodeSyncStep1(bytes(9))).toEqual(bytes(MessageType.sync, SyncStep.step1, 1, 9))
    expect(encodeSyncStep2(bytes(9))).toEqual(bytes(0, 1, 1, 9))
    expect(encodeSyncUpdate(bytes(9))).toEqual(bytes(0, 2, 1, 9))
    expect(encodeAwarenessMessage(bytes(9))).toEqual(bytes(1, 1, 9))
  })
})

describe('decodeMessage rejects malformed frames with BAD_MESSAGE', () => {
  it('an empty frame', () => {
    const err = appErrorOf(() => decodeMessage(new Uint8Array()))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toMatch(/truncated or malformed/)
  })

  it('an unknown message type, naming it', () => {
    const err = appErrorOf(() => decodeMessage(bytes(7, 0)))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('unknown message type 7')
  })

  it('an unknown message type encoded on several bytes', () => {
    const err = appErrorOf(() => decodeMessage(frame((e) => encoding.writeVarUint(e, 300))))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('unknown message type 300')
  })

  it('an unknown sync step, naming it', () => {
    const err = appErrorOf(() => decodeMessage(bytes(MessageType.sync, 3, 1, 9)))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('unknown sync message step 3')
  })

  it.each([
    ['a sync frame without step', bytes(0)],
    ['a sync frame without body length', bytes(0, 2)],
    ['a sync body shorter than its length', bytes(0, 2, 5, 1, 2)],
    ['a sync frame cut inside a multi-byte length', bytes(0, 1, 0x80)],
    ['an awareness frame without payload', bytes(1)],
    ['an awareness payload shorter than its length', bytes(1, 3, 0)],
    ['an auth frame without reason', bytes(2, 0)],
    ['an auth reason shorter than its length', bytes(2, 0, 4, 0x61)],
    ['a message type cut inside its varint', bytes(0x80)],
  ])('%s', (_name, truncated) => {
    const err = appErrorOf(() => decodeMessage(truncated))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('truncated or malformed frame')
    expect(err.cause).toBeInstanceOf(Error)
  })

  it('every strict prefix of a valid frame', () => {
    const full = encodeSyncStep2(new Uint8Array(200).fill(7))
    for (let len = 0; len < full.length; len++) {
      const err = appErrorOf(() => decodeMessage(full.subarray(0, len)))
      expect(err.code, `prefix of ${len} bytes`).toBe('BAD_MESSAGE')
      expect(err.message, `prefix of ${len} bytes`).toBe('truncated or malformed frame')
    }
  })

  it('a truncated frame that is a view into a larger buffer (pooled memory)', () => {
    // The bytes after the view would complete the message: they must not be read.
    const backing = encodeSyncUpdate(bytes(1, 2, 3, 4))
    const view = backing.subarray(0, backing.length - 2)
    const err = appErrorOf(() => decodeMessage(view))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('truncated or malformed frame')
  })

  it.each([
    ['sync', encodeSyncUpdate(bytes(1, 2))],
    ['awareness', encodeAwarenessMessage(bytes(0))],
    ['query-awareness', encodeQueryAwareness()],
    ['auth', encodePermissionDenied('no')],
  ])('trailing bytes after a %s message, counting them', (_name, valid) => {
    const withTrailing = new Uint8Array([...valid, 0, 0, 0])
    const err = appErrorOf(() => decodeMessage(withTrailing))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('3 trailing bytes after the message')
  })

  it('a frame that is a view into a larger buffer decodes only the view', () => {
    const backing = new Uint8Array([9, 9, ...encodeSyncUpdate(bytes(5)), 9, 9])
    const view = backing.subarray(2, backing.length - 2)
    expect(decodeMessage(view)).toEqual({ kind: 'sync-update', update: bytes(5) })
  })
})

describe('compatibility with y-protocols (as used by y-websocket)', () => {
  it('sync step 1 written by y-protocols decodes to the document state vector', () => {
    const doc = sampleDoc()
    const f = frame((e) => {
      encoding.writeVarUint(e, 0)
      syncProtocol.writeSyncStep1(e, doc)
    })
    expect(decodeMessage(f)).toEqual({ kind: 'sync-step1', stateVector: Y.encodeStateVector(doc) })
  })

  it('sync step 2 written by y-protocols decodes to an update that rebuilds the document', () => {
    const doc = sampleDoc()
    const f = frame((e) => {
      encoding.writeVarUint(e, 0)
      syncProtocol.writeSyncStep2(e, doc)
    })
    const message = decodeMessage(f)
    expect(message.kind).toBe('sync-step2')
    if (message.kind !== 'sync-step2') return
    expect(message.update).toEqual(Y.encodeStateAsUpdate(doc))
    const copy = new Y.Doc()
    Y.applyUpdate(copy, message.update)
    expect(copy.getText('t').toString()).toBe('hello world')
    expect(copy.getMap('m').get('k')).toBe(42)
  })

  it('sync step 2 against a state vector carries only the missing part', () => {
    const doc = sampleDoc()
    const sv = Y.encodeStateVector(doc)
    doc.getText('t').insert(0, '>> ')
    const f = frame((e) => {
      encoding.writeVarUint(e, 0)
      syncProtocol.writeSyncStep2(e, doc, sv)
    })
    expect(decodeMessage(f)).toEqual({
      kind: 'sync-step2',
      update: Y.encodeStateAsUpdate(doc, sv),
    })
  })

  it('an update written by y-protocols decodes to the same update', () => {
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (update: Uint8Array) => updates.push(update))
    doc.getText('t').insert(0, 'abc')
    const update = updates[0]!
    const f = frame((e) => {
      encoding.writeVarUint(e, 0)
      syncProtocol.writeUpdate(e, update)
    })
    expect(decodeMessage(f)).toEqual({ kind: 'sync-update', update })
  })

  it('an awareness update encoded by y-protocols decodes to the same update', () => {
    const doc = new Y.Doc()
    const awareness = awarenessOf(doc)
    awareness.setLocalState({ user: { name: 'ada' }, cursor: 3 })
    const update = awarenessProtocol.encodeAwarenessUpdate(awareness, [doc.clientID])
    const f = frame((e) => {
      encoding.writeVarUint(e, 1)
      encoding.writeVarUint8Array(e, update)
    })
    expect(decodeMessage(f)).toEqual({ kind: 'awareness', update })
  })

  it('y-protocols reads our sync frames into a Y.Doc', () => {
    const source = sampleDoc()
    const target = new Y.Doc()
    const reply = encoding.createEncoder()
    const step2 = encodeSyncStep2(Y.encodeStateAsUpdate(source))
    const decoder = decoding.createDecoder(step2)
    expect(decoding.readVarUint(decoder)).toBe(MessageType.sync)
    expect(syncProtocol.readSyncMessage(decoder, reply, target, null)).toBe(
      syncProtocol.messageYjsSyncStep2,
    )
    expect(target.getText('t').toString()).toBe('hello world')
  })

  it('y-protocols answers our sync step 1 with a step 2', () => {
    const doc = sampleDoc()
    const reply = encoding.createEncoder()
    const decoder = decoding.createDecoder(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
    decoding.readVarUint(decoder)
    syncProtocol.readSyncMessage(decoder, reply, doc, null)
    const replyBody = encoding.toUint8Array(reply)
    const answer = decodeMessage(new Uint8Array([MessageType.sync, ...replyBody]))
    expect(answer.kind).toBe('sync-step2')
  })

  it('y-protocols reads our permission-denied frame and its reason', () => {
    const reasons: string[] = []
    const decoder = decoding.createDecoder(encodePermissionDenied('token expired'))
    expect(decoding.readVarUint(decoder)).toBe(MessageType.auth)
    authProtocol.readAuthMessage(decoder, new Y.Doc(), (_doc, reason) => reasons.push(reason))
    expect(reasons).toEqual(['token expired'])
  })

  it('keepaliveMessage is accepted by a real Awareness without changing its states', () => {
    const doc = new Y.Doc()
    const awareness = awarenessOf(doc)
    awareness.setLocalState({ name: 'local' })
    const remoteDoc = new Y.Doc()
    const remote = awarenessOf(remoteDoc)
    remote.setLocalState({ name: 'remote' })
    awarenessProtocol.applyAwarenessUpdate(
      awareness,
      awarenessProtocol.encodeAwarenessUpdate(remote, [remoteDoc.clientID]),
      'peer',
    )
    const before = new Map(awareness.states)
    const events: unknown[] = []
    awareness.on('update', (change: unknown) => events.push(change))
    awareness.on('change', (change: unknown) => events.push(change))

    // Exactly what y-websocket's awareness message handler does with a frame.
    const decoder = decoding.createDecoder(keepaliveMessage)
    expect(decoding.readVarUint(decoder)).toBe(MessageType.awareness)
    awarenessProtocol.applyAwarenessUpdate(awareness, decoding.readVarUint8Array(decoder), 'server')

    expect(decoding.hasContent(decoder)).toBe(false)
    expect(awareness.states).toEqual(before)
    expect(awareness.states.size).toBe(2)
    expect(events).toEqual([])
  })
})
