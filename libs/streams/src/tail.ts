import { compareIds, nextId, type StreamId, ZERO_ID } from '@streambed/common'
import type { UpdateShape } from '@streambed/protocol'

/** What a document's stream holds and how it is read and appended to (see doc-streams.ts). */
export interface StreamEntry {
  readonly id: StreamId
  readonly update: Uint8Array
  /** `<nodeId>/<connectionId>` of the writer, `''` if unknown. */
  readonly origin: string
}

export interface TailRead {
  /** Every entry with a smaller id is gone from the stream (`0-0`: nothing ever trimmed). */
  readonly trimmed: StreamId
  /**
   * Id of the last entry ever appended (`0-0`: none). With REDIS_WAIT_REPLICAS, the last one the
   * replicas confirmed: later entries are not read until they are (see `pending`).
   */
  readonly last: StreamId
  /** Entries after the requested id, oldest first. */
  readonly entries: StreamEntry[]
  /** Entries after `last` exist that no replica confirmed yet (REDIS_WAIT_REPLICAS only). */
  readonly pending?: boolean
}

export interface AppendResult {
  readonly id: StreamId
  readonly prev: StreamId
  readonly newTask: boolean
}

/**
 * A check of an update against the document's structure before it is appended (server nodes:
 * libs/node/src/structure-guard.ts). `admit` throws to refuse the update; otherwise the append
 * settles the ticket once Redis answered: `clean` when the update went in as checked (no id of
 * it was already in the stream), `stripped` when Redis had some of its ids (the rest went in),
 * `failed` when nothing of it was appended.
 */
export interface AppendGuard {
  admit(doc: string, update: Uint8Array, shape: UpdateShape): Promise<AdmitTicket>
}

export interface AdmitTicket {
  /** `id`: the entry it became (`clean` only). */
  settle(outcome: AppendOutcome, id?: StreamId): void
}

export type AppendOutcome = 'clean' | 'stripped' | 'failed'

export interface AppendOptions {
  /** Checks the update's structure first (see AppendGuard). */
  guard?: AppendGuard
  /** The new id will be above it: the highest id the caller knows the document reached. */
  floor?: StreamId
  /** `inspectUpdate(update)`, when the caller has it already (saves a decode). */
  shape?: UpdateShape
}

export interface DocStreams {
  /**
   * Appends what `update` adds to the document; resolves once Redis has it, or with null when it
   * adds nothing (every struct's id is known and it deletes nothing). Structs whose ids the
   * document has are stripped first: the first content of an id wins, as Yjs applies updates.
   * Throws `AppError('CLOCK_GAP')` for an update that skips clocks of a client (it cannot be
   * stored without a gap; after a Redis failover lost recent entries, an honest client's next
   * update does: it resyncs, 4509, and sends them again), `OVERLOADED` when concurrent writers of the same ids keep winning,
   * `REDIS_UNAVAILABLE` and `STORAGE_UNAVAILABLE` (seeding the clock map reads storage).
   */
  append(
    doc: string,
    update: Uint8Array,
    origin: string,
    opts?: AppendOptions,
  ): Promise<AppendResult | null>
  /**
   * Reads every entry after `after` with the trim marker read atomically with the first page.
   * With REDIS_WAIT_REPLICAS only entries the replicas confirmed are read: an append whose WAIT
   * is pending or timed out is seen by nobody until it is confirmed (a failover then cannot take
   * back what a reader saw).
   */
  readTail(doc: string, after: StreamId): Promise<TailRead>
  /**
   * With REDIS_WAIT_REPLICAS: waits for the replicas to confirm every entry appended so far and
   * makes them visible (ringing a doorbell for them). Resolves false when the replicas did not
   * confirm within the wait timeout; true at once without REDIS_WAIT_REPLICAS.
   */
  confirm(doc: string): Promise<boolean>
  /**
   * The id of the last entry readers may see: the last appended, or with REDIS_WAIT_REPLICAS the
   * last the replicas confirmed (`0-0`: none).
   */
  lastVisible(doc: string): Promise<StreamId>
  /**
   * With REDIS_WAIT_REPLICAS: records that entries up to `id` were confirmed (a node delivered
   * them after their WAIT; a failover may have taken back only the record of it). No-op otherwise.
   */
  markVisible(doc: string, id: StreamId): Promise<void>
}

/**
 * True when entries after `watermark` may be missing from a read whose trim marker is `trimmed`
 * (entries below `trimmed` are gone): storage must be reloaded, since a worker persists a watermark
 * before it trims up to it.
 */
export const hasHoleAfter = (watermark: StreamId, trimmed: StreamId): boolean =>
  trimmed !== ZERO_ID && compareIds(trimmed, nextId(watermark)) > 0
