/**
 * A forward update that gives a document other content: how restore puts an older version back
 * without rewriting history. Yjs cannot undelete (a deleted id stays deleted), so what the target
 * has and the current document lost is inserted again, under a fresh client id; what the current
 * document has and the target lacks is deleted. Live clients apply it like any edit and keep their
 * concurrent edits.
 *
 * Churn is kept low, since every replaced item moves the cursors of the people editing it:
 *   text     the common prefix and suffix stay (characters and embeds with their formatting);
 *            the middle is deleted and the target's middle inserted with its formatting
 *   map      equal keys stay, nested types of one class are synced in place, others are set
 *   list     (arrays, XML children) the common prefix and suffix stay; in a middle of equal
 *            length, nested types of one class (XML elements of one name) are synced in place;
 *            the rest is deleted and the target's elements inserted as clones
 *   roots    synced as the kind the target's content shows (see doc-json.ts in @streambed/protocol); a root only the
 *            current document has is emptied, one only the target has is filled
 */
import * as Y from 'yjs'
import * as random from 'lib0/random'
import { type Shared, contentKey, inferRootKind, typedRoot } from '@streambed/protocol'

/** A copy of `value` that can be inserted into a document (nested types become unintegrated). */
const cloneValue = (value: unknown): unknown => {
  if (value instanceof Y.AbstractType) return cloneType(value as Shared)
  if (value instanceof Y.Doc) {
    return new Y.Doc({
      guid: value.guid,
      collectionid: value.collectionid ?? undefined,
      gc: value.gc,
      meta: value.meta as unknown,
      autoLoad: value.autoLoad,
      shouldLoad: value.shouldLoad,
    })
  }
  return value
}

interface DeltaOp {
  insert?: unknown
  retain?: number
  delete?: number
  attributes?: Record<string, unknown>
}

const clonedDelta = (text: Y.Text): DeltaOp[] =>
  (text.toDelta() as DeltaOp[]).map((op) =>
    op.attributes === undefined
      ? { insert: cloneValue(op.insert) }
      : { insert: cloneValue(op.insert), attributes: op.attributes },
  )

const mapEntries = (type: Y.Map<unknown>): [string, unknown][] => {
  const entries: [string, unknown][] = []
  type.forEach((v, k) => entries.push([k, v]))
  return entries
}

/**
 * A deep copy of an integrated type, not yet integrated. Written here rather than with `clone()`,
 * which inserts nested types of texts and XML attributes, and subdocuments, without copying them
 * (they are integrated elsewhere, so the insert fails) and drops the attributes of XML text.
 */
const cloneType = (type: Shared): Shared => {
  if (type instanceof Y.XmlHook) {
    const hook = new Y.XmlHook(type.hookName)
    for (const [k, v] of mapEntries(type)) hook.set(k, cloneValue(v))
    return hook
  }
  if (type instanceof Y.XmlText) {
    const text = new Y.XmlText()
    text.applyDelta(clonedDelta(type))
    for (const [k, v] of Object.entries(type.getAttributes())) text.setAttribute(k, cloneValue(v))
    return text
  }
  if (type instanceof Y.Text) {
    const text = new Y.Text()
    text.applyDelta(clonedDelta(type))
    return text
  }
  if (type instanceof Y.XmlElement) {
    const el = new Y.XmlElement(type.nodeName)
    for (const [k, v] of Object.entries(type.getAttributes()))
      el.setAttribute(k, cloneValue(v) as string)
    el.insert(
      0,
      type.toArray().map((c) => cloneType(c as Shared) as Y.XmlElement),
    )
    return el
  }
  if (type instanceof Y.XmlFragment) {
    const fragment = new Y.XmlFragment()
    fragment.insert(
      0,
      type.toArray().map((c) => cloneType(c as Shared) as Y.XmlElement),
    )
    return fragment
  }
  if (type instanceof Y.Map) {
    const map = new Y.Map<unknown>()
    for (const [k, v] of mapEntries(type as Y.Map<unknown>)) map.set(k, cloneValue(v))
    return map
  }
  if (type instanceof Y.Array) {
    const arr = new Y.Array<unknown>()
    arr.insert(0, (type as Y.Array<unknown>).toArray().map(cloneValue))
    return arr
  }
  throw new TypeError(`cannot copy a ${type.constructor.name}`)
}

/** Whether `a` can be synced in place to `b`: same class (and element or hook name). */
const sameClass = (a: unknown, b: unknown): a is Shared =>
  a instanceof Y.AbstractType &&
  b instanceof Y.AbstractType &&
  a.constructor === b.constructor &&
  (!(a instanceof Y.XmlElement) || a.nodeName === (b as Y.XmlElement).nodeName) &&
  (!(a instanceof Y.XmlHook) || a.hookName === (b as Y.XmlHook).hookName)

