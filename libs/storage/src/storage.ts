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
  /** Log entries with an id above `after` (all by default), ascending, without duplicates. */
  readLog(doc: string, opts?: { after?: Watermark }): Promise<LogEntry[]>
  /** Removes the document's state and update log. Deleting a missing document is fine. */
  delete(doc: string): Promise<void>
  /** Names of documents with stored state, ascending, after `after`, at most `limit` (default 1000). */
  list(opts?: { after?: string; limit?: number }): Promise<string[]>
  /** Throws `AppError('STORAGE_UNAVAILABLE')` unless the backend answers (for /readyz). */
  ping(): Promise<void>
  /** Releases connections and file handles. */
  close(): Promise<void>
}

/** Sorts by id and drops repeated ids (logs may hold overlapping batches). */
export const normaliseLog = (entries: readonly LogEntry[], after?: Watermark): LogEntry[] => {
  const byId = new Map<string, LogEntry>()
  for (const e of entries) if (!byId.has(e.id)) byId.set(e.id, e)
  let out = [...byId.values()]
  if (after !== undefined) out = out.filter((e) => compareWatermarks(e.id, after) > 0)
  return out.sort((a, b) => compareWatermarks(a.id, b.id))
}
