import * as Y from 'yjs'
import { describe, expect, it } from 'vitest'
import { contentKey, docToJSON, inferRootKind, type Shared } from './doc-json.js'

const stateOf = (edit: (doc: Y.Doc) => void, gc = true): Uint8Array => {
  const doc = new Y.Doc({ gc })
  edit(doc)
  return Y.encodeStateAsUpdate(doc)
}

/** The bare roots of a decoded state (what a reader that does not know the schema sees). */
const bareRoots = (state: Uint8Array, gc = true): Map<string, Shared> => {
  const doc = new Y.Doc({ gc })
  Y.applyUpdate(doc, state)
  return doc.share as Map<string, Shared>
}

describe('inferRootKind', () => {
  it('tells each kind from its content when the root is bare', () => {
    const state = stateOf((d) => {
      d.getText('plain').insert(0, 'hi')
      d.getText('only-embed').insertEmbed(0, { image: 'x' })
      d.getMap('m').set('k', 1)
      d.getArray('a').push(['s', 2])
      d.getArray('types').push([new Y.Map()])
      const p = new Y.XmlElement('paragraph')
      p.insert(0, [new Y.XmlText('x')])
      d.getXmlFragment('x').insert(0, [p])
      d.getXmlFragment('x-text').insert(0, [new Y.XmlText('y')])
    })
    const roots = bareRoots(state)
    for (const t of roots.values()) expect(t.constructor).toBe(Y.AbstractType)
    const kinds = Object.fromEntries([...roots].map(([n, t]) => [n, inferRootKind(t)]))
    expect(kinds).toEqual({
      plain: 'text',
      'only-embed': 'text',
      m: 'map',
      a: 'array',
      types: 'array',
      x: 'xml',
      'x-text': 'xml',
    })
  })

  it('takes the class of a root the application opened', () => {
    const doc = new Y.Doc()
    expect(inferRootKind(doc.getText('t') as Shared)).toBe('text')
    expect(inferRootKind(doc.getMap('m') as Shared)).toBe('map')
    expect(inferRootKind(doc.getArray('a') as Shared)).toBe('array')
    expect(inferRootKind(doc.getXmlFragment('x') as Shared)).toBe('xml')
  })

  it('is empty when only collected deletions remain, text when their class survived', () => {
    const edit = (d: Y.Doc) => {
      d.getText('t').insert(0, 'gone')
      d.getText('t').delete(0, 4)
    }
    expect(inferRootKind(bareRoots(stateOf(edit)).get('t')!)).toBe('empty')
    expect(inferRootKind(bareRoots(stateOf(edit, false), false).get('t')!)).toBe('text')
    const emptiedMap = stateOf((d) => {
      d.getMap('m').set('k', 1)
      d.getMap('m').delete('k')
    })
    expect(inferRootKind(bareRoots(emptiedMap).get('m')!)).toBe('map')
  })
})

