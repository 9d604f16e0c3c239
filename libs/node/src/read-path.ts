import { AppError } from '@streambed/common'
import { mergeAll } from '@streambed/protocol'
import type { DocStorage } from '@streambed/storage'
import { type DocStreams, type StreamId, ZERO_ID, hasHoleAfter, maxId } from '@streambed/streams'

export interface DocRead {
  /** Storage state (if any) and the stream tail's updates, in order; mergeAll gives the document. */
  readonly parts: Uint8Array[]
  /** The read covers every entry with an id <= this. */
  readonly upTo: StreamId
}

/** The document of a read as one update. */
export const mergedOf = (read: DocRead): Uint8Array => mergeAll(read.parts)

/**
 * Reads a document from storage plus the stream tail after its watermark, without a Y.Doc; the
 * caller merges (on a sync thread for large documents). When a worker compacted and trimmed in
 * between (the tail no longer reaches the watermark), reloads.
 */
export const readDoc = async (
  storage: DocStorage,
  streams: DocStreams,
  doc: string,
  maxAttempts = 5,
): Promise<DocRead> => {
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    let stored
    try {
      stored = await storage.load(doc)
    } catch (err) {
      throw err instanceof AppError
        ? err
        : new AppError('STORAGE_UNAVAILABLE', `load ${doc}`, { cause: err })
    }
    const watermark = stored?.watermark ?? ZERO_ID
    const tail = await streams.readTail(doc, watermark)
    if (hasHoleAfter(watermark, tail.trimmed)) continue
    const parts = tail.entries.map((e) => e.update)
    if (stored) parts.unshift(stored.state)
    let upTo = maxId(watermark, tail.last)
    const lastEntry = tail.entries[tail.entries.length - 1]
    if (lastEntry) upTo = maxId(upTo, lastEntry.id)
    return { parts, upTo }
  }
  throw new AppError(
    'STREAM_GAP',
    `document ${doc} kept being compacted during ${maxAttempts} reads`,
  )
}
