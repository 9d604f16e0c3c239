import { AppError, CloseCode, describeError, type Logger, sleep } from '@streambed/common'
import { type ClientMessage, decodeMessage } from '@streambed/protocol'
import type { DocStorage } from '@streambed/storage'
import type { AppendResult, AwarenessStore, DocStreams, Keys, Redis } from '@streambed/streams'
import {
  type DocumentRead,
  ZERO_ID,
  deleteDocumentState,
  dropClocks,
  encodeStatelessMessage,
  readDocument,
} from '@streambed/streams'
import {
  type DocumentAt,
  type HistoryListing,
  type RestoreResult,
  documentAt,
  historyOf,
  restoreDocument,
} from '@streambed/recovery/history'
import type { Grant } from './auth.js'
import { Connection, type SocketLike } from './connection.js'
import { FanOut } from './fan-out.js'
import type { HopTrace } from './hop-trace.js'
import type { NodeMetrics } from './metrics.js'
import { Presence } from './presence.js'
import { Sync } from './sync.js'
import { createSyncPool, type SyncPool } from './sync-pool.js'
import { StructureGuard } from './structure-guard.js'
import { WritePath } from './write-path.js'

export interface RuntimeLimits {
  /** Appends of one connection awaiting Redis; later updates queue and are merged. */
  maxInFlightUpdates: number
  /** Bytes of queued updates of one connection before it is closed (4529). */
  maxQueuedBytes: number
  /** Live entries buffered for a connection during its sync before it is closed (4508). */
  maxBufferedEntries: number
  /** ... or bytes of them. */
  maxBufferedBytes: number
  /** How long the sync baseline waits for the client's step 2. */
  baselineKeepMs: number
  /** A connection that was sent nothing for this long gets a no-op awareness message. */
  keepaliveMs: number
  /** An empty document stays subscribed this long. */
  docLingerMs: number
  heartbeatMs: number
  nodeTimeoutMs: number
  awarenessTimeoutMs: number
  /** Largest awareness state one client may announce (bytes of JSON). */
  awarenessMaxStateBytes: number
  /** Awareness client ids one connection may own at once. */
  awarenessMaxClientsPerConnection: number
  /** Worker threads answering syncs of large documents (0: all on the event loop). */
  syncThreads: number
  /** Documents above this size are answered on a worker thread. */
  syncThreadAboveBytes: number
  /** A sync thread idle this long exits, returning the memory a large document's parse left. */
  syncThreadIdleMs: number
  /**
   * Check each update's items against the document's structure (StructureGuard): the node then
   * holds a Y.Doc of every document written through it while it serves the document.
   */
  structureCheck: boolean
  /** Encoded bytes of the structure copies held at once (least recently written dropped). */
  structureCheckMaxBytes: number
}

export const defaultLimits: RuntimeLimits = {
  maxInFlightUpdates: 16,
  maxQueuedBytes: 64 * 1024 * 1024,
  maxBufferedEntries: 10_000,
  maxBufferedBytes: 64 * 1024 * 1024,
  baselineKeepMs: 30_000,
  keepaliveMs: 15_000,
  docLingerMs: 5_000,
  heartbeatMs: 2_000,
  nodeTimeoutMs: 10_000,
  awarenessTimeoutMs: 30_000,
  awarenessMaxStateBytes: 64 * 1024,
  awarenessMaxClientsPerConnection: 8,
  syncThreads: 1,
  syncThreadAboveBytes: 256 * 1024,
  syncThreadIdleMs: 10_000,
  structureCheck: true,
  structureCheckMaxBytes: 64 * 1024 * 1024,
}

export interface RuntimeOptions {
  nodeId: string
  /** Command connection. */
  redis: Redis
  /** Dedicated connection for sharded pub/sub. */
  subscriber: Redis
  keys: Keys
  streams: DocStreams
  awareness: AwarenessStore
  storage: DocStorage
  logger: Logger
  metrics: NodeMetrics
  limits?: Partial<RuntimeLimits>
  /**
   * Told of a document about to be deleted (webhooks' document.deleted), before anything is
   * deleted: an error fails the request, and a retry announces it again (at least once).
   */
  announceDelete?: (doc: string) => Promise<void>
  /** Hop timestamps of the cross-node path (TRACE_HOPS); null or absent: off. */
  trace?: HopTrace | null
}

