/**
 * Test helper (not built): random edits of documents shaped like applications make them — a rich
 * text (formatting, embeds, emoji), a map with nested types, an array with nested types, and a
 * Tiptap/ProseMirror-style XmlFragment (headings, paragraphs and lists holding XmlText with marks).
 * Seeded, so a failing case can be replayed.
 */
import * as prng from 'lib0/prng'
import * as Y from 'yjs'

export type Gen = prng.PRNG

export const createGen = (seed: number): Gen => prng.create(seed)

const int = (gen: Gen, min: number, max: number) => prng.int32(gen, min, max)
const pick = <T>(gen: Gen, items: readonly T[]): T => prng.oneOf(gen, items as T[])

const WORDS = ['a', 'bc', 'def', ' ', '\n', 'hé', '😀', 'x y', 'Zz']
const MARKS: Record<string, unknown>[] = [
  {},
  {},
  { bold: true },
  { italic: true },
  { bold: true, italic: true },
  { link: { href: 'https://example.com', target: null } },
  { color: '#f00' },
]
const PM_MARKS: Record<string, unknown>[] = [
  {},
  {},
  { bold: {} },
  { italic: {} },
  { link: { href: 'u' } },
]

const words = (gen: Gen): string => {
  let s = ''
  for (let n = int(gen, 1, 3); n > 0; n--) s += pick(gen, WORDS)
  return s
}

const primitive = (gen: Gen): unknown =>
  pick(gen, [
    () => int(gen, -5, 5),
    () => words(gen),
    () => prng.bool(gen),
    () => null,
    () => ({ n: int(gen, 0, 3), s: pick(gen, ['p', 'q']) }),
    () => [int(gen, 0, 9), 'z'],
    () => new Uint8Array([int(gen, 0, 255), 1]),
  ])()

/** A position inside text of `length` that does not split a surrogate pair. */
const textIndex = (gen: Gen, text: Y.Text): number => {
  const s = text.toString()
  let i = int(gen, 0, text.length)
  // Embeds count one and show as nothing in toString; only strings can split a pair.
  while (i > 0 && i < s.length && /[\udc00-\udfff]/.test(s[i] ?? '')) i--
  return i
}

const editText = (gen: Gen, text: Y.Text, marks = MARKS): void => {
  const op = int(gen, 0, 9)
  if (op <= 4 || text.length === 0) text.insert(textIndex(gen, text), words(gen), pick(gen, marks))
  else if (op <= 6) {
    const at = textIndex(gen, text)
    text.delete(at, Math.min(int(gen, 1, 4), text.length - at))
  } else if (op <= 8) {
    const at = textIndex(gen, text)
    text.format(at, int(gen, 0, 4), pick(gen, marks.slice(2)))
  } else if (marks === MARKS)
    text.insertEmbed(textIndex(gen, text), { image: pick(gen, ['a.png', 'b.png']) })
}

const nestedType = (gen: Gen): Y.AbstractType<never> => {
  const kind = int(gen, 0, 2)
  if (kind === 0) {
    const t = new Y.Text()
    t.insert(0, words(gen), pick(gen, MARKS))
    return t as unknown as Y.AbstractType<never>
  }
  if (kind === 1) {
    const m = new Y.Map<unknown>()
    m.set('v', primitive(gen))
    return m as unknown as Y.AbstractType<never>
  }
  const a = new Y.Array<unknown>()
  a.push([primitive(gen), primitive(gen)])
  return a as unknown as Y.AbstractType<never>
}

/** Edits a nested value if it is a type; true if it did. */
const editNested = (gen: Gen, value: unknown): boolean => {
  if (value instanceof Y.Text) editText(gen, value)
  else if (value instanceof Y.Map) editMap(gen, value as Y.Map<unknown>)
  else if (value instanceof Y.Array) editArray(gen, value as Y.Array<unknown>)
  else return false
  return true
}