/** Keeps equal entries, syncs nested types of one class, sets or deletes the rest. */
const syncEntries = (
  current: [string, unknown][],
  target: [string, unknown][],
  set: (key: string, value: unknown) => void,
  remove: (key: string) => void,
): void => {
  const targetKeys = new Set(target.map(([k]) => k))
  const have = new Map(current)
  for (const [k] of current) if (!targetKeys.has(k)) remove(k)
  for (const [k, want] of target) {
    if (!have.has(k)) set(k, cloneValue(want))
    else {
      const value = have.get(k)
      if (sameClass(value, want)) syncType(value, want as Shared)
      else if (contentKey(value) !== contentKey(want)) set(k, cloneValue(want))
    }
  }
}

const syncAttributes = (current: Y.XmlElement | Y.XmlText, target: Y.XmlElement | Y.XmlText) =>
  syncEntries(
    Object.entries(current.getAttributes()),
    Object.entries(target.getAttributes()),
    (k, v) => current.setAttribute(k, v),
    (k) => current.removeAttribute(k),
  )

/** Lengths of the common prefix and suffix of two key lists (not overlapping). */
const commonEnds = (a: readonly string[], b: readonly string[]): [number, number] => {
  const min = Math.min(a.length, b.length)
  let prefix = 0
  while (prefix < min && a[prefix] === b[prefix]) prefix++
  let suffix = 0
  while (suffix < min - prefix && a[a.length - 1 - suffix] === b[b.length - 1 - suffix]) suffix++
  return [prefix, suffix]
}

/** One unit of text (a character, or an embed) with its formatting, as delta pieces. */
interface TextUnit {
  readonly key: string
  readonly insert: unknown
  readonly length: number
  readonly attributes: Record<string, unknown> | undefined
}

const unitsOf = (text: Y.Text): TextUnit[] => {
  const units: TextUnit[] = []
  for (const op of text.toDelta() as DeltaOp[]) {
    const attrs = op.attributes === undefined ? '' : contentKey(op.attributes)
    if (typeof op.insert === 'string') {
      // Code points, not UTF-16 units: a diff must not split a surrogate pair.
      for (const ch of op.insert)
        units.push({
          key: `s${ch}\u0000${attrs}`,
          insert: ch,
          length: ch.length,
          attributes: op.attributes,
        })
    } else {
      units.push({
        key: `e${contentKey(op.insert)}\u0000${attrs}`,
        insert: op.insert,
        length: 1,
        attributes: op.attributes,
      })
    }
  }
  return units
}

const sameAttributes = (a: TextUnit['attributes'], b: TextUnit['attributes']) =>
  a === b || (a !== undefined && b !== undefined && contentKey(a) === contentKey(b))

const syncText = (current: Y.Text, target: Y.Text): void => {
  if (current instanceof Y.XmlText) syncAttributes(current, target as Y.XmlText)
  const have = unitsOf(current)
  const want = unitsOf(target)
  const [prefix, suffix] = commonEnds(
    have.map((u) => u.key),
    want.map((u) => u.key),
  )
  const removed = have.slice(prefix, have.length - suffix)
  const added = want.slice(prefix, want.length - suffix)
  if (removed.length === 0 && added.length === 0) return
  const at = have.slice(0, prefix).reduce((n, u) => n + u.length, 0)
  const delta: DeltaOp[] = []
  if (at > 0) delta.push({ retain: at })
  const deleted = removed.reduce((n, u) => n + u.length, 0)
  if (deleted > 0) delta.push({ delete: deleted })
  // Runs of characters with equal formatting become one insert; every insert names its
  // formatting (`{}` for none), so formatting around the gap does not leak into it.
  for (const unit of added) {
    const last = delta[delta.length - 1]
    if (
      typeof unit.insert === 'string' &&
      last !== undefined &&
      typeof last.insert === 'string' &&
      sameAttributes(last.attributes, unit.attributes ?? {})
    )
      last.insert += unit.insert
    else delta.push({ insert: cloneValue(unit.insert), attributes: unit.attributes ?? {} })
  }
  current.applyDelta(delta)
}

type ListType = Y.Array<unknown> | Y.XmlFragment