/**
 * A server node independent of the WebSocket library: the registry of connections and the switch
 * that hands each message to its stage — WritePath (updates), Sync (step 1s), Presence
 * (awareness) — with FanOut delivering what other sockets wrote. `reject` is the single place
 * where an error becomes a close code.
 */
export class NodeRuntime {
  readonly nodeId: string
  /** See RuntimeOptions.trace. */
  readonly trace: HopTrace | null
  /**
   * Prefix of the origin written into stream entries: the node id plus a per-process token, so
   * that two processes misconfigured with one NODE_ID still never suppress each other's updates.
   */
  private readonly originPrefix: string
  private readonly opts: RuntimeOptions
  private readonly limits: RuntimeLimits
  private readonly conns = new Set<Connection>()
  private readonly fanOut: FanOut
  private readonly presence: Presence
  private readonly writes: WritePath
  /** Structure checks of updates (STRUCTURE_CHECK); null: off. */
  private readonly structure: StructureGuard | null
  private readonly sync: Sync
  private readonly syncPool: SyncPool
  private nextConnId = 1
  private keepaliveTimer: NodeJS.Timeout | undefined
  private draining = false

  constructor(opts: RuntimeOptions) {
    this.opts = opts
    this.nodeId = opts.nodeId
    this.trace = opts.trace ?? null
    this.originPrefix = `${opts.nodeId}~${Math.random().toString(36).slice(2, 8)}`
    const limits = (this.limits = { ...defaultLimits, ...opts.limits })
    const { redis, keys, streams, logger, metrics } = opts
    const reject = (conn: Connection, err: unknown) => this.reject(conn, err)
    this.structure = limits.structureCheck
      ? new StructureGuard({
          read: (doc) => readDocument(opts.storage, streams, doc),
          readTail: (doc, after) => streams.readTail(doc, after),
          isServed: (doc) => this.fanOut.subscribed(doc) !== undefined,
          metrics,
          logger,
          maxBytes: limits.structureCheckMaxBytes,
        })
      : null
    this.fanOut = new FanOut({
      redis,
      subscriber: opts.subscriber,
      keys,
      streams,
      logger,
      metrics,
      lingerMs: limits.docLingerMs,
      trace: this.trace,
      ...(this.structure ? { structure: this.structure } : {}),
    })
    this.presence = new Presence({
      redis,
      keys,
      store: opts.awareness,
      nodeId: opts.nodeId,
      logger,
      heartbeatMs: limits.heartbeatMs,
      nodeTimeoutMs: limits.nodeTimeoutMs,
      awarenessTimeoutMs: limits.awarenessTimeoutMs,
      docs: () => this.fanOut.docNames(),
      metrics,
      maxStateBytes: limits.awarenessMaxStateBytes,
      maxClientsPerConnection: limits.awarenessMaxClientsPerConnection,
    })
    this.writes = new WritePath({
      streams,
      metrics,
      maxInFlightUpdates: limits.maxInFlightUpdates,
      maxQueuedBytes: limits.maxQueuedBytes,
      lastSeenId: (doc) => this.fanOut.lastId(doc),
      guard: this.structure,
      reject,
      trace: this.trace,
    })
    this.syncPool = createSyncPool({
      threads: limits.syncThreads,
      threadAboveBytes: limits.syncThreadAboveBytes,
      idleMs: limits.syncThreadIdleMs,
    })
    this.sync = new Sync({
      storage: opts.storage,
      streams,
      pool: this.syncPool,
      metrics,
      baselineKeepMs: limits.baselineKeepMs,
      subscribed: (doc) => this.fanOut.subscribed(doc),
      delivered: (doc) => this.fanOut.lastId(doc),
      reject,
    })
  }

  get connectionCount(): number {
    return this.conns.size
  }

  /** Connections of `doc` on this node. */
  connectionsOf(doc: string): number {
    return this.fanOut.connectionCount(doc)
  }

