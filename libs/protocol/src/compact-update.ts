import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'

/**
 * Makes a merged update about as small as `Y.encodeStateAsUpdate` of the same document, without a
 * Y.Doc. `Y.mergeUpdates` keeps every update's structs apart: 10 000 one-character edits stay
 * 10 000 items of ~10 bytes, where a document holds one item of 10 000 characters; and deleted
 * text keeps its characters, where a document keeps only their count. This pass does what a
 * document's own cleanup does, on the update:
 *
 * - an item whose whole range is in the delete set loses its content (`ContentDeleted` of the same
 *   length), as garbage collection does;
 * - consecutive items of one client (clock after clock) merge into one when the second was
 *   inserted right after the first (its origin is the first's last id), towards the same right
 *   origin, and both hold text or both hold deleted content.
 *
 * Applied anywhere, the result gives the same document as the input: a merged item is split again
 * (with exactly the origins the second item had) wherever a later insertion points inside it, as
 * Yjs does with the merged items of `encodeStateAsUpdate`. Items of other content are left alone:
 * without the document, list items and map values look alike, and a document never merges the
 * latter. The delete set is kept (sorted, overlapping ranges joined).
 */
export const compactUpdate = (update: Uint8Array): Uint8Array => {
  const { structs, ds } = Y.decodeUpdate(update)
  const deleted = normalised(ds.clients)
  const out: (Y.Item | Y.GC | Y.Skip)[] = []
  for (const s of structs) {
    if (s instanceof Y.Item) {
      if (!(s.content instanceof Y.ContentDeleted) && covered(deleted, s.id, s.length)) {
        // A deleted type keeps its content: its children name it as their parent.
        if (!(s.content instanceof Y.ContentType)) s.content = new Y.ContentDeleted(s.length)
      }
      const prev = out[out.length - 1]
      if (prev instanceof Y.Item && mergeable(prev, s)) {
        append(prev, s)
        continue
      }
    }
    out.push(s)
  }
  return encode(out, deleted)
}

/** Each client's ranges sorted by clock, overlapping and touching ones joined. */
const normalised = (
  clients: Map<number, { clock: number; len: number }[]>,
): Map<number, { clock: number; len: number }[]> => {
  const out = new Map<number, { clock: number; len: number }[]>()
  for (const [client, ranges] of clients) {
    const sorted = [...ranges].sort((a, b) => a.clock - b.clock)
    const joined: { clock: number; len: number }[] = []
    for (const r of sorted) {
      const last = joined[joined.length - 1]
      if (last && r.clock <= last.clock + last.len)
        last.len = Math.max(last.len, r.clock + r.len - last.clock)
      else joined.push({ clock: r.clock, len: r.len })
    }
    out.set(client, joined)
  }
  return out
}

/** Whether the delete set holds every clock of `id` .. `id + length - 1` (ranges are sorted). */
const covered = (
  deleted: Map<number, { clock: number; len: number }[]>,
  id: Y.ID,
  length: number,
): boolean => {
  const ranges = deleted.get(id.client)
  if (!ranges) return false
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const r = ranges[mid] as { clock: number; len: number }
    if (r.clock > id.clock) hi = mid - 1
    else if (id.clock >= r.clock + r.len) lo = mid + 1
    else return id.clock + length <= r.clock + r.len
  }
  return false
}

const sameId = (a: Y.ID | null, b: Y.ID | null): boolean =>
  a === null || b === null ? a === b : a.client === b.client && a.clock === b.clock

/** `next` goes right after `prev` in the document: Yjs' own merge rule, read off the update. */
const mergeable = (prev: Y.Item, next: Y.Item): boolean =>
  prev.id.client === next.id.client &&
  prev.id.clock + prev.length === next.id.clock &&
  next.origin !== null &&
  next.origin.client === prev.id.client &&
  next.origin.clock === prev.id.clock + prev.length - 1 &&
  sameId(prev.rightOrigin, next.rightOrigin) &&
  ((prev.content instanceof Y.ContentString &&
    next.content instanceof Y.ContentString &&
    // Joined, the halves would make a character that a later split breaks differently.
    !splitsPair(prev.content.str, next.content.str)) ||
    (prev.content instanceof Y.ContentDeleted && next.content instanceof Y.ContentDeleted))

/** A string ending in the first half of a surrogate pair, or starting with the second half. */
const splitsPair = (prev: string, next: string): boolean => {
  const last = prev.charCodeAt(prev.length - 1)
  const first = next.charCodeAt(0)
  return (last >= 0xd800 && last <= 0xdbff) || (first >= 0xdc00 && first <= 0xdfff)
}

const append = (prev: Y.Item, next: Y.Item): void => {
  if (prev.content instanceof Y.ContentString)
    prev.content.str += (next.content as Y.ContentString).str
  else (prev.content as Y.ContentDeleted).len += next.length
  prev.length += next.length
}

/** The v1 encoding of `structs` (grouped by client, clocks ascending) and the delete set. */
const encode = (
  structs: readonly (Y.Item | Y.GC | Y.Skip)[],
  deleted: Map<number, { clock: number; len: number }[]>,
): Uint8Array => {
  const encoder = new Y.UpdateEncoderV1()
  const byClient = new Map<number, (Y.Item | Y.GC | Y.Skip)[]>()
  for (const s of structs) {
    let list = byClient.get(s.id.client)
    if (!list) byClient.set(s.id.client, (list = []))
    list.push(s)
  }
  // Clients in descending order, as Yjs writes them.
  encoding.writeVarUint(encoder.restEncoder, byClient.size)
  for (const [client, list] of [...byClient].sort((a, b) => b[0] - a[0])) {
    encoding.writeVarUint(encoder.restEncoder, list.length)
    encoder.writeClient(client)
    encoding.writeVarUint(encoder.restEncoder, (list[0] as Y.Item).id.clock)
    for (const s of list) s.write(encoder, 0)
  }
  encoding.writeVarUint(encoder.restEncoder, deleted.size)
  for (const [client, ranges] of [...deleted].sort((a, b) => b[0] - a[0])) {
    encoder.resetDsCurVal()
    encoding.writeVarUint(encoder.restEncoder, client)
    encoding.writeVarUint(encoder.restEncoder, ranges.length)
    for (const r of ranges) {
      encoder.writeDsClock(r.clock)
      encoder.writeDsLen(r.len)
    }
  }
  return encoder.toUint8Array()
}
