import { appErrorOf } from '@streambed/testing'
import { describe, it, expect, onTestFinished } from 'vitest'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as awarenessProtocol from 'y-protocols/awareness'
import {
  type AwarenessEntry,
  decodeAwarenessUpdate,
  encodeAwarenessUpdate,
  removalEntry,
} from './awareness.js'

/** A real y-protocols Awareness whose client id is `clientId`, destroyed after the test. */
const awarenessFor = (clientId: number): awarenessProtocol.Awareness => {
  const doc = new Y.Doc()
  doc.clientID = clientId
  const awareness = new awarenessProtocol.Awareness(doc)
  // The Awareness instance runs an interval timer until destroyed.
  onTestFinished(() => awareness.destroy())
  return awareness
}

/** What a y-websocket client sends for its own state. */
const ownUpdate = (awareness: awarenessProtocol.Awareness): Uint8Array =>
  awarenessProtocol.encodeAwarenessUpdate(awareness, [awareness.clientID])

describe('decodeAwarenessUpdate', () => {
  it('decodes a y-protocols update with several clients, one of them removed', () => {
    const observer = awarenessFor(1)
    const ada = awarenessFor(2)
    const bob = awarenessFor(3)
    observer.setLocalState({ user: 'observer' })
    ada.setLocalState({ user: { name: 'Ada', color: '#f00' }, cursor: { anchor: 4, head: 9 } })
    ada.setLocalState({ user: { name: 'Ada', color: '#f00' }, cursor: { anchor: 5, head: 5 } })
    bob.setLocalState({ user: { name: 'Bøb ✓' } })
    awarenessProtocol.applyAwarenessUpdate(observer, ownUpdate(ada), 'ada')
    awarenessProtocol.applyAwarenessUpdate(observer, ownUpdate(bob), 'bob')
    bob.setLocalState(null)
    awarenessProtocol.applyAwarenessUpdate(observer, ownUpdate(bob), 'bob')
    expect(observer.states.has(3)).toBe(false)

    const update = awarenessProtocol.encodeAwarenessUpdate(observer, [1, 2, 3])
    const entries = decodeAwarenessUpdate(update)

    expect(entries.map((e) => e.clientId)).toEqual([1, 2, 3])
    expect(entries.map((e) => e.clock)).toEqual([
      observer.meta.get(1)!.clock,
      observer.meta.get(2)!.clock,
      observer.meta.get(3)!.clock,
    ])
    // The Awareness constructor sets an initial `{}` state at clock 0; each change adds one.
    expect(entries.map((e) => e.clock)).toEqual([1, 2, 2])
    expect(entries.map((e): unknown => JSON.parse(e.state))).toEqual([
      { user: 'observer' },
      { user: { name: 'Ada', color: '#f00' }, cursor: { anchor: 5, head: 5 } },
      null,
    ])
    expect(entries[2]!.state).toBe('null')
  })

  it('decodes an update with zero entries', () => {
    expect(decodeAwarenessUpdate(new Uint8Array([0]))).toEqual([])
  })

  it('inverts encodeAwarenessUpdate, including multi-byte ids and clocks', () => {
    const entries: AwarenessEntry[] = [
      { clientId: 0, clock: 0, state: '{}' },
      { clientId: 2 ** 31 + 5, clock: 300_000, state: '{"name":"Zoë 🐙","n":[1,2]}' },
      { clientId: 42, clock: 7, state: 'null' },
    ]
    expect(decodeAwarenessUpdate(encodeAwarenessUpdate(entries))).toEqual(entries)
  })

  it('rejects a state that is not JSON, naming the client', () => {
    const update = encodeAwarenessUpdate([
      { clientId: 1, clock: 1, state: '{"ok":true}' },
      { clientId: 77, clock: 1, state: '{name: bob}' },
    ])
    const err = appErrorOf(() => decodeAwarenessUpdate(update))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('awareness state of client 77 is not JSON')
    expect(err.cause).toBeInstanceOf(SyntaxError)
  })

  it('rejects an empty state string (not JSON)', () => {
    const err = appErrorOf(() =>
      decodeAwarenessUpdate(encodeAwarenessUpdate([{ clientId: 5, clock: 1, state: '' }])),
    )
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('awareness state of client 5 is not JSON')
  })

  it('rejects an empty update', () => {
    const err = appErrorOf(() => decodeAwarenessUpdate(new Uint8Array()))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('malformed awareness update')
  })

  it('rejects every truncation of a valid update', () => {
    const full = encodeAwarenessUpdate([
      { clientId: 1000, clock: 200, state: '{"user":"a"}' },
      { clientId: 2, clock: 1, state: 'null' },
    ])
    for (let len = 0; len < full.length; len++) {
      const err = appErrorOf(() => decodeAwarenessUpdate(full.subarray(0, len)))
      expect(err.code, `prefix of ${len} bytes`).toBe('BAD_MESSAGE')
      expect(err.message, `prefix of ${len} bytes`).toBe('malformed awareness update')
    }
  })

  it('rejects a count larger than the entries present', () => {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 2)
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarString(encoder, '{}')
    const err = appErrorOf(() => decodeAwarenessUpdate(encoding.toUint8Array(encoder)))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('malformed awareness update')
  })

  it('rejects trailing bytes', () => {
    const valid = encodeAwarenessUpdate([{ clientId: 1, clock: 1, state: '{}' }])
    const err = appErrorOf(() => decodeAwarenessUpdate(new Uint8Array([...valid, 0])))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('trailing bytes after the awareness update')
  })
})

