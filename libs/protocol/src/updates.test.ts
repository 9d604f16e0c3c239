import { appErrorOf } from '@streambed/testing'
import { describe, it, expect } from 'vitest'
import * as Y from 'yjs'
import {
  addsNothing,
  createSyncBaseline,
  equalBytes,
  inspectUpdate,
  isEmptyUpdate,
  mergeAll,
  validateUpdate,
} from './updates.js'

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so failures reproduce. */
const seededRandom = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const docWithId = (clientId: number): Y.Doc => {
  const doc = new Y.Doc()
  doc.clientID = clientId
  return doc
}

const recordUpdates = (doc: Y.Doc): Uint8Array[] => {
  const updates: Uint8Array[] = []
  doc.on('update', (update: Uint8Array) => updates.push(update))
  return updates
}

const loaded = (update: Uint8Array, clientId = 99): Y.Doc => {
  const doc = docWithId(clientId)
  Y.applyUpdate(doc, update)
  return doc
}

const content = (doc: Y.Doc) => ({
  t: doc.getText('t').toString(),
  m: doc.getMap('m').toJSON(),
  a: doc.getArray('a').toJSON(),
})

/**
 * Two writers editing one document, with deletions of their own and of each other's content; the
 * updates in the order a stream would hold them.
 */
const history = () => {
  const ada = docWithId(1)
  const bob = docWithId(2)
  const parts: Uint8Array[] = []
  const sync = (from: Y.Doc, to: Y.Doc) =>
    Y.applyUpdate(to, Y.encodeStateAsUpdate(from, Y.encodeStateVector(to)))
  const adaUpdates = recordUpdates(ada)
  const bobUpdates = recordUpdates(bob)
  const collect = () => {
    parts.push(...adaUpdates.splice(0), ...bobUpdates.splice(0))
  }
  ada.getText('t').insert(0, 'hello world')
  ada.getMap('m').set('title', 'draft')
  const nested = new Y.Map<unknown>()
  ada.getMap('m').set('nested', nested)
  nested.set('x', 1)
  nested.set('y', new Y.Text('inner'))
  collect()
  sync(ada, bob)
  bobUpdates.length = 0
  bob.getText('t').insert(5, ', dear')
  bob.getText('t').delete(0, 1) // deletes Ada's content
  bob.getMap('m').set('title', 'final') // overwrites (deletes) Ada's map entry
  bob.getMap('m').delete('nested') // deletes a nested type and its children (garbage collected)
  collect()
  sync(bob, ada)
  adaUpdates.length = 0
  ada.getText('t').delete(3, 2)
  ada.getText('t').delete(6, 3) // deletes Bob's content, a second range
  ada.getArray('a').insert(0, [1, 2, 3, { nested: true }])
  ada.getArray('a').delete(1, 1)
  collect()
  sync(ada, bob)
  bobUpdates.length = 0
  return { ada, bob, parts }
}

describe('validateUpdate', () => {
  it('accepts real Yjs updates', () => {
    const { ada, parts } = history()
    for (const part of parts) expect(() => validateUpdate(part)).not.toThrow()
    expect(() => validateUpdate(Y.encodeStateAsUpdate(ada))).not.toThrow()
    expect(() => validateUpdate(Y.encodeStateAsUpdate(new Y.Doc()))).not.toThrow()
  })

  it('rejects random bytes with BAD_MESSAGE', () => {
    const random = seededRandom(42)
    for (let i = 0; i < 200; i++) {
      const garbage = new Uint8Array(64).map(() => Math.floor(random() * 256))
      const err = appErrorOf(() => validateUpdate(garbage))
      expect(err.code, `sample ${i}`).toBe('BAD_MESSAGE')
      expect(err.message).toBe('payload is not a valid Yjs update')
    }
  })

  it('rejects text that is not an update', () => {
    const err = appErrorOf(() => validateUpdate(new TextEncoder().encode('not a yjs update')))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.cause).toBeInstanceOf(Error)
  })

  it('rejects every truncation of a real update', () => {
    const { ada } = history()
    const full = Y.encodeStateAsUpdate(ada)
    for (let len = 0; len < full.length; len++) {
      const err = appErrorOf(() => validateUpdate(full.subarray(0, len)))
      expect(err.code, `prefix of ${len} bytes`).toBe('BAD_MESSAGE')
    }
  })

  // Y.decodeUpdate stops after the delete set without checking the input is used up.
  it('rejects a real update followed by trailing bytes', () => {
    const { ada } = history()
    const withTrailing = new Uint8Array([...Y.encodeStateAsUpdate(ada), 0xde, 0xad, 0xbe, 0xef])
    const err = appErrorOf(() => validateUpdate(withTrailing))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toBe('payload is not a valid Yjs update: 4 trailing bytes')
  })
})

