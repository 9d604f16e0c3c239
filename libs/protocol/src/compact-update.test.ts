import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { compactUpdate } from './compact-update.js'
import { rootsToJSON } from './doc-json.js'
import { mergeAll } from './updates.js'

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so failures reproduce. */
const seededRandom = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const jsonOf = (...updates: Uint8Array[]) => {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  // Every root the updates name, read as the types the editors used.
  doc.getText('text')
  doc.getArray('list')
  doc.getMap('map')
  doc.getXmlFragment('xml')
  const json = { ...rootsToJSON(doc), xml: doc.getXmlFragment('xml').toString() }
  doc.destroy()
  return json
}

/**
 * A random editing session: `writers` documents edit text (typing runs, deletions, formatting),
 * a list, a map (overwrites, nested maps) and an XML fragment, and sync with each other now and
 * then, so edits are concurrent. Returns every update in the order they were made.
 */
const session = (seed: number, writers: number, steps: number): Uint8Array[] => {
  const random = seededRandom(seed)
  const pick = (n: number) => Math.floor(random() * n)
  const docs = Array.from({ length: writers }, (_, i) => {
    const d = new Y.Doc()
    d.clientID = 100 + i
    return d
  })
  const updates: Uint8Array[] = []
  // What each writer sends: its own edits, not what it received from the others.
  for (const d of docs)
    d.on('update', (u: Uint8Array, origin: unknown) => {
      if (origin !== 'remote') updates.push(u)
    })
  for (let step = 0; step < steps; step++) {
    const doc = docs[pick(writers)] as Y.Doc
    const text = doc.getText('text')
    const action = random()
    if (action < 0.45) {
      // A typing run: one update per character, at the end or at a cursor.
      let at = random() < 0.6 ? text.length : pick(text.length + 1)
      for (let i = 0, n = 1 + pick(12); i < n; i++)
        text.insert(at++, 'abcdefgh 😀'[pick(11)] as string)
    } else if (action < 0.6 && text.length > 0) {
      const at = pick(text.length)
      text.delete(at, Math.min(text.length - at, 1 + pick(6)))
    } else if (action < 0.65 && text.length > 0) {
      const at = pick(text.length)
      text.format(at, Math.min(text.length - at, 1 + pick(5)), {
        bold: random() < 0.5 ? true : null,
      })
    } else if (action < 0.75) {
      const list = doc.getArray<unknown>('list')
      if (random() < 0.3 && list.length > 0) list.delete(pick(list.length))
      else list.insert(pick(list.length + 1), [random() < 0.5 ? pick(100) : { n: pick(9) }])
    } else if (action < 0.88) {
      const map = doc.getMap<unknown>('map')
      const key = `k${pick(4)}`
      const roll = random()
      if (roll < 0.2) map.delete(key)
      else if (roll < 0.36) {
        const inner = new Y.Map<unknown>()
        inner.set('x', pick(9))
        map.set(key, inner)
      } else map.set(key, pick(1000))
    } else if (action < 0.93) {
      const xml = doc.getXmlFragment('xml')
      const el = new Y.XmlElement('p')
      el.insert(0, [new Y.XmlText('hi')])
      xml.insert(pick(xml.length + 1), [el])
      if (random() < 0.3 && xml.length > 1) xml.delete(0)
    } else {
      // Sync two writers (both ways): later edits build on each other's.
      const other = docs[pick(writers)] as Y.Doc
      Y.applyUpdate(other, Y.encodeStateAsUpdate(doc, Y.encodeStateVector(other)), 'remote')
      Y.applyUpdate(doc, Y.encodeStateAsUpdate(other, Y.encodeStateVector(doc)), 'remote')
    }
  }
  return updates
}

describe('compactUpdate', () => {
  it('gives the same document as the merge it compacts, applied fresh, on top of a prefix, and as a diff', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const updates = session(seed, 1 + (seed % 3), 150)
      const merged = mergeAll(updates)
      const compact = compactUpdate(merged)
      const expected = jsonOf(merged)
      expect(jsonOf(compact), `seed ${seed}`).toEqual(expected)
      // A client that has some of the updates already, in another order.
      const cut = Math.floor(updates.length / 3)
      const prefix = mergeAll(updates.slice(0, cut).reverse())
      expect(jsonOf(prefix, compact), `seed ${seed} on a prefix`).toEqual(expected)
      expect(jsonOf(compact, prefix), `seed ${seed} before a prefix`).toEqual(expected)
      // The diff a client with that prefix is sent.
      const sv = Y.encodeStateVectorFromUpdate(prefix)
      expect(jsonOf(prefix, Y.diffUpdate(compact, sv)), `seed ${seed} diff`).toEqual(expected)
      // Idempotent, and concurrent edits made against the uncompacted history still apply.
      expect(compactUpdate(compact)).toEqual(compact)
      const late = session(seed + 1000, 2, 40)
      expect(jsonOf(compact, ...late), `seed ${seed} + later`).toEqual(jsonOf(merged, ...late))
    }
  })

  it('is as small as the document for typing, with deletions and concurrent writers', () => {
    for (const [seed, writers] of [
      [7, 1],
      [8, 3],
    ] as const) {
      const updates = session(seed, writers, 3000)
      const merged = mergeAll(updates)
      const doc = new Y.Doc()
      Y.applyUpdate(doc, merged)
      const state = Y.encodeStateAsUpdate(doc)
      const compact = compactUpdate(merged)
      expect(merged.length).toBeGreaterThan(2 * state.length)
      expect(compact.length).toBeLessThanOrEqual(1.2 * state.length)
    }
  })

  it('merges 10 000 one-character edits into one item', () => {
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    const text = doc.getText('text')
    for (let i = 0; i < 10_000; i++) text.insert(i, String.fromCharCode(97 + (i % 26)))
    const compact = compactUpdate(mergeAll(updates))
    expect(Y.decodeUpdate(compact).structs).toHaveLength(1)
    expect(compact.length).toBeLessThanOrEqual(Y.encodeStateAsUpdate(doc).length)
    expect(jsonOf(compact)).toEqual(jsonOf(Y.encodeStateAsUpdate(doc)))
  })

  it('leaves an empty update and a compacted state alone', () => {
    const empty = new Uint8Array([0, 0])
    expect(compactUpdate(empty)).toEqual(empty)
    const doc = new Y.Doc()
    doc.getText('text').insert(0, 'hello')
    doc.getMap('map').set('a', 1)
    const state = Y.encodeStateAsUpdate(doc)
    expect(compactUpdate(state)).toEqual(state)
  })
})