describe('encodeAwarenessUpdate', () => {
  it('is applied by a real Awareness, yielding the states and clocks', () => {
    const awareness = awarenessFor(1)
    const changes: unknown[] = []
    awareness.on('change', (change: unknown) => changes.push(change))
    awarenessProtocol.applyAwarenessUpdate(
      awareness,
      encodeAwarenessUpdate([
        { clientId: 10, clock: 1, state: JSON.stringify({ user: { name: 'Ada' } }) },
        { clientId: 11, clock: 5, state: '{"cursor":{"anchor":3,"head":4}}' },
        { clientId: 12, clock: 2, state: 'null' },
      ]),
      'server',
    )
    expect(awareness.states.get(10)).toEqual({ user: { name: 'Ada' } })
    expect(awareness.states.get(11)).toEqual({ cursor: { anchor: 3, head: 4 } })
    expect(awareness.states.has(12)).toBe(false)
    expect(awareness.meta.get(11)?.clock).toBe(5)
    expect(changes).toEqual([{ added: [10, 11], updated: [], removed: [] }])
  })

  it('writes zero entries as the single byte 0', () => {
    expect(encodeAwarenessUpdate([])).toEqual(new Uint8Array([0]))
  })
})

describe('removalEntry', () => {
  it('is the next clock with a null state', () => {
    expect(removalEntry(9, 3)).toEqual({ clientId: 9, clock: 4, state: 'null' })
    expect(removalEntry(9, 0)).toEqual({ clientId: 9, clock: 1, state: 'null' })
  })

  it('makes a real Awareness drop the client', () => {
    const awareness = awarenessFor(1)
    awarenessProtocol.applyAwarenessUpdate(
      awareness,
      encodeAwarenessUpdate([
        { clientId: 5, clock: 3, state: '{"user":"gone soon"}' },
        { clientId: 6, clock: 1, state: '{"user":"stays"}' },
      ]),
      'server',
    )
    expect(awareness.states.has(5)).toBe(true)
    const changes: unknown[] = []
    awareness.on('change', (change: unknown) => changes.push(change))

    awarenessProtocol.applyAwarenessUpdate(
      awareness,
      encodeAwarenessUpdate([removalEntry(5, 3)]),
      'server',
    )

    expect(awareness.states.has(5)).toBe(false)
    expect(awareness.states.get(6)).toEqual({ user: 'stays' })
    expect(awareness.meta.get(5)?.clock).toBe(4)
    expect(changes).toEqual([{ added: [], updated: [], removed: [5] }])
  })

  it('is newer than the last state, so that state cannot bring the client back', () => {
    const awareness = awarenessFor(1)
    const lastState = encodeAwarenessUpdate([{ clientId: 5, clock: 3, state: '{"user":"x"}' }])
    awarenessProtocol.applyAwarenessUpdate(awareness, lastState, 'server')
    awarenessProtocol.applyAwarenessUpdate(
      awareness,
      encodeAwarenessUpdate([removalEntry(5, 3)]),
      'server',
    )
    awarenessProtocol.applyAwarenessUpdate(awareness, lastState, 'late relay')
    expect(awareness.states.has(5)).toBe(false)
  })
})
