import * as Y from 'yjs'
import { AppError, type StreamId, ZERO_ID, maxId } from '@streambed/common'
import { addsNothing, disjointShapes, inspectUpdate, type UpdateShape } from '@streambed/protocol'
import type { AppendGuard, AppendResult, DocStreams } from '@streambed/streams'
import type { Connection, QueuedUpdate } from './connection.js'
import type { HopTrace } from './hop-trace.js'
import type { NodeMetrics } from './metrics.js'

export interface WritePathOptions {
  streams: DocStreams
  metrics: NodeMetrics
  /** Appends of one connection awaiting Redis; later updates queue and are merged. */
  maxInFlightUpdates: number
  /** Bytes of queued updates of one connection before it is closed (4529). */
  maxQueuedBytes: number
  /** Checks updates against the document's structure before they are appended; null: none. */
  guard?: AppendGuard | null
  /** The highest entry id this node has seen of `doc` (appends must go above it). */
  lastSeenId: (doc: string) => StreamId
  /** Closes a connection with the close code of `err` (the runtime's single translation). */
  reject: (conn: Connection, err: unknown) => void
  /** Hop timestamps (TRACE_HOPS); null: off. */
  trace?: HopTrace | null
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

  /** A `sync-update` message. Throws BAD_MESSAGE when it does not decode. */
  update(conn: Connection, update: Uint8Array): void {
    this.accept(conn, { update, shape: inspectUpdate(update) })
  }

  /**
   * A `sync-step2` message: the client's answer to our step 1. When it adds nothing to what our
   * sync answer held (the baseline: the usual reconnect), it is not appended, so reconnects do
   * not grow the stream.
   */
  step2(conn: Connection, update: Uint8Array): void {
    const shape = inspectUpdate(update)
    const baseline = conn.takeBaseline()
    if (baseline && addsNothing(update, baseline)) {
      this.opts.metrics.redundantUpdates.inc()
      conn.acknowledge(1, true)
      return
    }
    const item = { update, shape }
    if (!baseline || isEmpty(shape) || conn.grant.access !== 'write') return this.accept(conn, item)
    // The answer to our step 1 (once per sync: it took the baseline) goes past the in-flight
    // limit: it carries what the server lacks of this client, and the updates the client sent
    // before it (a reconnect while typing) may be waiting for exactly those clocks; queued behind
    // them it would land only after they were refused as gaps.
    conn.writes.acquire()
    this.append(conn, [item])
  }

  private accept(conn: Connection, item: QueuedUpdate): void {
    if (isEmpty(item.shape)) return conn.acknowledge(1, true)
    if (conn.grant.access !== 'write') {
      // Not an error for the connection (reads go on), but never silent: tell the client once.
      conn.notifyReadOnly()
      conn.acknowledge(1, false)
      return
    }
    if (conn.writes.tryAcquire(this.opts.maxInFlightUpdates)) {
      this.append(conn, [item])
      return
    }
    const queuedBytes = conn.writes.enqueue(item)
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

  /**
   * Appends `items` holding one of `conn`'s slots: merged into one entry when no two hold the same
   * ids (always, for an honest client's own edits), else one entry each, in order (merging
   * updates that disagree on an id's content would pick one arbitrarily, or fail).
   */
  private append(conn: Connection, items: readonly QueuedUpdate[]): void {
    let batches: QueuedUpdate[]
    try {
      batches =
        items.length > 1 && disjointShapes(items.map((i) => i.shape)) ? [merged(items)] : [...items]
    } catch (err) {
      // Each update was validated; a merge failure is a bug. The client resyncs on reconnect.
      conn.writes.release()
      this.opts.reject(
        conn,
        new AppError('INTERNAL', 'could not merge queued updates', { cause: err }),
      )
      return
    }
    // Updates per batch: one each, or all of them merged into one.
    const updatesPerBatch = batches.length === items.length ? 1 : items.length
    const trace = this.opts.trace
    // Set only while the socket's message callback runs: an update queued behind a slot has none.
    const frameIn = trace ? trace.frameIn : 0
    this.track(
      (async () => {
        for (const { update, shape } of batches) {
          const started = performance.now()
          const validated = trace ? trace.now() : 0
          // New ids must stay above everything this node saw of the document (the Redis clock
          // may be behind the stored watermark after Redis lost the document's meta hash).
          const floor = maxId(conn.syncedUpTo, this.opts.lastSeenId(conn.doc))
          const result = await this.opts.streams.append(conn.doc, update, conn.origin, {
            floor,
            shape,
            ...(this.opts.guard ? { guard: this.opts.guard } : {}),
          })
          if (trace && result) trace.appended(result.id, shape, frameIn, validated, trace.now())
          this.appended(result, updatesPerBatch, update.length, started)
          conn.acknowledge(updatesPerBatch, true)
        }
      })()
        .catch((err: unknown) => this.opts.reject(conn, err))
        .finally(() => {
          conn.writes.release()
          this.flush(conn)
        }),
    )
  }

  /**
   * Appends an update that did not come from a socket (HTTP API, import); null when it adds
   * nothing. Throws BAD_MESSAGE when it does not decode.
   */
  async appendUnattached(
    doc: string,
    update: Uint8Array,
    origin: string,
    floor: StreamId = ZERO_ID,
  ): Promise<AppendResult | null> {
    const shape = inspectUpdate(update)
    if (isEmpty(shape)) return null
    const started = performance.now()
    const result = await this.opts.streams.append(doc, update, origin, {
      floor: maxId(floor, this.opts.lastSeenId(doc)),
      shape,
      ...(this.opts.guard ? { guard: this.opts.guard } : {}),
    })
    this.appended(result, 1, update.length, started)
    return result
  }

  private appended(
    result: AppendResult | null,
    updates: number,
    bytes: number,
    started: number,
  ): void {
    // Every id it held was known (sent twice, or by two sockets): nothing was appended.
    if (result === null) return this.opts.metrics.redundantUpdates.inc(updates)
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

/** An update with no structs and no deletions. */
const isEmpty = (shape: UpdateShape): boolean => shape.clients.size === 0 && !shape.hasDeletes

/** One update holding every item's structs and deletions (their ids are disjoint). */
const merged = (items: readonly QueuedUpdate[]): QueuedUpdate => {
  const update = Y.mergeUpdates(items.map((i) => i.update))
  return { update, shape: inspectUpdate(update) }
}
