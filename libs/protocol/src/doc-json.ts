/**
 * A Yjs document as JSON without knowing the application's schema.
 *
 * A document decoded from an update does not know the kinds of its root types: the application
 * decides them with `getText` / `getMap` / ... and the encoding names only the root's name. Each
 * root arrives as a bare `AbstractType` whose list (`_start`, linked items) and map (`_map`, the
 * newest item per key) hold the content. The kind is inferred from the content classes:
 *
 *   ContentString, ContentFormat, ContentEmbed in the list   Y.Text (only text holds them)
 *   only nested XmlElement / XmlText / XmlHook in the list    Y.XmlFragment
 *   any other content in the list (ContentAny, JSON, ...)     Y.Array
 *   only map entries                                          Y.Map
 *   nothing visible that names a kind                         empty (deleted items lost it)
 *
 * The root is then turned into that class (`doc.get(name, Class)` converts a bare root in place)
 * and read with the class's API. Nested types know their class: their content carries a type ref.
 *
 * JSON forms (object keys sorted, so equal content gives equal text):
 *   Y.Text        a string, or a delta `[{ insert, attributes? }]` when formatted or with embeds
 *   Y.Map         an object;  Y.Array  an array
 *   Y.XmlFragment an array of nodes: an element is `{ nodeName, attributes?, children? }`, a text
 *                 node is a string or delta (`{ text, attributes }` when it has attributes), a hook
 *                 `{ hookName, entries }`
 *   values Yjs can hold that JSON cannot: bytes `{ $bytes: base64 }`, bigint `{ $bigint }`,
 *   undefined `null`, a subdocument `{ $doc: guid }`.
 * Roots with no visible content are left out: an emptied root and a never-used one read the same.
 */
import * as Y from 'yjs'

/** Any shared type (Yjs' types are invariant in their event type). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Shared = Y.AbstractType<any>

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** The kind of a root type: what the application opens it with. */
export type RootKind = 'text' | 'map' | 'array' | 'xml' | 'empty'

const isXmlNode = (t: Shared): boolean =>
  t instanceof Y.XmlElement || t instanceof Y.XmlText || t instanceof Y.XmlHook

/**
 * The kind of a root type: from its class when the application opened it, else inferred from its
 * content (see the module comment). Deleted content counts when its class survived (documents
 * without garbage collection), so an emptied text still reads as text there.
 */
export const inferRootKind = (type: Shared): RootKind => {
  if (type instanceof Y.Text) return 'text'
  if (type instanceof Y.XmlFragment) return 'xml'
  if (type instanceof Y.Map) return 'map'
  if (type instanceof Y.Array) return 'array'
  let xml = false
  let other = false
  for (let item = type._start; item !== null; item = item.right) {
    const { content } = item
    if (
      content instanceof Y.ContentString ||
      content instanceof Y.ContentFormat ||
      content instanceof Y.ContentEmbed
    )
      return 'text'
    if (item.deleted || content instanceof Y.ContentDeleted) continue
    if (content instanceof Y.ContentType && isXmlNode(content.type)) xml = true
    else other = true
  }
  if (other) return 'array'
  if (xml) return 'xml'
  return type._map.size > 0 ? 'map' : 'empty'
}

const classOf = {
  text: Y.Text,
  map: Y.Map,
  array: Y.Array,
  xml: Y.XmlFragment,
} as const

/**
 * The root `name` of `doc` as a `kind` type, converting a bare root in place. Only for documents
 * this module created: Yjs refuses to open one root as two classes.
 */
export const typedRoot = (doc: Y.Doc, name: string, kind: Exclude<RootKind, 'empty'>): Shared =>
  doc.get(name, classOf[kind]) as Shared

/** Whether a root shows nothing (formatting markers alone show nothing). */
const isEmptyRoot = (type: Shared): boolean =>
  type instanceof Y.Map
    ? type.size === 0
    : type instanceof Y.Text || type instanceof Y.XmlFragment || type instanceof Y.Array
      ? type.length === 0
      : true

/** The document's roots by name (ascending) with their kinds, opened as those kinds. */
export const openRoots = (doc: Y.Doc): Map<string, { kind: RootKind; type: Shared }> => {
  const roots = new Map<string, { kind: RootKind; type: Shared }>()
  for (const name of [...doc.share.keys()].sort()) {
    const bare = doc.share.get(name) as Shared
    const kind = inferRootKind(bare)
    roots.set(name, { kind, type: kind === 'empty' ? bare : typedRoot(doc, name, kind) })
  }
  return roots
}

