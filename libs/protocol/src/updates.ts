/** Checks on Yjs updates that never need a Y.Doc. */
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import { AppError } from '@streambed/common'

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

/**
 * Throws `AppError('BAD_MESSAGE')` unless `update` decodes completely as a Yjs v1 update: every
 * struct and the delete set, and nothing after them (Y.decodeUpdate alone ignores trailing bytes).
 */
export const validateUpdate = (update: Uint8Array): void => {
  lastDecoder = null
  try {
    Y.decodeUpdateV2(update, TrackingDecoder)
  } catch (err) {
    throw new AppError('BAD_MESSAGE', 'payload is not a valid Yjs update', { cause: err })
  }
  const decoder = lastDecoder as decoding.Decoder | null
  if (decoder && decoding.hasContent(decoder)) {
    throw new AppError(
      'BAD_MESSAGE',
      `payload is not a valid Yjs update: ${update.length - decoder.pos} trailing bytes`,
    )
  }
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
