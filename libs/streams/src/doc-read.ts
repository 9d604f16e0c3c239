import { AppError, type StreamId, ZERO_ID, guarded, maxId } from '@streambed/common'
import { type DocStreams, type TailRead, hasHoleAfter } from './tail.js'

/** A document's compacted state as storage returns it (structurally `StoredDoc`). */
export interface StoredState {
  readonly state: Uint8Array
  /** `state` holds every stream entry with an id <= watermark. */
  readonly watermark: StreamId
}

/** What a document read needs of storage (the `load` of every storage backend). */
export interface StateLoader {
  load(doc: string): Promise<StoredState | null>
}

export interface DocumentRead {
  /** The stored state, or null when the document was never compacted. */
  readonly stored: StoredState | null
  /** The stream after the stored watermark, with no entry missing in between. */
  readonly tail: TailRead
  /** The read covers every entry with an id <= this. */
  readonly upTo: StreamId
}

export interface ReadDocumentOptions {
  /** Reads tried before STREAM_GAP; default 5. */
  maxAttempts?: number
  /** Runs between the storage load and the stream read of each attempt (test hooks). */
  afterLoad?: () => Promise<void>
}

/**
 * The one document read, shared by server nodes (joins, HTTP) and workers (compaction): storage,
 * then the stream tail after the stored watermark. When a worker stored and trimmed in between
 * (the tail no longer reaches the watermark), storage is ahead: load again. Throws
 * `AppError('STREAM_GAP')` after `maxAttempts` such races, `STORAGE_UNAVAILABLE` or
 * `REDIS_UNAVAILABLE` when a dependency fails.
 */
export const readDocument = async (
  storage: StateLoader,
  streams: DocStreams,
  doc: string,
  opts: ReadDocumentOptions = {},
): Promise<DocumentRead> => {
  const maxAttempts = opts.maxAttempts ?? 5
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const stored = await guarded('STORAGE_UNAVAILABLE', `load ${doc}`, () => storage.load(doc))
    await opts.afterLoad?.()
    const watermark = stored?.watermark ?? ZERO_ID
    const tail = await streams.readTail(doc, watermark)
    if (hasHoleAfter(watermark, tail.trimmed)) continue
    const lastEntry = tail.entries[tail.entries.length - 1]
    const upTo = maxId(maxId(watermark, tail.last), lastEntry?.id ?? ZERO_ID)
    return { stored, tail, upTo }
  }
  throw new AppError(
    'STREAM_GAP',
    `document ${doc} kept being compacted during ${maxAttempts} reads`,
  )
}

/** The read's updates in order (stored state first); merged they give the document. */
export const partsOf = (read: DocumentRead): Uint8Array[] => {
  const parts = read.tail.entries.map((e) => e.update)
  if (read.stored) parts.unshift(read.stored.state)
  return parts
}