  connections(): Iterable<Connection> {
    return this.conns
  }

  /** Reads the epoch, subscribes to Redis events, starts the heartbeat and keepalive loops. */
  async start(): Promise<void> {
    await this.fanOut.start()
    this.presence.start()
    const { keepaliveMs } = this.limits
    this.keepaliveTimer = setInterval(
      () => {
        const now = Date.now()
        for (const conn of this.conns) conn.sendKeepaliveIfQuiet(now, keepaliveMs)
      },
      Math.max(250, Math.floor(keepaliveMs / 3)),
    )
    this.keepaliveTimer.unref()
  }

  /** A socket opened for `doc` with the access `grant` gives. */
  open(socket: SocketLike, doc: string, grant: Grant): Connection {
    const conn = new Connection({
      id: this.nextConnId++,
      originPrefix: this.originPrefix,
      doc,
      grant,
      socket,
      logger: this.opts.logger,
      maxBufferedEntries: this.limits.maxBufferedEntries,
      maxBufferedBytes: this.limits.maxBufferedBytes,
      onServerClose: (code) => this.opts.metrics.closes.inc({ code: String(code) }),
    })
    if (this.draining) {
      // Not registered: the socket's close event may come before the caller holds `conn`.
      conn.close(CloseCode.goingAway, 'server shutting down')
      conn.markClosed()
      return conn
    }
    this.conns.add(conn)
    this.opts.metrics.connections.set(this.conns.size)
    this.fanOut.join(conn).catch((err: unknown) => this.reject(conn, err))
    this.presence.sendSnapshot(conn)
    return conn
  }

  /** The socket closed (by either side). */
  closed(conn: Connection): void {
    if (conn.closed) return
    conn.markClosed()
    this.writes.flush(conn)
    this.conns.delete(conn)
    this.fanOut.leave(conn)
    this.opts.metrics.connections.set(this.conns.size)
    this.presence.left(conn)
  }

  /** One WebSocket frame from `conn`. `frame` must stay valid after the call returns. */
  message(conn: Connection, frame: Uint8Array): void {
    if (conn.closed) return
    try {
      this.dispatch(conn, decodeMessage(frame))
    } catch (err) {
      this.reject(conn, err)
    }
  }

  private dispatch(conn: Connection, msg: ClientMessage): void {
    switch (msg.kind) {
      case 'sync-step1':
        return this.sync.request(conn, msg.stateVector)
      case 'sync-step2':
        return this.writes.step2(conn, msg.update)
      case 'sync-update':
        return this.writes.update(conn, msg.update)
      case 'awareness':
        return this.presence.receive(conn, msg.update)
      case 'query-awareness':
        return this.presence.sendSnapshot(conn)
      case 'auth':
        // Only servers send auth messages; a client sending one changes nothing.
        return
    }
  }

  /**
   * A Hocuspocus stateless message from `conn`, published on the document's channel: every node
   * serving the document (this one too) hands it to the document's other sockets (FanOut).
   * Ephemeral like awareness: a failed publish is logged, not retried. Held to the awareness
   * state limit (AWARENESS_MAX_STATE_BYTES): a larger one closes the socket with 4413, as an
   * oversized awareness state does, rather than be copied to every node.
   */
  relayStateless(conn: Connection, payload: Uint8Array): void {
    if (conn.closed) return
    if (payload.length > this.limits.awarenessMaxStateBytes) {
      this.reject(
        conn,
        new AppError(
          'TOO_LARGE',
          `stateless message of ${payload.length} bytes is above AWARENESS_MAX_STATE_BYTES (${this.limits.awarenessMaxStateBytes})`,
        ),
      )
      return
    }
    const { redis, keys, logger } = this.opts
    redis
      .spublish(keys.channel(conn.doc), encodeStatelessMessage(conn.origin, payload))
      .catch((err: unknown) => logger.warn({ err, doc: conn.doc }, 'stateless relay failed'))
  }

