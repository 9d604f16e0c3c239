/** Checks on Yjs updates that never need a Y.Doc. */
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import { AppError } from '@streambed/common'
import { rootsToJSON } from './doc-json.js'

const EMPTY_UPDATE = new Uint8Array([0, 0])

/** The byte decoder of the last update decoded with `TrackingDecoder`. */
let lastDecoder: decoding.Decoder | null = null

/** Yjs' v1 decoder, remembering its byte decoder so we can tell whether every byte was read. */
class TrackingDecoder extends Y.UpdateDecoderV1 {
  constructor(decoder: decoding.Decoder) {
    super(decoder)
    lastDecoder = decoder
  }
}

/** Clocks `from` (inclusive) to `to` (exclusive) of one client, held by consecutive structs. */
export interface ClockRun {
  readonly from: number
  readonly to: number
}

/** What an update holds, by the ids of its structs (Yjs names content by client and clock). */
export interface UpdateShape {
  /** Per client, the runs of clocks its structs cover, ascending; gaps (Skip structs) split runs. */
  readonly clients: ReadonlyMap<number, readonly ClockRun[]>
  /** Whether the update deletes anything. */
  readonly hasDeletes: boolean
  /**
   * Per client, one above the highest clock the update's items name as origin, right origin or
   * parent (ids they are placed relative to); absent for shapes not made by inspectUpdate.
   */
  readonly refs?: ReadonlyMap<number, number>
  /**
   * Each item's ids and the neighbours it names (origin: left, right origin: right). An honest
   * item's neighbours were next to each other where it was made; see
   * libs/node/src/structure-guard.ts for what is checked.
   */
  readonly placements?: readonly Placement[]
}

/** An item of an update: its first and last clock and the neighbours it names. */
export interface Placement {
  readonly client: number
  readonly first: number
  readonly last: number
  readonly origin: Y.ID | null
  readonly right: Y.ID | null
}

const bad = (reason: string, cause?: unknown) =>
  new AppError('BAD_MESSAGE', `payload is not a valid Yjs update: ${reason}`, { cause })

/**
 * Decodes `update` completely as a Yjs v1 update and returns its shape. Throws
 * `AppError('BAD_MESSAGE')` unless every struct and the delete set decode and nothing follows them
 * (Y.decodeUpdate alone ignores trailing bytes), and on what Yjs would decode but cannot apply
 * consistently: a client's structs in two sections (Y.applyUpdate keeps only the last, a merge
 * keeps both) and structs of length zero.
 */
export const inspectUpdate = (update: Uint8Array): UpdateShape => {
  lastDecoder = null
  let decoded: { structs: { id: Y.ID; length: number }[]; ds: { clients: Map<number, unknown> } }
  try {
    decoded = Y.decodeUpdateV2(update, TrackingDecoder)
  } catch (err) {
    throw new AppError('BAD_MESSAGE', 'payload is not a valid Yjs update', { cause: err })
  }
  const decoder = lastDecoder as decoding.Decoder | null
  if (decoder && decoding.hasContent(decoder)) {
    throw bad(`${update.length - decoder.pos} trailing bytes`)
  }
  const clients = new Map<number, ClockRun[]>()
  const refs = new Map<number, number>()
  const placements: Placement[] = []
  let runs: ClockRun[] = []
  let sections = 0
  let client = -1
  let end = -1
  for (const struct of decoded.structs) {
    const { clock } = struct.id
    // Within a section, each struct starts where the previous one ended (Skips included).
    if (struct.id.client !== client || clock !== end) {
      client = struct.id.client
      if (clients.has(client)) throw bad(`client ${client} appears in two sections`)
      sections++
      runs = []
      clients.set(client, runs)
    }
    if (struct.length <= 0) throw bad(`struct ${client}:${clock} has length ${struct.length}`)
    if (struct instanceof Y.Item) {
      refusesForwardReference(struct)
      for (const ref of [struct.origin, struct.rightOrigin, struct.parent]) {
        if (ref instanceof Y.ID && ref.clock >= (refs.get(ref.client) ?? 0))
          refs.set(ref.client, ref.clock + 1)
      }
      placements.push({
        client,
        first: clock,
        last: clock + struct.length - 1,
        origin: struct.origin,
        right: struct.rightOrigin,
      })
    }
    end = clock + struct.length
    if (struct instanceof Y.Skip) continue
    const last = runs[runs.length - 1]
    if (last && last.to === clock) runs[runs.length - 1] = { from: last.from, to: end }
    else runs.push({ from: clock, to: end })
  }
  // The header's section count; a client in two adjacent sections, or an empty section, shows as
  // a difference (Y.applyUpdate would keep only a client's last section).
  const declared = decoding.readVarUint(decoding.createDecoder(update))
  if (declared !== sections) throw bad(`${declared} sections declared, ${sections} found`)
  for (const [client, clientRuns] of clients) if (clientRuns.length === 0) clients.delete(client)
  return { clients, hasDeletes: decoded.ds.clients.size > 0, refs, placements }
}

/**
 * Yjs takes a reference from an item to an item of its own client (origin, right origin, parent) to
 * point at an earlier clock: the writer created the referenced item first. One pointing at the
 * item itself or later never resolves the same way twice (a document applying it throws, or keeps
 * it half applied), so it is refused.
 */
