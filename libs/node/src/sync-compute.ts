import * as Y from 'yjs'
import { compactUpdate, createSyncBaseline, mergeAll, type SyncBaseline } from '@streambed/protocol'

/** The state vector of a client with an empty document (one varint: zero clients). */
export const isEmptyStateVector = (sv: Uint8Array): boolean => sv.length === 1 && sv[0] === 0

export interface SyncJob {
  /** The document's parts (storage state + stream tail), merged here: see mergeAll. */
  parts: Uint8Array[]
  /** Whether `parts[0]` is the stored state (compacted through a Y.Doc by a worker). */
  stored: boolean
  /** Distinct client state vectors to answer. */
  clientStateVectors: Uint8Array[]
  /** Whether a redundancy baseline is needed (some client already has content). */
  baseline: boolean
}

export interface SyncAnswer {
  /** Our state vector, sent as our sync step 1. */
  stateVector: Uint8Array
  /** `diffs[i]` answers `clientStateVectors[i]`. */
  diffs: Uint8Array[]
  baseline: SyncBaseline | null
}

/** A tail this long is compacted (compactUpdate) before it is sent. */
export const COMPACT_TAIL_ENTRIES = 8
/**
 * ... unless its entries average more than this: large entries (pastes, imports) are already few
 * items each, so compacting them would cost a pass over their bytes for almost no saving.
 */
export const COMPACT_TAIL_AVERAGE_BYTES = 4096

/**
 * The document as one update about as small as the document itself: the stream tail, where each
 * keystroke is an entry of its own, is merged and compacted (compactUpdate: 10 000 one-character
 * edits become one item, deleted text only its length), then merged with the stored state, which a
 * worker already encoded from a Y.Doc. The cost is in the tail's length, not the document's size.
 */
export const mergeDocument = (parts: readonly Uint8Array[], stored: boolean): Uint8Array => {
  const tail = stored ? parts.slice(1) : parts
  const tailBytes = tail.reduce((n, p) => n + p.length, 0)
  if (tail.length < COMPACT_TAIL_ENTRIES || tailBytes > tail.length * COMPACT_TAIL_AVERAGE_BYTES)
    return mergeAll(parts)
  const compactTail = compactUpdate(mergeAll(tail))
  return stored ? mergeAll([parts[0] as Uint8Array, compactTail]) : compactTail
}

/**
 * The CPU-bound part of answering sync step 1s for one document read: the merge, one full pass per
 * distinct non-empty client state vector, plus the state vector and (if needed) the delete-set
 * baseline. Pure, so it can run on a worker thread.
 */
export const computeSync = (job: SyncJob): SyncAnswer => {
  const merged = mergeDocument(job.parts, job.stored)
  // A client with nothing gets the whole document: the merged update as it is, saving one of the
  // three passes over it (most joins of a fresh page load, every join in S7 of the benchmarks).
  const diffs = job.clientStateVectors.map((sv) =>
    isEmptyStateVector(sv) ? merged : Y.diffUpdate(merged, sv),
  )
  if (job.baseline) {
    const baseline = createSyncBaseline(merged)
    return { stateVector: baseline.stateVector, diffs, baseline }
  }
  return { stateVector: Y.encodeStateVectorFromUpdate(merged), diffs, baseline: null }
}
