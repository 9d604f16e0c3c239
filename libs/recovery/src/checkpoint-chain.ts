/**
 * A document's checkpoints form a chain. The oldest holds a whole document state; each later one
 * holds what changed since the one before it: the structs after that one's state vector, and the
 * whole delete set (deletions only grow, and a delete set is small beside the content). So:
 *
 *   the document at checkpoint c = the checkpoints with upTo <= c applied in order (or merged)
 *
 * and a document edited a little every day costs a little every day, not a whole state. A whole
 * state anywhere in the chain (checkpoints written before chains, or by a restore) reads the same:
 * Yjs updates merge as a union, and applying one twice changes nothing. No migration is needed.
 *
 * Thinning a checkpoint away must not lose what only it holds. Its successor (the next one kept)
 * is first rewritten to hold everything after the kept one before it — the document at the
 * successor, as a diff against the state vector there — and only then is the thinned one dropped;
 * thinning the oldest makes its successor the new whole state. Why every instant is safe:
 * - Between the rewrite and the drop (a crash, or a reader or backup looking then) both are
 *   there; the rewritten successor holds a superset of what the thinned one held after the kept
 *   one before, so the union up to any checkpoint is still the document there.
 * - A run that repeats the work (a crashed run again, a retried job) rewrites the same successor
 *   with the same document and drops what is already gone: harmless.
 * - A reader lists, then loads. A checkpoint that is missing when loaded was dropped after its
 *   successor was rewritten, but the reader may have loaded that successor before: readers that
 *   find one missing list and load again (loadCheckpoints returns null).
 * - Two runs of one document overlapping (a job retried while its first attempt still runs, or a
 *   run that outlasts the schedule's interval) each rewrite a successor from the whole chain they
 *   loaded, so a chain they both saw gives both the same rewrites. They could differ only where
 *   one keeps what the other drops; the spacing only drops more as time passes
 *   (checkpoint-spacing.ts), so that takes a difference in what they exempt (the log's horizon,
 *   read at different times). Storage has no compare-and-set for checkpoints to rule that out.
 */
import * as Y from 'yjs'
import { AppError, compareIds, type StreamId } from '@streambed/common'
import type { Checkpoint, DocStorage } from '@streambed/storage'
import { mapLimit } from './documents.js'

/** Checkpoints loaded at once. */
const LOAD_CONCURRENCY = 8
/** How often readChain lists again when a checkpoint it listed is dropped meanwhile. */
const LIST_ATTEMPTS = 3

export type ChainStorage = Pick<DocStorage, 'listCheckpoints' | 'loadCheckpoint'>

/**
 * The checkpoints `upTos` (ascending) of `doc`, loaded; null when one of them is gone (thinned
 * since the listing: list again, see the module comment).
 */
export const loadCheckpoints = async (
  storage: ChainStorage,
  doc: string,
  upTos: readonly StreamId[],
): Promise<Checkpoint[] | null> => {
  const loaded = await mapLimit(upTos, LOAD_CONCURRENCY, (upTo) =>
    storage.loadCheckpoint(doc, upTo),
  )
  return loaded.every((c) => c !== null) ? loaded : null
}

/** Every checkpoint of `doc`, ascending, loaded (listed again while thinning drops some). */
export const readChain = async (storage: ChainStorage, doc: string): Promise<Checkpoint[]> => {
  for (let attempt = 1; attempt <= LIST_ATTEMPTS; attempt++) {
    const chain = await loadCheckpoints(storage, doc, await storage.listCheckpoints(doc))
    if (chain) return chain
  }
  throw new AppError('STORAGE_UNAVAILABLE', `checkpoints of ${doc} kept being dropped while read`)
}

/** The chain applied in order to `ydoc` (one transaction each, as a replay does). */
export const applyChain = (ydoc: Y.Doc, chain: readonly { readonly state: Uint8Array }[]) => {
  for (const c of chain) Y.applyUpdate(ydoc, c.state)
}

/**
 * The state vector of the document the chain makes: the chain applied to a Y.Doc. Not the
 * per-client maximum of each checkpoint's own state vector: a delta's starts after clock 0 for
 * most clients, and encodeStateVectorFromUpdate counts a client only from clock 0.
 */
export const chainStateVector = (chain: readonly { readonly state: Uint8Array }[]): Uint8Array => {
  const ydoc = new Y.Doc()
  try {
    applyChain(ydoc, chain)
    // Without pending structs (a chain with a hole): the next delta then holds what is missing.
    return Y.encodeStateVector(ydoc)
  } finally {
    ydoc.destroy()
  }
}

/**
 * What a new checkpoint of `state` (a whole document state, newer than the chain) holds: the
 * structs the chain lacks and the whole delete set.
 */
export const checkpointDelta = (state: Uint8Array, chainSv: Uint8Array): Uint8Array =>
  Y.diffUpdate(state, chainSv)

/** A thinning step: store `checkpoint` (a kept one, rewritten), then drop `absorbs`. */
export interface ChainRewrite {
  readonly checkpoint: Checkpoint
  /** The checkpoints before it that it now holds, dropped once it is stored. */
  readonly absorbs: readonly StreamId[]
}

/**
 * How to drop `drop` from `chain` (ascending, loaded) without losing history: each kept
 * checkpoint after dropped ones rewritten as the document there minus the state vector of the kept
 * one before it (a whole state when none is kept before it). The rewritten checkpoints are
 * garbage-collected states, as compaction writes: what was deleted before them is gone from them.
 * Throws `AppError('INTERNAL')` if the newest would be dropped (nothing could absorb it).
 */
export const planThinning = (
  chain: readonly Checkpoint[],
  drop: ReadonlySet<StreamId>,
): ChainRewrite[] => {
  const ydoc = new Y.Doc()
  try {
    const rewrites: ChainRewrite[] = []
    let keptSv: Uint8Array | null = null
    let absorbs: StreamId[] = []
    for (const c of chain) {
      Y.applyUpdate(ydoc, c.state)
      if (drop.has(c.upTo)) {
        absorbs.push(c.upTo)
        continue
      }
      if (absorbs.length > 0) {
        const state = keptSv ? Y.encodeStateAsUpdate(ydoc, keptSv) : Y.encodeStateAsUpdate(ydoc)
        rewrites.push({ checkpoint: { upTo: c.upTo, state }, absorbs })
        absorbs = []
      }
      keptSv = Y.encodeStateVector(ydoc)
    }
    if (absorbs.length > 0)
      throw new AppError(
        'INTERNAL',
        `thinning would drop the newest checkpoint (${absorbs.at(-1)})`,
      )
    return rewrites
  } finally {
    ydoc.destroy()
  }
}

/**
 * Carries out `rewrites` in order: each rewritten checkpoint stored before what it absorbs is
 * dropped (see the module comment for why every point in between is safe).
 */
export const applyThinning = async (
  storage: Pick<DocStorage, 'putCheckpoint' | 'dropCheckpoints'>,
  doc: string,
  rewrites: readonly ChainRewrite[],
): Promise<void> => {
  for (const { checkpoint, absorbs } of rewrites) {
    await storage.putCheckpoint(doc, checkpoint)
    await storage.dropCheckpoints(doc, absorbs)
  }
}

/** The last of ascending `ids` that is <= bound, or null. */
export const lastAtMost = (ids: readonly StreamId[], bound: StreamId): StreamId | null => {
  let found: StreamId | null = null
  for (const id of ids) {
    if (compareIds(id, bound) > 0) break
    found = id
  }
  return found
}