const editMap = (gen: Gen, map: Y.Map<unknown>): void => {
  const key = `k${int(gen, 0, 5)}`
  const op = int(gen, 0, 9)
  if (op <= 1 && map.has(key)) map.delete(key)
  else if (op <= 5 && editNested(gen, map.get(key))) return
  else map.set(key, int(gen, 0, 3) === 0 ? nestedType(gen) : primitive(gen))
}

const editArray = (gen: Gen, arr: Y.Array<unknown>): void => {
  const op = int(gen, 0, 9)
  if (op <= 1 && arr.length > 0) {
    const at = int(gen, 0, arr.length - 1)
    arr.delete(at, Math.min(int(gen, 1, 3), arr.length - at))
  } else if (op <= 5 && arr.length > 0 && editNested(gen, arr.get(int(gen, 0, arr.length - 1))))
    return
  else {
    const values = [int(gen, 0, 3) === 0 ? nestedType(gen) : primitive(gen)]
    if (prng.bool(gen)) values.push(primitive(gen))
    arr.insert(int(gen, 0, arr.length), values)
  }
}

const paragraph = (gen: Gen): Y.XmlElement => {
  const kind = int(gen, 0, 5)
  const text = new Y.XmlText()
  text.insert(0, words(gen), pick(gen, PM_MARKS))
  if (kind === 0) {
    const heading = new Y.XmlElement('heading')
    heading.setAttribute('level', String(int(gen, 1, 3)))
    heading.insert(0, [text])
    return heading
  }
  if (kind === 1) {
    const list = new Y.XmlElement('bulletList')
    const item = new Y.XmlElement('listItem')
    const p = new Y.XmlElement('paragraph')
    p.insert(0, [text])
    item.insert(0, [p])
    list.insert(0, [item])
    return list
  }
  const p = new Y.XmlElement('paragraph')
  p.insert(0, [text])
  return p
}

/** Every XmlText below `node`. */
const textsIn = (node: Y.XmlFragment, out: Y.XmlText[] = []): Y.XmlText[] => {
  for (const child of node.toArray()) {
    if (child instanceof Y.XmlText) out.push(child)
    else if (child instanceof Y.XmlElement) textsIn(child, out)
  }
  return out
}

const editProse = (gen: Gen, fragment: Y.XmlFragment): void => {
  const op = int(gen, 0, 9)
  const texts = textsIn(fragment)
  if (op <= 2 || texts.length === 0) fragment.insert(int(gen, 0, fragment.length), [paragraph(gen)])
  else if (op === 3 && fragment.length > 0) fragment.delete(int(gen, 0, fragment.length - 1), 1)
  else if (op === 4) {
    const heading = fragment
      .toArray()
      .find((n) => n instanceof Y.XmlElement && n.nodeName === 'heading')
    if (heading instanceof Y.XmlElement) heading.setAttribute('level', String(int(gen, 1, 3)))
    else fragment.insert(0, [paragraph(gen)])
  } else editText(gen, pick(gen, texts), PM_MARKS)
}

/** One random edit of `doc`, in its own transaction. */
export const randomEdit = (gen: Gen, doc: Y.Doc): void => {
  const root = int(gen, 0, 9)
  doc.transact(() => {
    if (root <= 2) editText(gen, doc.getText('text'))
    else if (root <= 4) editMap(gen, doc.getMap('map'))
    else if (root <= 5) editArray(gen, doc.getArray('list'))
    else if (root <= 8) editProse(gen, doc.getXmlFragment('prose'))
    else {
      // A root some versions have and others not (filled, emptied).
      const extra = doc.getMap('extra')
      if (extra.size > 0 && prng.bool(gen)) extra.clear()
      else extra.set(`e${int(gen, 0, 2)}`, primitive(gen))
    }
  })
}

export const randomEdits = (gen: Gen, doc: Y.Doc, count: number): void => {
  for (let i = 0; i < count; i++) randomEdit(gen, doc)
}
