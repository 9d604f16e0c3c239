import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { snapshot } from './snapshot.js'

const trace = () => {
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  const text = doc.getText('t')
  for (let i = 0; i < 2000; i++) {
    text.insert(text.length, `word${i} `)
    if (i % 2 === 1) text.delete(text.length - 14, 7)
  }
  doc.getMap('m').set('k', { nested: true })
  return { doc, updates }
}

describe('snapshot', () => {
  it('equals the encodeStateAsUpdate of a garbage-collected doc holding the same content', () => {
    const { doc, updates } = trace()
    const half = Math.floor(updates.length / 2)
    const stored = snapshot(null, updates.slice(0, half))
    const result = snapshot(stored, updates.slice(half))
    const check = new Y.Doc()
    Y.applyUpdate(check, result)
    expect(check.getText('t').toString()).toBe(doc.getText('t').toString())
    expect(check.getMap('m').toJSON()).toEqual({ k: { nested: true } })
    expect(result.length).toBe(Y.encodeStateAsUpdate(check).length)
  })

  it('drops deleted content, which merging updates keeps', () => {
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    const text = doc.getText('t')
    for (let i = 0; i < 500; i++) text.insert(text.length, `paragraph ${i} `.repeat(5))
    text.delete(0, text.length - 100)
    const merged = Y.mergeUpdates(updates)
    const snap = snapshot(null, updates)
    expect(merged.length).toBeGreaterThan(30_000)
    expect(snap.length * 20).toBeLessThan(merged.length)
  })

  it('handles an empty input', () => {
    const empty = snapshot(null, [])
    const doc = new Y.Doc()
    Y.applyUpdate(doc, empty)
    expect(doc.getText('t').length).toBe(0)
  })
})