const syncList = (current: ListType, target: ListType): void => {
  const have = current.toArray()
  const want = target.toArray()
  const [prefix, suffix] = commonEnds(have.map(contentKey), want.map(contentKey))
  const removed = have.slice(prefix, have.length - suffix)
  const added = want.slice(prefix, want.length - suffix)
  const insert = (index: number, values: unknown[]) =>
    (current as Y.Array<unknown>).insert(index, values.map(cloneValue))
  if (removed.length !== added.length) {
    if (removed.length > 0) current.delete(prefix, removed.length)
    if (added.length > 0) insert(prefix, added)
    return
  }
  // Equal length: elements that are types of one class are synced where they are (the cursors
  // inside a paragraph whose text changed stay put); runs of others are replaced.
  let i = 0
  while (i < added.length) {
    const value = removed[i]
    const wanted = added[i]
    if (sameClass(value, wanted)) {
      syncType(value, wanted as Shared)
      i++
      continue
    }
    let end = i + 1
    while (end < added.length && !sameClass(removed[end], added[end])) end++
    current.delete(prefix + i, end - i)
    insert(prefix + i, added.slice(i, end))
    i = end
  }
}

/** Makes `current` show what `target` shows; both are of one class (see sameClass). */
const syncType = (current: Shared, target: Shared): void => {
  if (current instanceof Y.Text) syncText(current, target as Y.Text)
  else if (current instanceof Y.Map) {
    const map = current as Y.Map<unknown>
    syncEntries(
      mapEntries(map),
      mapEntries(target as Y.Map<unknown>),
      (k, v) => map.set(k, v),
      (k) => map.delete(k),
    )
  } else if (current instanceof Y.XmlElement) {
    syncAttributes(current, target as Y.XmlElement)
    syncList(current, target as Y.XmlElement)
  } else if (current instanceof Y.XmlFragment || current instanceof Y.Array)
    syncList(current as ListType, target as ListType)
  else throw new TypeError(`cannot restore a ${current.constructor.name}`)
}

/** Deletes everything a type shows, list and map alike, whatever its class. */
const clearType = (transaction: Y.Transaction, type: Shared): void => {
  for (let item = type._start; item !== null; item = item.right)
    if (!item.deleted) item.delete(transaction)
  for (const item of type._map.values()) if (!item.deleted) item.delete(transaction)
}

/** Map entries a list-kind root holds (no application writes them): deleted, as restore empties. */
const clearMapPart = (transaction: Y.Transaction, type: Shared): void => {
  if (type instanceof Y.Map || type instanceof Y.XmlText) return
  for (const item of type._map.values()) if (!item.deleted) item.delete(transaction)
}

/** A client id neither document has used (so the restore's items are new ids). */
const freshClientId = (a: Y.Doc, b: Y.Doc): number => {
  for (;;) {
    const id = random.uint32()
    if (!a.store.clients.has(id) && !b.store.clients.has(id)) return id
  }
}

/**
 * The Yjs update that, applied to a document in state `current`, makes every root type's content
 * equal `target`'s (as `docToJSON` shows it); null when they show the same. Its items are new
 * (a fresh client id), so it applies after anything `current` has and merges with concurrent
 * edits. Both arguments are Yjs v1 updates holding a whole document.
 */
export const restoreUpdate = (current: Uint8Array, target: Uint8Array): Uint8Array | null => {
  const cur = new Y.Doc()
  const tgt = new Y.Doc()
  try {
    Y.applyUpdate(cur, current)
    Y.applyUpdate(tgt, target)
    return restoreUpdateOfDocs(cur, tgt)
  } finally {
    cur.destroy()
    tgt.destroy()
  }
}

/**
 * `restoreUpdate` of two documents already decoded (saves decoding large ones again). Both must
 * have been built by applying updates, so that their roots are still bare; `current` ends up
 * holding the restore (and a new client id), `target`'s roots opened.
 */
export const restoreUpdateOfDocs = (cur: Y.Doc, tgt: Y.Doc): Uint8Array | null => {
  cur.clientID = freshClientId(cur, tgt)
  const updates: Uint8Array[] = []
  const collect = (u: Uint8Array) => updates.push(u)
  cur.on('update', collect)
  try {
    const names = [...new Set([...cur.share.keys(), ...tgt.share.keys()])].sort()
    cur.transact((transaction) => {
      for (const name of names) {
        const bareTarget = tgt.share.get(name) as Shared | undefined
        const bareCurrent = cur.share.get(name) as Shared | undefined
        const kind = bareTarget ? inferRootKind(bareTarget) : 'empty'
        if (kind === 'empty') {
          if (bareCurrent) clearType(transaction, bareCurrent)
          continue
        }
        const currentKind = bareCurrent ? inferRootKind(bareCurrent) : 'empty'
        const want = typedRoot(tgt, name, kind)
        const have = typedRoot(cur, name, kind)
        // Content of another kind (one root name used as two types) cannot be synced: replace it.
        if (currentKind !== 'empty' && currentKind !== kind) clearType(transaction, have)
        else clearMapPart(transaction, have)
        syncType(have, want)
      }
    })
  } finally {
    cur.off('update', collect)
  }
  if (updates.length <= 1) return updates[0] ?? null
  return Y.mergeUpdates(updates)
}
