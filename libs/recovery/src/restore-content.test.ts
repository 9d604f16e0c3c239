import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { docToJSON } from '@streambed/protocol'
import { restoreUpdate } from './restore-content.js'
import { createGen, randomEdits } from './testing/random-docs.js'

const stateOf = (doc: Y.Doc) => Y.encodeStateAsUpdate(doc)
const replicaOf = (state: Uint8Array): Y.Doc => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, state)
  return doc
}
const jsonOf = (doc: Y.Doc) => docToJSON(stateOf(doc))

/** Applies `restore` to a replica of `current` and checks it shows `target`. */
const expectRestores = (current: Uint8Array, target: Uint8Array): Uint8Array | null => {
  const update = restoreUpdate(current, target)
  const replica = replicaOf(current)
  if (update) Y.applyUpdate(replica, update)
  expect(jsonOf(replica)).toEqual(docToJSON(target))
  // Nothing pending: the update needs only what `current` has.
  expect(replica.store.pendingStructs).toBeNull()
  expect(replica.store.pendingDs).toBeNull()
  return update
}

describe('restoreUpdate', () => {
  it('is null when the documents show the same content', () => {
    const a = new Y.Doc()
    a.getText('t').insert(0, 'same')
    const b = new Y.Doc()
    b.getText('t').insert(0, 'sa')
    b.getText('t').insert(2, 'xme')
    b.getText('t').delete(2, 1)
    b.getMap('gone').set('k', 1)
    b.getMap('gone').delete('k')
    expect(restoreUpdate(stateOf(a), stateOf(b))).toBeNull()
    expect(restoreUpdate(stateOf(a), stateOf(a))).toBeNull()
  })

  it('inserts into text without deleting the common prefix and suffix', () => {
    const doc = new Y.Doc()
    const text = doc.getText('t')
    text.insert(0, 'hello world')
    const target = stateOf(doc)
    text.delete(5, 6)
    text.insert(5, ' there', { bold: true })
    const update = expectRestores(stateOf(doc), target)!
    // "hello" (clocks 0-4 of the writer) stays; " there" and its formatting markers go.
    const { ds } = Y.decodeUpdate(update)
    const deleted = ds.clients.get(doc.clientID) ?? []
    expect(deleted.length).toBeGreaterThan(0)
    for (const d of deleted) expect(d.clock).toBeGreaterThanOrEqual(5)
    expect([...ds.clients.keys()]).toEqual([doc.clientID])
  })

  it('restores formatting, embeds, emoji and a trailing newline', () => {
    const doc = new Y.Doc()
    const text = doc.getText('t')
    text.insert(0, 'a😀b\n', {})
    text.format(0, 1, { bold: true, link: { href: 'x' } })
    text.insertEmbed(2, { image: 'i.png' }, { width: 4 })
    const target = stateOf(doc)
    text.format(0, 6, { bold: null, link: null, italic: true })
    text.delete(1, 2)
    text.insert(0, '😀', {})
    expectRestores(stateOf(doc), target)
  })

  it('keeps equal map keys and syncs nested types in place', () => {
    const doc = new Y.Doc()
    const map = doc.getMap<unknown>('m')
    const body = new Y.Text()
    map.set('body', body)
    map.set('same', { deep: [1, 2] })
    map.set('changed', 1)
    body.insert(0, 'long text here')
    const target = stateOf(doc)
    map.set('changed', 2)
    map.set('added', true)
    body.insert(4, '!')
    const current = stateOf(doc)
    const update = expectRestores(current, target)!
    // A cursor in the nested text after the change stays where it was.
    const replica = replicaOf(current)
    const cursor = Y.createRelativePositionFromTypeIndex(
      replica.getMap('m').get('body') as Y.Text,
      10,
    )
    Y.applyUpdate(replica, update)
    expect(Y.createAbsolutePositionFromRelativePosition(cursor, replica)?.index).toBe(9)
    const before = replicaOf(current)
    const sameBefore = before.getMap('m')._map.get('same')!.id
    Y.applyUpdate(before, update)
    expect(before.getMap('m')._map.get('same')!.id).toEqual(sameBefore)
  })

  it('keeps the cursors of unchanged paragraphs in a Tiptap document', () => {
    const doc = new Y.Doc()
    const prose = doc.getXmlFragment('prose')
    const para = (s: string) => {
      const p = new Y.XmlElement('paragraph')
      p.insert(0, [new Y.XmlText(s)])
      return p
    }
    prose.insert(0, [para('first'), para('second'), para('third')])
    const target = stateOf(doc)
    ;((prose.get(1) as Y.XmlElement).get(0) as Y.XmlText).insert(6, ' edited', { bold: {} })
    prose.delete(2, 1)
    const current = stateOf(doc)
    const replica = replicaOf(current)
    const firstText = (replica.getXmlFragment('prose').get(0) as Y.XmlElement).get(0) as Y.XmlText
    const cursor = Y.createRelativePositionFromTypeIndex(firstText, 3)
    const update = restoreUpdate(current, target)!
    Y.applyUpdate(replica, update)
    expect(jsonOf(replica)).toEqual(docToJSON(target))
    const at = Y.createAbsolutePositionFromRelativePosition(cursor, replica)
    expect(at?.type).toBe((replica.getXmlFragment('prose').get(0) as Y.XmlElement).get(0))
    expect(at?.index).toBe(3)
  })

  it('empties roots only the current document has and fills roots only the target has', () => {
    const before = new Y.Doc()
    before.getArray('old').push([1, 2])
    before.getXmlFragment('x').insert(0, [new Y.XmlText('t')])
    const after = new Y.Doc()
    after.getMap('new').set('k', new Y.Array())
    after.getText('t').insert(0, 'x')
    expectRestores(stateOf(before), stateOf(after))
    expectRestores(stateOf(after), stateOf(before))
  })

  it('copies what clone() would not: types in text, XML text attributes, hooks, subdocuments', () => {
    const doc = new Y.Doc()
    const text = doc.getText('t')
    const inText = new Y.Map<unknown>()
    text.insert(0, 'ab', {})
    text.insertEmbed(1, inText, { kind: 'card' })
    inText.set('title', 'card')
    const xmlText = new Y.XmlText('x')
    xmlText.setAttribute('dir', 'rtl')
    const hook = new Y.XmlHook('widget')
    hook.set('cfg', { a: 1 })
    doc.getXmlFragment('x').insert(0, [xmlText, hook as unknown as Y.XmlElement])
    doc.getMap('m').set('sub', new Y.Doc({ guid: 'sub-1' }))
    const target = stateOf(doc)
    text.delete(0, 3)
    doc.getXmlFragment('x').delete(0, 2)
    doc.getMap('m').delete('sub')
    const restored = replicaOf(stateOf(doc))
    Y.applyUpdate(restored, restoreUpdate(stateOf(doc), target)!)
    expect(jsonOf(restored)).toEqual(docToJSON(target))
    expect(jsonOf(restored)).toEqual({
      m: { sub: { $doc: 'sub-1' } },
      t: [
        { insert: 'a' },
        { insert: { title: 'card' }, attributes: { kind: 'card' } },
        { insert: 'b' },
      ],
      x: [
        { text: 'x', attributes: { dir: 'rtl' } },
        { hookName: 'widget', entries: { cfg: { a: 1 } } },
      ],
    })
  })

  it('replaces content of another kind under one root name', () => {
    const a = new Y.Doc()
    a.getText('r').insert(0, 'text')
    const b = new Y.Doc()
    b.getMap('r').set('k', 'v')
    expectRestores(stateOf(a), stateOf(b))
    expectRestores(stateOf(b), stateOf(a))
  })

  it('uses a client id neither document has', () => {
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'x')
    const target = stateOf(doc)
    doc.getText('t').insert(0, 'y')
    const update = restoreUpdate(stateOf(doc), target)!
    const clients = new Set(Y.decodeUpdate(update).structs.map((s) => s.id.client))
    expect(clients.size).toBeLessThanOrEqual(1)
    expect(clients.has(doc.clientID)).toBe(false)
  })

  // Property: for random documents shaped like applications make them, an older version (and an
  // unrelated document) is restored exactly; replicas converge; live concurrent edits are kept.
  it.each(Array.from({ length: 60 }, (_, seed) => seed))(
    'restores random document, seed %i',
    (seed) => {
      const gen = createGen(seed)
      const doc = new Y.Doc()
      randomEdits(gen, doc, 5 + (seed % 30))
      const target = stateOf(doc)
      randomEdits(gen, doc, 5 + ((seed * 7) % 40))
      const current = stateOf(doc)
      const update = expectRestores(current, target)

      // The writer's own live document (roots opened by the application) converges too.
      if (update) Y.applyUpdate(doc, update)
      expect(jsonOf(doc)).toEqual(docToJSON(target))
      expect(restoreUpdate(stateOf(doc), target)).toBeNull()

      // A live client edits concurrently: both orders converge and keep its edit.
      const live = replicaOf(current)
      const edits: Uint8Array[] = []
      live.on('update', (u: Uint8Array) => edits.push(u))
      live.transact(() => {
        live.getMap('map').set('live', 'kept')
        live.getText('text').insert(live.getText('text').length, 'LIVE', {})
        const p = new Y.XmlElement('paragraph')
        p.insert(0, [new Y.XmlText('live para')])
        live.getXmlFragment('prose').push([p])
      })
      const other = replicaOf(current)
      if (update) Y.applyUpdate(other, update)
      for (const e of edits) Y.applyUpdate(other, e)
      if (update) Y.applyUpdate(live, update)
      const merged = jsonOf(live)
      expect(jsonOf(other)).toEqual(merged)
      expect((merged.map as Record<string, unknown>).live).toBe('kept')
      expect(JSON.stringify(merged.text)).toContain('LIVE')
      expect(JSON.stringify(merged.prose)).toContain('live para')

      // An unrelated document as the target.
      const stranger = new Y.Doc()
      randomEdits(createGen(seed + 1000), stranger, 10)
      expectRestores(current, stateOf(stranger))
    },
  )
})