  /** Closes `conn` with the close code of `err` (the single error translation for sockets). */
  reject(conn: Connection, err: unknown): void {
    const d = describeError(err)
    if (d.closeCode >= 4500 && d.closeCode < 4600) {
      // The client reconnects and its sync step 2 brings these again, without depending on an
      // append that just failed (and without merging a huge backlog on this event loop).
      conn.writes.takeQueued()
    }
    this.opts.metrics.errors.inc({ code: d.code })
    const log = this.opts.logger
    if (d.code === 'INTERNAL') log.error({ err, doc: conn.doc, conn: conn.id }, 'internal error')
    else
      log.info(
        { code: d.code, reason: d.message, doc: conn.doc, conn: conn.id },
        'closing connection',
      )
    conn.close(d.closeCode, d.message)
  }

  /** The document as one read (HTTP API). */
  readState(doc: string): Promise<DocumentRead> {
    return readDocument(this.opts.storage, this.opts.streams, doc)
  }

  /** The document as it was at `atMs` (history API); NOT_FOUND before it existed. */
  readAt(doc: string, atMs: number): Promise<DocumentAt> {
    return documentAt(this.opts, doc, atMs)
  }

  /** The versions of the document an application can show (history API). */
  history(doc: string, opts: { bucketMs?: number; limit?: number }): Promise<HistoryListing> {
    return historyOf(this.opts, doc, opts)
  }

  /**
   * Makes the document look as it was at `atMs` with a forward update through the write path:
   * connected clients converge to it, and the edits it undoes stay in the history.
   */
  restore(doc: string, atMs: number): Promise<RestoreResult> {
    return restoreDocument(this.opts, doc, atMs, `${this.originPrefix}/restore`)
  }

  /**
   * Deletes the document everywhere (DELETE /docs/<name>): its Redis state first, which closes its
   * sockets on every node (4405) so no client writes the old content back, then its storage
   * (state, history, checkpoints), then the clock map a seed may have read from that storage
   * meanwhile. A client that connects afterwards starts a new, empty document of that name.
   * Returns whether there was anything to delete.
   */
  async deleteDocument(doc: string): Promise<{ existed: boolean; deletedAt: number }> {
    const { redis, keys, storage } = this.opts
    if (this.opts.announceDelete) {
      const exists =
        (await storage.watermark(doc)) !== null || (await redis.exists(keys.stream(doc))) === 1
      if (exists) await this.opts.announceDelete(doc)
    }
    const state = await deleteDocumentState(redis, keys, doc, `${this.originPrefix}/delete`)
    const stored = (await storage.watermark(doc)) !== null
    await storage.delete(doc)
    await dropClocks(redis, keys, doc)
    this.opts.logger.info({ doc, stored, inRedis: state.existed }, 'document deleted')
    return { existed: state.existed || stored, deletedAt: state.deletedAt }
  }

  /** Appends an update received over HTTP; throws BAD_MESSAGE or REDIS_UNAVAILABLE. */
  async appendUpdate(doc: string, update: Uint8Array): Promise<AppendResult | null> {
    const floor = (await this.opts.storage.watermark(doc)) ?? ZERO_ID
    return this.writes.appendUnattached(doc, update, `${this.originPrefix}/http`, floor)
  }

  /**
   * Closes every connection with 1001 (y-websocket clients reconnect, through the load balancer to
   * another node), spread evenly over `drainMs` so the other nodes take the joins a few at a time
   * rather than all at once. New sockets are refused meanwhile.
   */
  private async drain(drainMs: number): Promise<void> {
    const conns = [...this.conns]
    if (conns.length === 0) return
    const stepMs = drainMs / conns.length
    const started = performance.now()
    for (let i = 0; i < conns.length; i++) {
      const waitMs = started + i * stepMs - performance.now()
      if (waitMs > 1) await sleep(waitMs)
      ;(conns[i] as Connection).close(CloseCode.goingAway, 'server shutting down')
    }
  }

  /**
   * Closes every connection (1001; spread over `drainMs`) and waits for the appends in flight.
   */
  async close(drainMs = 0): Promise<void> {
    this.draining = true
    await this.drain(drainMs)
    await this.writes.settled()
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer)
    await this.presence.stop()
    await this.fanOut.close()
    await this.syncPool.close()
    this.structure?.close()
    await this.trace?.close()
  }
}
