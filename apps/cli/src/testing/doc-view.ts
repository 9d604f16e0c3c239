/**
 * Test helper (not built): a canonical text of what a Y.Doc holds, to compare documents that were
 * built in different ways (live updates in order, one merged update, a compacted snapshot).
 *
 * It reads every root the document knows (a fresh document applying an update creates a root for
 * every root name the update uses), whatever its type, by Yjs' internal structure: the visible
 * items of a type's list, each element tagged with its content kind and the text attributes in
 * force (so redundant format markers do not count), and the visible entry of every map key.
 * Nested types recurse. The integrated state vector comes along. Equal text = equal content.
 */
import * as Y from 'yjs'

/** Any shared type (Yjs' types are invariant in their event type). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Shared = Y.AbstractType<any>

const json = (value: unknown): unknown =>
  JSON.parse(
    JSON.stringify(value, (_k, v: unknown) =>
      typeof v === 'bigint'
        ? `${v}n`
        : v === undefined
          ? '(undefined)'
          : v instanceof Uint8Array
            ? `(bin ${Buffer.from(v).toString('hex')})`
            : v,
    ) ?? 'null',
  )

const kindOf = (type: Shared): string =>
  type instanceof Y.XmlHook
    ? `hook:${type.hookName}`
    : type instanceof Y.XmlElement
      ? `el:${type.nodeName}`
      : type instanceof Y.XmlText
        ? 'xmltext'
        : type instanceof Y.XmlFragment
          ? 'fragment'
          : type instanceof Y.Text
            ? 'text'
            : type instanceof Y.Map
              ? 'map'
              : type instanceof Y.Array
                ? 'array'
                : 'type'

const elements = (content: Y.Item['content']): unknown[] => {
  if (content instanceof Y.ContentString) return [...content.str].map((c) => ['s', c])
  if (content instanceof Y.ContentAny) return content.arr.map((v) => ['a', json(v)])
  if (content instanceof Y.ContentJSON) return content.arr.map((v) => ['j', json(v)])
  if (content instanceof Y.ContentBinary) return [['b', json(content.content)]]
  if (content instanceof Y.ContentEmbed) return [['e', json(content.embed)]]
  if (content instanceof Y.ContentType) return [['t', dumpType(content.type)]]
  if (content instanceof Y.ContentDoc) return [['d', content.doc?.guid ?? null]]
  if (content instanceof Y.ContentDeleted) return [['deleted', content.len]]
  return [['?', content.constructor.name]]
}

interface TypeDump {
  kind: string
  list: unknown[]
  map: Record<string, unknown>
}

const dumpType = (type: Shared): TypeDump => {
  const list: unknown[] = []
  const attrs = new Map<string, unknown>()
  for (let item = type._start; item !== null; item = item.right) {
    if (item.deleted) continue
    const { content } = item
    if (content instanceof Y.ContentFormat) {
      if (content.value === null) attrs.delete(content.key)
      else attrs.set(content.key, json(content.value))
      continue
    }
    const a =
      attrs.size > 0 ? Object.fromEntries([...attrs].sort(([x], [y]) => (x < y ? -1 : 1))) : null
    for (const e of elements(content)) list.push(a ? [e, a] : e)
  }
  const map: Record<string, unknown> = {}
  for (const key of [...type._map.keys()].sort()) {
    const item = type._map.get(key)
    if (!item || item.deleted) continue
    const all = elements(item.content)
    map[`=${key}`] = all[all.length - 1]
  }
  return { kind: kindOf(type), list, map }
}

/** The canonical text of `doc` as it is (no round trip). */
export const viewOfDoc = (doc: Y.Doc): string => {
  const roots: Record<string, unknown> = {}
  for (const name of [...doc.share.keys()].sort()) {
    const type = doc.share.get(name) as Shared
    const { list, map } = dumpType(type)
    if (list.length > 0 || Object.keys(map).length > 0) roots[`=${name}`] = { list, map }
  }
  const sv = [...Y.decodeStateVector(Y.encodeStateVector(doc))].sort(([a], [b]) => a - b)
  return JSON.stringify({ sv, roots })
}

/**
 * The canonical text of the document `updates` make, applied in order to a fresh Y.Doc (the
 * semantics DESIGN.md invariant 3 names). Throws what applying throws.
 */
export const viewOfUpdates = (updates: readonly Uint8Array[], gc = true): string => {
  const doc = new Y.Doc({ gc })
  try {
    for (const u of updates) Y.applyUpdate(doc, u)
    return viewOfDoc(doc)
  } finally {
    doc.destroy()
  }
}

/** `doc` after a round trip through encodeStateAsUpdate (what it would send a peer). */
export const viewOfEncoded = (doc: Y.Doc): string => viewOfUpdates([Y.encodeStateAsUpdate(doc)])

/** What a worker stores for `parts`: applied in order to a garbage-collected Y.Doc, encoded. */
export const viewOfSnapshot = (parts: readonly Uint8Array[]): string => {
  const doc = new Y.Doc({ gc: true })
  try {
    for (const u of parts) Y.applyUpdate(doc, u)
    return viewOfUpdates([Y.encodeStateAsUpdate(doc)])
  } finally {
    doc.destroy()
  }
}