describe('inspectUpdate', () => {
  const typed = (clientId: number, edits: (doc: Y.Doc) => void) => {
    const doc = docWithId(clientId)
    const updates = recordUpdates(doc)
    edits(doc)
    return updates
  }

  it('gives each client its run of clocks, and whether the update deletes', () => {
    const [insert] = typed(5555, (d) => d.getText('t').insert(0, 'AAAA'))
    expect(inspectUpdate(insert!)).toMatchObject({
      clients: new Map([[5555, [{ from: 0, to: 4 }]]]),
      hasDeletes: false,
    })
    const doc = docWithId(7)
    Y.applyUpdate(doc, insert!)
    const [deletion] = typed(8, () => undefined)
    expect(deletion).toBeUndefined()
    const updates = recordUpdates(doc)
    doc.getText('t').delete(0, 2)
    expect(inspectUpdate(updates[0]!)).toMatchObject({ clients: new Map(), hasDeletes: true })
  })

  it('lists several clients of a merged update, and splits a client at a gap', () => {
    const ada = typed(1, (d) => {
      d.getText('t').insert(0, 'ab')
      d.getText('t').insert(2, 'c')
      d.getText('t').insert(3, 'de')
    })
    const [bob] = typed(2, (d) => d.getMap('m').set('k', 1))
    const merged = Y.mergeUpdates([ada[0]!, ada[2]!, bob!])
    expect(inspectUpdate(merged).clients).toEqual(
      new Map([
        [2, [{ from: 0, to: 1 }]],
        [
          1,
          [
            { from: 0, to: 2 },
            { from: 3, to: 5 },
          ],
        ],
      ]),
    )
  })

  it('rejects an update naming one client in two sections', () => {
    const [evil] = typed(5555, (d) => d.getMap('m').set('k', 'evil'))
    const [text] = typed(5555, (d) => d.getText('t').insert(0, 'AAAA'))
    // [2 clients][section of evil][section of text][empty delete set]
    const twice = new Uint8Array([2, ...evil!.slice(1, -1), ...text!.slice(1, -1), 0])
    expect(appErrorOf(() => inspectUpdate(twice)).message).toMatch(
      /client 5555 appears in two sections/,
    )
    // Two sections that continue each other: Y.applyUpdate would keep only the second.
    const ada = typed(1, (d) => {
      d.getText('t').insert(0, 'a')
      d.getText('t').insert(1, 'b')
    })
    const adjacent = new Uint8Array([2, ...ada[0]!.slice(1, -1), ...ada[1]!.slice(1, -1), 0])
    expect(appErrorOf(() => inspectUpdate(adjacent)).message).toMatch(
      /2 sections declared, 1 found/,
    )
  })

  it.each([
    [
      'an origin after the item',
      '01010600840605017800',
      /item 6:0 names 6:5, not created before it, as its origin/,
    ],
    ['the item itself as origin', '01010600840600017800', /as its origin/],
    ['a right origin after the item', '01010600440605017800', /as its right origin/],
    ['a parent after the item', '0101060004000605017800', /as its parent/],
  ])(
    'rejects an item naming %s of its own client (it never applies alike twice)',
    (_, hex, why) => {
      const update = new Uint8Array(Buffer.from(hex, 'hex'))
      expect(appErrorOf(() => inspectUpdate(update)).message).toMatch(why)
    },
  )

  it('accepts an item whose origin is an earlier clock of its own client', () => {
    const [first, second] = typed(6, (d) => {
      d.getText('t').insert(0, 'a')
      d.getText('t').insert(1, 'b')
    })
    expect(() => inspectUpdate(first!)).not.toThrow()
    expect(inspectUpdate(second!).clients.get(6)).toEqual([{ from: 1, to: 2 }])
  })

  it('rejects what validateUpdate rejects', () => {
    expect(appErrorOf(() => inspectUpdate(new Uint8Array([1, 2, 3]))).code).toBe('BAD_MESSAGE')
  })
})

