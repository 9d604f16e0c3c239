import * as Y from 'yjs'
import { createSyncBaseline, mergeAll, type SyncBaseline } from '@streambed/protocol'

/** The state vector of a client with an empty document (one varint: zero clients). */
export const isEmptyStateVector = (sv: Uint8Array): boolean => sv.length === 1 && sv[0] === 0

export interface SyncJob {
  /** The document's parts (storage state + stream tail), merged here: see mergeAll. */
  parts: Uint8Array[]
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

/**
 * The CPU-bound part of answering sync step 1s for one document read: the merge, one full pass per
 * distinct non-empty client state vector, plus the state vector and (if needed) the delete-set
 * baseline. Pure, so it can run on a worker thread.
 */
export const computeSync = (job: SyncJob): SyncAnswer => {
  const merged = mergeAll(job.parts)
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
