import * as Y from 'yjs'
import { AppError, compareIds } from '@streambed/common'
import { encodeSyncStep1, encodeSyncStep2, type SyncBaseline } from '@streambed/protocol'
import {
  type DocStreams,
  type StateLoader,
  type StreamId,
  partsOf,
  readDocument,
} from '@streambed/streams'
import type { Connection } from './connection.js'
import type { NodeMetrics } from './metrics.js'
import { isEmptyStateVector } from './sync-compute.js'
import type { SyncPool } from './sync-pool.js'

export interface SyncOptions {
  storage: StateLoader
  streams: DocStreams
  pool: SyncPool
  metrics: NodeMetrics
  /** How long the baseline waits for the client's step 2. */
  baselineKeepMs: number
  /**
   * Resolves once `doc` is subscribed (live entries reach its connections from then on);
   * undefined when the document is not served here (its connections are closing).
   */
  subscribed: (doc: string) => Promise<void> | undefined
  /** The last entry of `doc` this node delivered to its connections (`0-0`: none). */
  delivered: (doc: string) => StreamId
  /** Closes a connection with the close code of `err`. */
  reject: (conn: Connection, err: unknown) => void
}

interface JoinAnswer {
  diff: Uint8Array
  stateVector: Uint8Array
  baseline: SyncBaseline | null
  upTo: StreamId
}

interface JoinRequest {
  stateVector: Uint8Array
  resolve: (answer: JoinAnswer) => void
  reject: (err: unknown) => void
}

/**
 * Joins answered by one read share their diff; they share its encoded message too, so N sockets
 * joining a large document at once hold one copy of it, not N (sockets only read the message).
 */
const step2Messages = new WeakMap<Uint8Array, Uint8Array>()
const step2Message = (diff: Uint8Array): Uint8Array => {
  let message = step2Messages.get(diff)
  if (!message) {
    message = encodeSyncStep2(diff)
    step2Messages.set(diff, message)
  }
  return message
}

const keyOf = (stateVector: Uint8Array): string => Buffer.from(stateVector).toString('latin1')

/**
 * The read path of a client's sync step 1: our step 1 and the diff the client lacks, from storage
 * + stream tail (readDocument), merged without a Y.Doc (on a sync thread for large documents).
 *
 * - Per connection, step 1s arriving while one runs are coalesced to the newest.
 * - Per document, every step 1 that arrives before a read starts shares that read (a burst of
 *   joins, a reconnect storm): one storage load, one stream read, one merge, one diff per distinct
 *   client state vector.
 * - A client that already had content gets a baseline, so its step 2 is not appended when it adds
 *   nothing (see WritePath.step2).
 */
export class Sync {
  /** Step 1s per document waiting for a shared read. */
  private readonly batches = new Map<string, JoinRequest[]>()
  private readonly opts: SyncOptions

  constructor(opts: SyncOptions) {
    this.opts = opts
  }

  /** A `sync-step1` message from `conn`. */
  request(conn: Connection, stateVector: Uint8Array): void {
    if (conn.syncRequests.offer(stateVector)) void this.run(conn, stateVector)
  }

  private run(conn: Connection, stateVector: Uint8Array): Promise<void> {
    return this.answer(conn, stateVector).finally(() => {
      const next = conn.syncRequests.done()
      if (next && !conn.closed) void this.run(conn, next)
    })
  }

  private async answer(conn: Connection, clientStateVector: Uint8Array): Promise<void> {
    if (conn.closed) return
    try {
      try {
        Y.decodeStateVector(clientStateVector)
      } catch (err) {
        throw new AppError('BAD_MESSAGE', 'sync step 1 carries an invalid state vector', {
          cause: err,
        })
      }
      const started = performance.now()
      const subscribed = this.opts.subscribed(conn.doc)
      if (!subscribed) return
      await subscribed
      // Buffering starts before the (possibly shared) read starts: see join.
      conn.beginJoin()
      const answer = await this.join(conn.doc, clientStateVector)
      if (conn.closed) return
      // Our step 1 first, as the reference server does: a client with no content answers it with
      // an empty step 2 before it applies ours, so only clients that had content need a baseline.
      conn.send([encodeSyncStep1(answer.stateVector), step2Message(answer.diff)])
      conn.synced(answer.upTo)
      if (answer.baseline) conn.setBaseline(answer.baseline, this.opts.baselineKeepMs)
      this.opts.metrics.syncSeconds.observe((performance.now() - started) / 1000)
      this.opts.metrics.syncBytes.inc(answer.diff.length)
    } catch (err) {
      this.opts.reject(conn, err)
    }
  }

  /**
   * Answers one step 1 from a read shared with every other step 1 for `doc` that arrives before
   * the read starts. Only requests made before the read starts join it — their connections were
   * already buffering live entries — so nothing falls between the read and live delivery.
   */
  private join(doc: string, stateVector: Uint8Array): Promise<JoinAnswer> {
    let batch = this.batches.get(doc)
    if (!batch) {
      const created: JoinRequest[] = []
      batch = created
      this.batches.set(doc, created)
      setImmediate(() => void this.runBatch(doc, created))
    }
    const requests = batch
    return new Promise((resolve, reject) => requests.push({ stateVector, resolve, reject }))
  }

  private async runBatch(doc: string, requests: JoinRequest[]): Promise<void> {
    this.batches.delete(doc)
    try {
      let read = await readDocument(this.opts.storage, this.opts.streams, doc)
      const delivered = this.opts.delivered(doc)
      if (compareIds(read.upTo, delivered) < 0) {
        // Only with REDIS_WAIT_REPLICAS: this node delivered entries (after their WAIT) that Redis
        // no longer marks as confirmed (a failover took back the mark, not the entries). The
        // joiner goes live after them, so its answer must hold them: mark them again, read again.
        await this.opts.streams.markVisible(doc, delivered)
        read = await readDocument(this.opts.storage, this.opts.streams, doc)
      }
      this.opts.metrics.syncReads.inc()
      const distinct = new Map<string, Uint8Array>()
      for (const r of requests) distinct.set(keyOf(r.stateVector), r.stateVector)
      const svs = [...distinct.values()]
      const answer = await this.opts.pool.compute({
        parts: partsOf(read),
        stored: read.stored !== null,
        clientStateVectors: svs,
        // A client with no content cannot send back anything redundant: no baseline for it.
        baseline: svs.some((sv) => !isEmptyStateVector(sv)),
      })
      const diffs = new Map([...distinct.keys()].map((k, i) => [k, answer.diffs[i] as Uint8Array]))
      for (const r of requests) {
        r.resolve({
          diff: diffs.get(keyOf(r.stateVector)) as Uint8Array,
          stateVector: answer.stateVector,
          baseline: isEmptyStateVector(r.stateVector) ? null : answer.baseline,
          upTo: read.upTo,
        })
      }
    } catch (err) {
      for (const r of requests) r.reject(err)
    }
  }
}