describe('isEmptyUpdate', () => {
  it('is true for zero bytes and for the empty v1 update', () => {
    expect(isEmptyUpdate(new Uint8Array())).toBe(true)
    expect(isEmptyUpdate(new Uint8Array([0, 0]))).toBe(true)
    expect(isEmptyUpdate(Y.encodeStateAsUpdate(new Y.Doc()))).toBe(true)
    expect(isEmptyUpdate(Y.mergeUpdates([new Uint8Array([0, 0]), new Uint8Array([0, 0])]))).toBe(
      true,
    )
  })

  it('is false for updates with structs or with deletions only', () => {
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'abc')
    expect(isEmptyUpdate(Y.encodeStateAsUpdate(doc))).toBe(false)
    const sv = Y.encodeStateVector(doc)
    doc.getText('t').delete(0, 1)
    const deletionOnly = Y.encodeStateAsUpdate(doc, sv)
    expect(Y.decodeUpdate(deletionOnly).structs).toEqual([])
    expect(isEmptyUpdate(deletionOnly)).toBe(false)
  })

  it('is false for other short byte strings', () => {
    expect(isEmptyUpdate(new Uint8Array([0]))).toBe(false)
    expect(isEmptyUpdate(new Uint8Array([0, 1]))).toBe(false)
    expect(isEmptyUpdate(new Uint8Array([0, 0, 0]))).toBe(false)
  })
})

describe('mergeAll', () => {
  it('equals the state of a Y.Doc that applied all parts', () => {
    const { ada, parts } = history()
    const reference = docWithId(50)
    for (const part of parts) Y.applyUpdate(reference, part)

    const merged = mergeAll([new Uint8Array(), ...parts, new Uint8Array([0, 0])])
    const fromMerged = loaded(merged)

    expect(content(reference)).toEqual({
      t: 'ell deworld',
      m: { title: 'final' },
      a: [1, 3, { nested: true }],
    })
    expect(content(fromMerged)).toEqual(content(reference))
    expect(content(ada)).toEqual(content(reference))
    expect(Y.encodeStateVectorFromUpdate(merged)).toEqual(Y.encodeStateVector(reference))
    // Same structs and the same delete set, not just the same visible content.
    expect(Y.equalSnapshots(Y.snapshot(fromMerged), Y.snapshot(reference))).toBe(true)
  })

  it('gives the empty update for no parts or only empty parts', () => {
    expect(mergeAll([])).toEqual(new Uint8Array([0, 0]))
    expect(mergeAll([new Uint8Array(), new Uint8Array([0, 0])])).toEqual(new Uint8Array([0, 0]))
  })

  it('returns a single non-empty part unchanged', () => {
    const { parts } = history()
    const only = parts[0]!
    expect(mergeAll([new Uint8Array([0, 0]), only, new Uint8Array()])).toBe(only)
  })
})

describe('equalBytes', () => {
  it('compares contents, also of views into larger buffers', () => {
    const backing = new Uint8Array([9, 1, 2, 3, 9])
    expect(equalBytes(backing.subarray(1, 4), new Uint8Array([1, 2, 3]))).toBe(true)
    expect(equalBytes(backing.subarray(1, 4), new Uint8Array([1, 2, 4]))).toBe(false)
    expect(equalBytes(backing.subarray(1, 4), new Uint8Array([1, 2]))).toBe(false)
  })
})