describe('docToJSON', () => {
  it('writes plain text as a string, formatted text and embeds as a delta', () => {
    const json = docToJSON(
      stateOf((d) => {
        d.getText('plain').insert(0, 'hello\n')
        const rich = d.getText('rich')
        rich.insert(0, 'ab', { italic: true, bold: true })
        rich.insert(2, 'cd', {})
        rich.insertEmbed(4, { image: 'p.png', alt: 'x' }, { width: 3 })
      }),
    )
    expect(json).toEqual({
      plain: 'hello\n',
      rich: [
        { insert: 'ab', attributes: { bold: true, italic: true } },
        { insert: 'cd' },
        { insert: { alt: 'x', image: 'p.png' }, attributes: { width: 3 } },
      ],
    })
    expect(JSON.stringify(json.rich)).toContain('{"bold":true,"italic":true}')
  })

  it('writes maps with sorted keys, so insertion order does not show', () => {
    const a = stateOf((d) => {
      const m = d.getMap('m')
      m.set('z', { b: 1, a: 2 })
      m.set('a', 1)
    })
    const b = stateOf((d) => {
      const m = d.getMap('m')
      m.set('a', 1)
      m.set('z', { a: 2, b: 1 })
    })
    expect(JSON.stringify(docToJSON(a))).toBe(JSON.stringify(docToJSON(b)))
    expect(JSON.stringify(docToJSON(a))).toBe('{"m":{"a":1,"z":{"a":2,"b":1}}}')
  })

  it('writes nested types and values JSON cannot hold', () => {
    const json = docToJSON(
      stateOf((d) => {
        const inner = new Y.Text()
        inner.insert(0, 'in')
        const sub = new Y.Map<unknown>()
        sub.set('bytes', new Uint8Array([1, 2, 3]))
        sub.set('nothing', undefined)
        sub.set('big', 12n)
        d.getArray('a').push([inner, sub, new Y.Array(), new Y.Doc({ guid: 'g-1' })])
      }),
    )
    expect(json).toEqual({
      a: [
        'in',
        { big: { $bigint: '12' }, bytes: { $bytes: 'AQID' }, nothing: null },
        [],
        { $doc: 'g-1' },
      ],
    })
  })

  it('writes a ProseMirror-style fragment as nodes with attributes and marked text', () => {
    const json = docToJSON(
      stateOf((d) => {
        const heading = new Y.XmlElement('heading')
        heading.setAttribute('level', '2')
        heading.insert(0, [new Y.XmlText('Title')])
        const text = new Y.XmlText()
        text.insert(0, 'plain ')
        text.insert(6, 'bold', { bold: {} })
        const p = new Y.XmlElement('paragraph')
        p.insert(0, [text])
        const hook = new Y.XmlHook('widget')
        hook.set('id', 7)
        d.getXmlFragment('prose').insert(0, [
          heading,
          p,
          new Y.XmlElement('horizontalRule'),
          hook as unknown as Y.XmlElement,
        ])
      }),
    )
    expect(json).toEqual({
      prose: [
        { nodeName: 'heading', attributes: { level: '2' }, children: ['Title'] },
        {
          nodeName: 'paragraph',
          children: [[{ insert: 'plain ' }, { insert: 'bold', attributes: { bold: {} } }]],
        },
        { nodeName: 'horizontalRule' },
        { hookName: 'widget', entries: { id: 7 } },
      ],
    })
  })

  it('leaves out roots that show nothing', () => {
    const json = docToJSON(
      stateOf((d) => {
        d.getText('t').insert(0, 'x')
        d.getText('t').delete(0, 1)
        d.getMap('m').set('k', 1)
        d.getMap('m').delete('k')
        d.getArray('a').push([1])
        d.getArray('a').delete(0)
        d.getText('kept').insert(0, 'y')
      }),
    )
    expect(json).toEqual({ kept: 'y' })
    expect(docToJSON(new Uint8Array([0, 0]))).toEqual({})
  })

  it('gives one JSON for one content however the document was built', () => {
    const live = new Y.Doc()
    const text = live.getText('t')
    text.insert(0, 'abc')
    text.format(1, 1, { bold: true })
    text.format(1, 1, { bold: null })
    text.insert(3, 'd')
    const fresh = stateOf((d) => d.getText('t').insert(0, 'abcd'))
    expect(docToJSON(Y.encodeStateAsUpdate(live))).toEqual(docToJSON(fresh))
    expect(docToJSON(fresh)).toEqual({ t: 'abcd' })
  })
})

describe('contentKey', () => {
  it('tells apart what plain JSON conflates', () => {
    const doc = new Y.Doc()
    const arr = doc.getArray<unknown>('a')
    const inner = new Y.Text()
    arr.push([inner, 'x'])
    inner.insert(0, 'x')
    const [t, s] = arr.toArray()
    expect(contentKey(t)).not.toBe(contentKey(s))
    expect(contentKey(undefined)).not.toBe(contentKey(null))
    expect(contentKey({ b: 1, a: [2] })).toBe(contentKey({ a: [2], b: 1 }))
  })
})