/** Object keys sorted, values converted. */
const sortedObject = (entries: Iterable<[string, unknown]>, tagged: boolean): Json => {
  const out: Record<string, Json> = {}
  for (const [k, v] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    out[k] = valueJSON(v, tagged)
  return out
}

export interface DeltaOp {
  insert: unknown
  attributes?: Record<string, unknown>
}

/**
 * The text's delta with neighbouring strings of equal formatting joined: `toDelta` splits at every
 * formatting marker, also at one that changes nothing, so equal texts could read differently.
 */
export const textDelta = (text: Y.Text): DeltaOp[] => {
  const delta: DeltaOp[] = []
  let lastKey = ''
  for (const op of text.toDelta() as DeltaOp[]) {
    const key = op.attributes === undefined ? '' : contentKey(op.attributes)
    const last = delta[delta.length - 1]
    if (typeof op.insert === 'string' && typeof last?.insert === 'string' && key === lastKey)
      delta[delta.length - 1] = { ...last, insert: last.insert + op.insert }
    else delta.push(op)
    lastKey = key
  }
  return delta
}

const textJSON = (text: Y.Text, tagged: boolean): Json => {
  const delta = textDelta(text)
  const plain = delta.every((op) => typeof op.insert === 'string' && op.attributes === undefined)
  if (plain) return delta.map((op) => op.insert as string).join('')
  return delta.map((op) => {
    const out: Record<string, Json> = {
      insert: typeof op.insert === 'string' ? op.insert : valueJSON(op.insert, tagged),
    }
    if (op.attributes !== undefined)
      out.attributes = sortedObject(Object.entries(op.attributes), tagged)
    return out
  })
}

const attributesOf = (type: Y.XmlElement | Y.XmlText): [string, unknown][] =>
  Object.entries(type.getAttributes())

const typeJSON = (type: Shared, tagged: boolean): Json => {
  if (type instanceof Y.XmlHook) {
    const entries: [string, unknown][] = []
    type.forEach((v: unknown, k: string) => entries.push([k, v]))
    return { hookName: type.hookName, entries: sortedObject(entries, tagged) }
  }
  if (type instanceof Y.XmlText) {
    const text = textJSON(type, tagged)
    const attrs = attributesOf(type)
    return attrs.length === 0 ? text : { text, attributes: sortedObject(attrs, tagged) }
  }
  if (type instanceof Y.Text) return textJSON(type, tagged)
  if (type instanceof Y.XmlElement) {
    const out: Record<string, Json> = { nodeName: type.nodeName }
    const attrs = attributesOf(type)
    if (attrs.length > 0) out.attributes = sortedObject(attrs, tagged)
    if (type.length > 0) out.children = type.toArray().map((c) => typeJSON(c as Shared, tagged))
    return out
  }
  if (type instanceof Y.XmlFragment) return type.toArray().map((c) => typeJSON(c as Shared, tagged))
  if (type instanceof Y.Map) {
    const entries: [string, unknown][] = []
    type.forEach((v: unknown, k: string) => entries.push([k, v]))
    return sortedObject(entries, tagged)
  }
  if (type instanceof Y.Array) return type.toArray().map((v: unknown) => valueJSON(v, tagged))
  return null
}

/** The class tag of a nested type in tagged JSON (two types of one JSON may differ in class). */
const tagOf = (type: Shared): string =>
  type instanceof Y.XmlHook
    ? 'hook'
    : type instanceof Y.XmlText
      ? 'xmltext'
      : type instanceof Y.Text
        ? 'text'
        : type instanceof Y.XmlElement
          ? 'element'
          : type instanceof Y.XmlFragment
            ? 'fragment'
            : type instanceof Y.Map
              ? 'map'
              : type instanceof Y.Array
                ? 'array'
                : 'type'

/**
 * JSON of anything a document holds. `tagged` marks what plain JSON conflates (a nested Y.Text
 * and a string, undefined and null): the form content comparisons use.
 */
const valueJSON = (value: unknown, tagged: boolean): Json => {
  if (value instanceof Y.AbstractType) {
    const json = typeJSON(value as Shared, tagged)
    return tagged ? { $type: tagOf(value as Shared), value: json } : json
  }
  if (value instanceof Y.Doc) return { $doc: value.guid }
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('base64') }
  if (value === undefined) return tagged ? { $undefined: true } : null
  if (typeof value === 'bigint') return { $bigint: value.toString() }
  if (typeof value === 'number' && !Number.isFinite(value))
    return tagged ? { $number: String(value) } : null
  if (Array.isArray(value)) return value.map((v: unknown) => valueJSON(v, tagged))
  if (value !== null && typeof value === 'object')
    return sortedObject(Object.entries(value as Record<string, unknown>), tagged)
  if (typeof value === 'function' || typeof value === 'symbol') return null
  return value as Json
}

/** Plain JSON of a value or type (as `docToJSON` writes it). */
export const toJSONValue = (value: unknown): Json => valueJSON(value, false)

/**
 * A string equal for two values exactly when their content is equal, classes of nested types
 * included: what restore compares to keep unchanged parts.
 */
export const contentKey = (value: unknown): string => JSON.stringify(valueJSON(value, true))

/** Every root of `doc` with visible content, by name (ascending), as JSON (see module comment). */
export const rootsToJSON = (doc: Y.Doc): Record<string, Json> => {
  const out: Record<string, Json> = {}
  for (const [name, { kind, type }] of openRoots(doc)) {
    if (kind === 'empty' || isEmptyRoot(type)) continue
    out[name] = typeJSON(type, false)
  }
  return out
}

/**
 * Every root type of the document `state` (a Yjs v1 update) with visible content as JSON, keys
 * sorted: equal documents give equal JSON text.
 */
export const docToJSON = (state: Uint8Array): Record<string, Json> => {
  const doc = new Y.Doc()
  try {
    Y.applyUpdate(doc, state)
    return rootsToJSON(doc)
  } finally {
    doc.destroy()
  }
}