describe('createSyncBaseline + addsNothing', () => {
  const setup = () => {
    const h = history()
    const merged = mergeAll(h.parts)
    return { ...h, merged, baseline: createSyncBaseline(merged) }
  }

  it('the baseline holds the state vector and the delete set, but no structs', () => {
    const { ada, merged, baseline } = setup()
    expect(baseline.stateVector).toEqual(Y.encodeStateVector(ada))
    const decoded = Y.decodeUpdate(baseline.deletions)
    expect(decoded.structs).toEqual([])
    expect(decoded.ds.clients.size).toBeGreaterThan(0)
    expect(baseline.deletions.length).toBeLessThan(merged.length)
  })

  it('a client whose state equals the document (including deletions) adds nothing', () => {
    const { ada, bob, merged, baseline } = setup()
    expect(addsNothing(Y.encodeStateAsUpdate(ada), baseline)).toBe(true)
    expect(addsNothing(Y.encodeStateAsUpdate(bob), baseline)).toBe(true)
    expect(addsNothing(Y.encodeStateAsUpdate(loaded(merged)), baseline)).toBe(true)
    expect(addsNothing(merged, baseline)).toBe(true)
  })

  it('a client that received the parts one by one (with garbage collection) adds nothing', () => {
    const { parts, baseline } = setup()
    const client = docWithId(77)
    for (const part of parts) Y.applyUpdate(client, part)
    expect(addsNothing(Y.encodeStateAsUpdate(client), baseline)).toBe(true)
  })

  it('a client with a subset of the document adds nothing', () => {
    const { parts, baseline } = setup()
    for (let n = 1; n < parts.length; n++) {
      const client = loaded(Y.mergeUpdates(parts.slice(0, n)))
      expect(addsNothing(Y.encodeStateAsUpdate(client), baseline), `first ${n} parts`).toBe(true)
    }
  })

  it('empty updates add nothing', () => {
    const { baseline } = setup()
    expect(addsNothing(new Uint8Array(), baseline)).toBe(true)
    expect(addsNothing(new Uint8Array([0, 0]), baseline)).toBe(true)
    expect(addsNothing(Y.encodeStateAsUpdate(new Y.Doc()), baseline)).toBe(true)
  })

  it('a client with one extra insert adds something', () => {
    const { merged, baseline } = setup()
    const client = loaded(merged)
    client.getText('t').insert(0, '!')
    expect(addsNothing(Y.encodeStateAsUpdate(client), baseline)).toBe(false)
  })

  it('a client with an extra deletion only (no new structs) adds something', () => {
    const { merged, baseline } = setup()
    const client = loaded(merged)
    client.getText('t').delete(2, 1)
    const state = Y.encodeStateAsUpdate(client)
    // Deleting text creates no struct: the state vector is unchanged.
    expect(Y.encodeStateVectorFromUpdate(state)).toEqual(baseline.stateVector)
    expect(addsNothing(state, baseline)).toBe(false)
  })

  it('a deletion the document already has adds nothing when sent again', () => {
    const { merged, baseline } = setup()
    const client = loaded(merged)
    const before = Y.encodeStateVector(client)
    client.getText('t').delete(0, 2)
    const deletion = Y.encodeStateAsUpdate(client, before)
    expect(addsNothing(deletion, baseline)).toBe(false)
    const after = createSyncBaseline(mergeAll([merged, deletion]))
    expect(addsNothing(deletion, after)).toBe(true)
    expect(addsNothing(Y.encodeStateAsUpdate(client), after)).toBe(true)
  })

  it('a client with items from an unknown client adds something', () => {
    const { baseline } = setup()
    const stranger = docWithId(12345)
    stranger.getText('t').insert(0, 'x')
    expect(addsNothing(Y.encodeStateAsUpdate(stranger), baseline)).toBe(false)
  })

  it('a client that knows the document and has items from an unknown client adds something', () => {
    const { merged, baseline } = setup()
    const client = loaded(merged, 12345)
    client.getMap('m').set('other', 1)
    expect(addsNothing(Y.encodeStateAsUpdate(client), baseline)).toBe(false)
  })

  it('a baseline of the empty document: anything real adds something', () => {
    const baseline = createSyncBaseline(new Uint8Array([0, 0]))
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'a')
    expect(addsNothing(Y.encodeStateAsUpdate(doc), baseline)).toBe(false)
    expect(addsNothing(new Uint8Array([0, 0]), baseline)).toBe(true)
  })
})
