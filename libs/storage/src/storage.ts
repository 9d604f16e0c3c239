/**
 * The storage contract every backend (fs, postgres, s3) fulfils. Runtimes see only this interface;
 * backends are chosen in the apps' composition roots. One contract suite
 * (contract.int.test.ts) runs against every backend.
 */
import { compareIds as compareWatermarks, type StreamId } from '@streambed/common'

export { compareWatermarks }

/** A stream entry id `<ms>-<seq>`: the state contains every entry with an id <= it. */
export type Watermark = StreamId

export interface StoredDoc {
  /** The document as one Yjs v1 update. */
  readonly state: Uint8Array
  /** `state` contains every stream entry with an id <= watermark. */
  readonly watermark: Watermark
}

/** A raw stream entry as archived in a document's update log. */
export interface LogEntry {
  readonly id: Watermark
  readonly update: Uint8Array
}

/** What a document's update log holds, without its bytes. */
export interface LogExtent {
  /** The lowest entry id in the log. */
  readonly first: Watermark
  /** The highest entry id in the log. */
  readonly last: Watermark
  /** Entries, each id counted once. */
  readonly entries: number
  /** Bytes the log takes: fs and S3, of its batch and segment objects; Postgres, of its updates. */
  readonly bytes: number
  /** fs and S3: batch and segment objects; Postgres: 1 (rows are not files). */
  readonly segments: number
}

/** A document as of a point in its history, kept so that the log before it can be dropped. */
export interface Checkpoint {
  /** `state` holds every entry with an id <= upTo. */
  readonly upTo: Watermark
  /** The document as one Yjs v1 update. */
  readonly state: Uint8Array
}

/** One document's part of a compareAndSetMany. */
export interface CompareAndSetItem {
  readonly doc: string
  readonly expected: Watermark | null
  readonly next: StoredDoc
}

/** One document's part of an appendLogMany. */
export interface LogAppend {
  readonly doc: string
  readonly entries: readonly LogEntry[]
}

/** Bounds of a log read: ids in (after, upTo]; either may be left out. */
export interface LogRange {
  readonly after?: Watermark
  readonly upTo?: Watermark
}

export interface DocStorage {
  /** `fs`, `postgres` or `s3`; shown in logs and metrics. */
  readonly kind: string
  /** The stored document, or `null` when nothing was ever stored for it. */
  load(doc: string): Promise<StoredDoc | null>
  /** The stored watermark only (cheap: no state bytes are read), or `null`. */
  watermark(doc: string): Promise<Watermark | null>
  /**
   * Stores `next` if the stored watermark is still `expected` (`null`: nothing stored yet) and
   * returns true; otherwise stores nothing and returns false. A stored watermark never decreases.
   */
  compareAndSet(doc: string, expected: Watermark | null, next: StoredDoc): Promise<boolean>
  /**
   * Appends raw entries to the document's update log (disaster recovery). Idempotent: an entry id
   * stored twice is read back once.
   */
  appendLog(doc: string, entries: readonly LogEntry[]): Promise<void>
  // Group commit, for compacting many documents at once: each of the three does what the method of
  // one document does, for each document, by the storage's means of doing many at once (Postgres:
  // one statement; fs: one pass of fsyncs; S3: parallel requests). Durable once they resolve. When
  // one throws, some of its documents may be stored, as if each had had a call of its own.
  /** `load` of each document, in order. */
  loadMany(docs: readonly string[]): Promise<(StoredDoc | null)[]>
  /** `appendLog` of each item (a document may appear in several). */
  appendLogMany(items: readonly LogAppend[]): Promise<void>
  /**
   * `compareAndSet` of each item, decided per document, the results in order: a document whose
   * stored watermark is not its `expected` reports false and stores nothing, the others are
   * stored. The documents must differ (TypeError otherwise).
   */
  compareAndSetMany(items: readonly CompareAndSetItem[]): Promise<boolean[]>
  /**
   * Log entries with an id in (after, upTo] (all by default), ascending, without duplicates. Every
   * entry in the range is returned, whatever packLog runs meanwhile.
   */
  readLog(doc: string, range?: LogRange): Promise<LogEntry[]>
  /** The extent of the document's update log, or `null` when it holds no entry. */
  logExtent(doc: string): Promise<LogExtent | null>
  /**
   * Merges the log batches whose entries are all <= upTo into one segment and returns how many
   * objects it merged: 0 when there was nothing to merge (at most one such object). Readers see
   * every entry throughout; running it again, or in two processes at once, is harmless. Postgres
   * keeps rows, not objects: there it does nothing and returns 0.
   */
  packLog(doc: string, upTo: Watermark): Promise<number>
  /**
   * Removes the log entries with an id <= upTo (a checkpoint holds the history before them). A
   * segment holding entries on both sides is rewritten without the dropped ones.
   */
  dropLog(doc: string, upTo: Watermark): Promise<void>
  /** Stores a checkpoint; storing one with the same upTo again replaces it (one is kept). */
  putCheckpoint(doc: string, checkpoint: Checkpoint): Promise<void>
  /** The upTo of every checkpoint of the document, ascending. */
  listCheckpoints(doc: string): Promise<Watermark[]>
  /** The checkpoint with exactly this upTo, or `null`. */
  loadCheckpoint(doc: string, upTo: Watermark): Promise<Checkpoint | null>
  /** Removes the checkpoints with these upTos; missing ones are fine. */
  dropCheckpoints(doc: string, upTos: readonly Watermark[]): Promise<void>
  /** Removes the document's state, update log and checkpoints. Deleting a missing document is fine. */
  delete(doc: string): Promise<void>
  /** Names of documents with stored state, ascending, after `after`, at most `limit` (default 1000). */
  list(opts?: { after?: string; limit?: number }): Promise<string[]>
  /**
   * Names of documents with history (a log entry or a checkpoint), whether or not they have stored
   * state; ascending like list(), after `after`, at most `limit` (default 1000).
   */
  listHistory(opts?: { after?: string; limit?: number }): Promise<string[]>
  /** Throws `AppError('STORAGE_UNAVAILABLE')` unless the backend answers (for /readyz). */
  ping(): Promise<void>
  /** Releases connections and file handles. */
  close(): Promise<void>
}

/**
 * Sorts by id, drops repeated ids (logs may hold overlapping batches) and keeps the ids in
 * (after, upTo].
 */
export const normaliseLog = (
  entries: readonly LogEntry[],
  { after, upTo }: LogRange = {},
): LogEntry[] => {
  const byId = new Map<string, LogEntry>()
  for (const e of entries) if (!byId.has(e.id)) byId.set(e.id, e)
  let out = [...byId.values()]
  if (after !== undefined) out = out.filter((e) => compareWatermarks(e.id, after) > 0)
  if (upTo !== undefined) out = out.filter((e) => compareWatermarks(e.id, upTo) <= 0)
  return out.sort((a, b) => compareWatermarks(a.id, b.id))
}

/** Throws a TypeError unless every item names another document (compareAndSetMany). */
export const assertDistinctDocs = (items: readonly { readonly doc: string }[]): void => {
  const seen = new Set<string>()
  for (const { doc } of items) {
    if (seen.has(doc))
      throw new TypeError(`compareAndSetMany: ${JSON.stringify(doc)} appears twice`)
    seen.add(doc)
  }
}
