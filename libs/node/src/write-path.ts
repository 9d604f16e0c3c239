import * as Y from 'yjs'
import { AppError, type StreamId, ZERO_ID, maxId } from '@streambed/common'
import { addsNothing, isEmptyUpdate, validateUpdate } from '@streambed/protocol'
import type { AppendResult, DocStreams } from '@streambed/streams'
import type { Connection } from './connection.js'
import type { NodeMetrics } from './metrics.js'

export interface WritePathOptions {
  streams: DocStreams
  metrics: NodeMetrics
  /** Appends of one connection awaiting Redis; later updates queue and are merged. */
  maxInFlightUpdates: number
  /** Bytes of queued updates of one connection before it is closed (4529). */
  maxQueuedBytes: number
  /** The highest entry id this node has seen of `doc` (appends must go above it). */
  lastSeenId: (doc: string) => StreamId
  /** Closes a connection with the close code of `err` (the runtime's single translation). */
  reject: (conn: Connection, err: unknown) => void
}

/**
 * The write path of a client update: validate → permission → in-flight slots and merge → append
 * (append-3.lua: XADD, doorbell, compaction task). An update is either appended or its connection
 * is closed with an error; never dropped silently (DESIGN.md, invariant 1).
 */
export class WritePath {
  /** Appends not yet answered by Redis; awaited before the node closes. */
  private readonly pending = new Set<Promise<unknown>>()
  private readonly opts: WritePathOptions

  constructor(opts: WritePathOptions) {
    this.opts = opts
  }

  /** A `sync-update` message. */
  update(conn: Connection, update: Uint8Array): void {
    validateUpdate(update)
    this.accept(conn, update)
  }

  /**
   * A `sync-step2` message: the client's answer to our step 1. When it adds nothing to what our
   * sync answer held (the baseline: the usual reconnect), it is not appended, so reconnects do
   * not grow the stream.
   */
  step2(conn: Connection, update: Uint8Array): void {
    validateUpdate(update)
    const baseline = conn.takeBaseline()
    if (baseline && addsNothing(update, baseline)) {
      this.opts.metrics.redundantUpdates.inc()
      return
    }
    this.accept(conn, update)
  }

  private accept(conn: Connection, update: Uint8Array): void {
    if (isEmptyUpdate(update)) return
    if (conn.grant.access !== 'write') {
      // Not an error for the connection (reads go on), but never silent: tell the client once.
      conn.notifyReadOnly()
      return
    }
    if (conn.writes.tryAcquire(this.opts.maxInFlightUpdates)) {
      this.append(conn, [update])
      return
    }
    const queuedBytes = conn.writes.enqueue(update)
    if (queuedBytes > this.opts.maxQueuedBytes) {
      this.opts.reject(
        conn,
        new AppError(
          'OVERLOADED',
          `more than ${this.opts.maxQueuedBytes} bytes of updates waiting for Redis`,
        ),
      )
    }
  }

  /**
   * Appends everything queued for `conn` as one entry; also after the client closed (its updates
   * are appended all the same).
   */
  flush(conn: Connection): void {
    const queued = conn.writes.takeQueued()
    if (queued.length === 0) return
    conn.writes.acquire()
    this.append(conn, queued)
  }

  /** Appends `updates` (merged when several) holding one of `conn`'s slots. */
  private append(conn: Connection, updates: readonly Uint8Array[]): void {
    let payload: Uint8Array
    try {
      payload =
        updates.length === 1 ? (updates[0] as Uint8Array) : Y.mergeUpdates(updates as Uint8Array[])
    } catch (err) {
      // Each update was validated; a merge failure is a bug. The client resyncs on reconnect.
      conn.writes.release()
      this.opts.reject(
        conn,
        new AppError('INTERNAL', 'could not merge queued updates', { cause: err }),
      )
      return
    }
    const started = performance.now()
    // New ids must stay above everything this node saw of the document (the Redis clock may be
    // behind the stored watermark after Redis lost the document's meta hash).
    const floor = maxId(conn.syncedUpTo, this.opts.lastSeenId(conn.doc))
    this.track(
      this.opts.streams
        .append(conn.doc, payload, conn.origin, floor)
        .then(() => this.appended(updates.length, payload.length, started))
        .catch((err: unknown) => this.opts.reject(conn, err))
        .finally(() => {
          conn.writes.release()
          this.flush(conn)
        }),
    )
  }

  /** Appends an update that did not come from a socket (HTTP API); null when it is empty. */
  async appendUnattached(
    doc: string,
    update: Uint8Array,
    origin: string,
    floor: StreamId = ZERO_ID,
  ): Promise<AppendResult | null> {
    validateUpdate(update)
    if (isEmptyUpdate(update)) return null
    const started = performance.now()
    const result = await this.opts.streams.append(
      doc,
      update,
      origin,
      maxId(floor, this.opts.lastSeenId(doc)),
    )
    this.appended(1, update.length, started)
    return result
  }

  private appended(updates: number, bytes: number, started: number): void {
    this.opts.metrics.updatesAppended.inc(updates)
    this.opts.metrics.updateBytesAppended.inc(bytes)
    this.opts.metrics.appendSeconds.observe((performance.now() - started) / 1000)
  }

  private track(promise: Promise<unknown>): void {
    this.pending.add(promise)
    void promise.finally(() => this.pending.delete(promise))
  }

  /** Resolves once every append started so far was answered. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }
}