const refusesForwardReference = (item: Y.Item): void => {
  const { client, clock } = item.id
  const refs: [string, unknown][] = [
    ['origin', item.origin],
    ['right origin', item.rightOrigin],
    ['parent', item.parent],
  ]
  for (const [what, ref] of refs) {
    if (ref instanceof Y.ID && ref.client === client && ref.clock >= clock)
      throw bad(
        `item ${client}:${clock} names ${client}:${ref.clock}, not created before it, as its ${what}`,
      )
  }
  // Its left and right neighbours at creation cannot be one item.
  const { origin, rightOrigin } = item
  if (origin && rightOrigin && Y.compareIDs(origin, rightOrigin))
    throw bad(`item ${client}:${clock} names ${origin.client}:${origin.clock} as both neighbours`)
}

/**
 * Whether a Yjs document reads the same as its own encoding, as seen through `view` (default: the
 * content of its root types). Yjs places an item between the neighbours it names; neighbours that
 * contradict the document (an item naming ids whose content another writer reused, for one) are
 * placed one way when the update is applied and another way when the document's encoding is read,
 * so live clients and joiners would disagree.
 */
export const readsAsEncoded = (
  doc: Y.Doc,
  view: (doc: Y.Doc) => string = (d) => JSON.stringify(rootsToJSON(d)),
): boolean => {
  const copy = new Y.Doc({ guid: 'streambed-check' })
  try {
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc))
    return view(copy) === view(doc)
  } finally {
    copy.destroy()
  }
}

/**
 * Throws `AppError('BAD_MESSAGE')` unless `update` is a Yjs v1 update the node accepts (see
 * inspectUpdate).
 */
export const validateUpdate = (update: Uint8Array): void => {
  inspectUpdate(update)
}

/** An update with no structs and no deletions. */
export const isEmptyUpdate = (update: Uint8Array): boolean =>
  update.length === 0 || (update.length === 2 && update[0] === 0 && update[1] === 0)

/**
 * What a node remembers about a document between answering a client's sync and receiving the
 * client's step 2: the state vector and the normalised delete set. Small compared to the document.
 */
export interface SyncBaseline {
  readonly stateVector: Uint8Array
  /** An update with no structs and the document's whole delete set, normalised. */
  readonly deletions: Uint8Array
}

export const createSyncBaseline = (merged: Uint8Array): SyncBaseline => {
  const stateVector = Y.encodeStateVectorFromUpdate(merged)
  // diffUpdate against the document's own state vector keeps no structs but the full delete set;
  // merging with an empty update normalises it (sorted, adjacent ranges joined).
  const deletions = Y.mergeUpdates([Y.diffUpdate(merged, stateVector), EMPTY_UPDATE])
  return { stateVector, deletions }
}

/**
 * True when `update` carries nothing the document at `baseline` lacks: every struct is covered by
 * the state vector and every deletion is already known. A reconnecting client's step 2 is usually
 * like that; appending it would grow the stream on every reconnect.
 */
export const addsNothing = (update: Uint8Array, baseline: SyncBaseline): boolean => {
  if (isEmptyUpdate(update)) return true
  const novel = Y.diffUpdate(update, baseline.stateVector)
  const merged = Y.mergeUpdates([baseline.deletions, novel])
  return equalBytes(merged, baseline.deletions)
}

export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

/** How many updates one Y.mergeUpdates call takes in `mergeAll`. */
const MERGE_FAN_IN = 32

/**
 * Merges storage state and stream entries into one update, without a Y.Doc. Y.mergeUpdates sorts
 * all its inputs for every struct it writes, so one call over 10 000 small updates takes ~1.4 s;
 * a tree of calls over 32 inputs each gives the same result in ~35 ms (bench: docs/benchmarks.md).
 */
export const mergeAll = (parts: readonly Uint8Array[]): Uint8Array => {
  let level = parts.filter((p) => !isEmptyUpdate(p))
  if (level.length === 0) return EMPTY_UPDATE
  while (level.length > 1) {
    const next: Uint8Array[] = []
    for (let i = 0; i < level.length; i += MERGE_FAN_IN) {
      const group = level.slice(i, i + MERGE_FAN_IN)
      next.push(group.length === 1 ? (group[0] as Uint8Array) : Y.mergeUpdates(group))
    }
    level = next
  }
  return level[0] as Uint8Array
}

/**
 * The next clock of each client in a document made of `parts` (storage state and stream entries):
 * one past the highest clock any part holds. Streambed keeps a document's clocks gap-free, so this
 * is also what the document has (the clock map append-3.lua keeps, seeded from here).
 */
export const nextClocks = (parts: readonly Uint8Array[]): Map<number, number> => {
  const next = new Map<number, number>()
  for (const part of parts) {
    for (const [client, runs] of inspectUpdate(part).clients) {
      const to = runs[runs.length - 1]?.to ?? 0
      if (to > (next.get(client) ?? 0)) next.set(client, to)
    }
  }
  return next
}

/** `update` without the structs whose clocks are below `next` of their client (known already). */
export const withoutKnown = (update: Uint8Array, next: ReadonlyMap<number, number>): Uint8Array =>
  Y.diffUpdate(update, Y.encodeStateVector(next as Map<number, number>))

/** Whether no client's clocks are held by two of `shapes` (their updates then merge safely). */
export const disjointShapes = (shapes: readonly UpdateShape[]): boolean => {
  const seen = new Map<number, ClockRun[]>()
  for (const shape of shapes) {
    for (const [client, runs] of shape.clients) {
      const before = seen.get(client) ?? []
      for (const r of runs) if (before.some((b) => r.from < b.to && b.from < r.to)) return false
      seen.set(client, [...before, ...runs])
    }
  }
  return true
}
