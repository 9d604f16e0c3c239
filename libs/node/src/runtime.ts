import * as Y from 'yjs'
import { AppError, CloseCode, describeError, type Logger } from '@streambed/common'
import {
  type ClientMessage,
  addsNothing,
  type SyncBaseline,
  decodeAwarenessUpdate,
  decodeMessage,
  encodeAwarenessMessage,
  encodePermissionDenied,
  encodeSyncStep1,
  encodeSyncStep2,
  isEmptyUpdate,
  removalEntry,
  validateUpdate,
} from '@streambed/protocol'
import type { DocStorage } from '@streambed/storage'
import {
  type AppendResult,
  type AwarenessStore,
  type StreamId,
  type DocStreams,
  type Keys,
  type Redis,
  ZERO_ID,
  compareIds,
  decodeChannelMessage,
  maxId,
  readEpoch,
} from '@streambed/streams'
import type { Grant } from './auth.js'
import { Connection, type SocketLike } from './connection.js'
import { LiveDocs } from './live-docs.js'
import type { NodeMetrics } from './metrics.js'
import { Presence } from './presence.js'
import { type DocRead, readDoc } from './read-path.js'
import { isEmptyStateVector } from './sync-compute.js'
import { createSyncPool, type SyncPool } from './sync-pool.js'

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
  /** Worker threads answering syncs of large documents (0: all on the event loop). */
  syncThreads: number
  /** Documents above this size are answered on a worker thread. */
  syncThreadAboveBytes: number
  /** A sync thread idle this long exits, returning the memory a large document's parse left. */
  syncThreadIdleMs: number
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
  syncThreads: 1,
  syncThreadAboveBytes: 256 * 1024,
  syncThreadIdleMs: 10_000,
}

interface SyncBatch {
  requests: {
    stateVector: Uint8Array
    resolve: (answer: {
      diff: Uint8Array
      stateVector: Uint8Array
      baseline: SyncBaseline | null
      upTo: StreamId
    }) => void
    reject: (err: unknown) => void
  }[]
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

/**
 * Everything a server node does, independent of the WebSocket library: connections, the write
 * path (validate, append), the read path (sync), live fan-out and awareness.
 */
export class NodeRuntime {
  readonly nodeId: string
  /**
   * Prefix of the origin written into stream entries: the node id plus a per-process token, so
   * that two processes misconfigured with one NODE_ID still never suppress each other's updates.
   */
  private readonly originPrefix: string
  private readonly opts: RuntimeOptions
  private readonly limits: RuntimeLimits
  private readonly log: Logger
  private readonly docs: LiveDocs
  private readonly presence: Presence
  private readonly conns = new Set<Connection>()
  /** Appends and awareness removals not yet answered by Redis; awaited on close. */
  private readonly pending = new Set<Promise<unknown>>()
  /** Sync step 1s per document waiting for a shared read (see joinBatch). */
  private readonly batches = new Map<string, SyncBatch>()
  private readonly syncPool: SyncPool
  private nextConnId = 1
  private keepaliveTimer: NodeJS.Timeout | undefined
  private epoch: string | undefined
  private draining = false
  private subscriberConnectedOnce = false
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- event listener signatures vary
  private readonly listeners: [Redis, string, (...args: any[]) => void][] = []

  constructor(opts: RuntimeOptions) {
    this.opts = opts
    this.nodeId = opts.nodeId
    this.originPrefix = `${opts.nodeId}~${Math.random().toString(36).slice(2, 8)}`
    this.limits = { ...defaultLimits, ...opts.limits }
    this.syncPool = createSyncPool({
      threads: this.limits.syncThreads,
      threadAboveBytes: this.limits.syncThreadAboveBytes,
      idleMs: this.limits.syncThreadIdleMs,
    })
    this.log = opts.logger
    this.docs = new LiveDocs({
      redis: opts.redis,
      subscriber: opts.subscriber,
      keys: opts.keys,
      streams: opts.streams,
      logger: opts.logger,
      metrics: opts.metrics,
      lingerMs: this.limits.docLingerMs,
    })
    this.presence = new Presence({
      redis: opts.redis,
      keys: opts.keys,
      store: opts.awareness,
      nodeId: opts.nodeId,
      logger: opts.logger,
      heartbeatMs: this.limits.heartbeatMs,
      nodeTimeoutMs: this.limits.nodeTimeoutMs,
      awarenessTimeoutMs: this.limits.awarenessTimeoutMs,
      docs: () => [...this.docs.all()].map((d) => d.name),
    })
  }

  get connectionCount(): number {
    return this.conns.size
  }

  get isDraining(): boolean {
    return this.draining
  }

  /** Subscribes to Redis events and starts the heartbeat and keepalive loops. */
  async start(): Promise<void> {
    const { subscriber, redis, keys } = this.opts
    this.epoch = await readEpoch(redis, keys)
    this.on(subscriber, 'smessageBuffer', (channel: Buffer, message: Buffer) =>
      this.onChannelMessage(channel, message),
    )
    this.on(subscriber, 'ready', () => {
      if (this.subscriberConnectedOnce) {
        // Doorbells rung while the subscriber was away are lost: read what we missed. Once more a
        // little later, in case a resubscription was still in flight during the first read.
        this.log.info('pub/sub reconnected; catching up on every open document')
        this.docs.catchUpAll()
        // ioredis resubscribes channel by channel; catch up again while that may still run.
        for (const ms of [1000, 5000, 15_000]) setTimeout(() => this.docs.catchUpAll(), ms).unref()
      }
      this.subscriberConnectedOnce = true
    })
    if (subscriber.status === 'ready') this.subscriberConnectedOnce = true
    this.on(redis, 'ready', () => void this.checkEpoch())
    this.presence.start()
    this.keepaliveTimer = setInterval(
      () => {
        const now = Date.now()
        for (const conn of this.conns) conn.sendKeepaliveIfQuiet(now, this.limits.keepaliveMs)
      },
      Math.max(250, Math.floor(this.limits.keepaliveMs / 3)),
    )
    this.keepaliveTimer.unref()
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- event listener signatures vary
  private on(emitter: Redis, event: string, fn: (...args: any[]) => void): void {
    emitter.on(event, fn)
    this.listeners.push([emitter, event, fn])
  }

  /** Redis lost its data if the epoch changed: every client must resend what it has. */
  private async checkEpoch(): Promise<void> {
    try {
      const epoch = await readEpoch(this.opts.redis, this.opts.keys)
      if (this.epoch !== undefined && epoch !== this.epoch) {
        this.log.error(
          { was: this.epoch, now: epoch },
          'Redis lost its data (epoch changed); resyncing every client',
        )
        for (const conn of this.conns) conn.close(CloseCode.resync, 'server state reset; resync')
        for (const doc of this.docs.all()) doc.lastId = ZERO_ID
      }
      this.epoch = epoch
    } catch (err) {
      this.log.warn({ err }, 'epoch check failed')
    }
  }

  private onChannelMessage(channel: Buffer, message: Buffer): void {
    const key = this.opts.keys.decode(channel.toString('utf8'))
    if (key?.kind !== 'c') return
    const msg = decodeChannelMessage(message)
    if (!msg) {
      this.log.warn({ doc: key.doc }, 'undecodable channel message')
      return
    }
    if (msg.kind === 'update') {
      this.docs.onBell(key.doc, msg)
      return
    }
    const doc = this.docs.get(key.doc)
    if (!doc) return
    // Relayed to every connection including the sender, as the reference y-websocket server does:
    // a client's own renewals keep its "no message received" watchdog quiet.
    const out = [encodeAwarenessMessage(msg.update)]
    for (const conn of doc.conns) conn.send(out)
    this.opts.metrics.messagesSent.inc({ type: 'awareness' }, doc.conns.size)
  }

  /** A socket opened for `doc` with the access `grant` gives. */
  open(socket: SocketLike, doc: string, grant: Grant): Connection {
    const conn = new Connection({
      id: this.nextConnId++,
      originPrefix: this.originPrefix,
      doc,
      grant,
      socket,
      logger: this.log,
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
    const live = this.docs.join(conn)
    live.ready.catch((err: unknown) => this.reject(conn, err))
    this.sendAwarenessSnapshot(conn)
    return conn
  }

  /** The socket closed (by either side). */
  closed(conn: Connection): void {
    if (conn.closed) return
    conn.markClosed()
    // Updates the client sent before it left are appended all the same.
    this.flushQueue(conn)
    this.conns.delete(conn)
    this.docs.leave(conn)
    this.opts.metrics.connections.set(this.conns.size)
    if (conn.awarenessClients.size > 0) {
      const entries = [...conn.awarenessClients].map(([client, clock]) =>
        removalEntry(client, clock),
      )
      this.track(
        this.opts.awareness
          .publish(conn.doc, conn.origin, entries)
          .catch((err: unknown) =>
            this.log.warn({ err, doc: conn.doc }, 'could not announce awareness removal'),
          ),
      )
    }
  }

  /** One WebSocket frame from `conn`. `frame` must stay valid after the call returns. */
  message(conn: Connection, frame: Uint8Array): void {
    if (conn.closed) return
    let msg: ClientMessage
    try {
      msg = decodeMessage(frame)
    } catch (err) {
      this.reject(conn, err)
      return
    }
    switch (msg.kind) {
      case 'sync-step1': {
        const sv = msg.stateVector
        this.requestSync(conn, sv)
        break
      }
      case 'sync-step2':
        this.update(conn, msg.update, true)
        break
      case 'sync-update':
        this.update(conn, msg.update, false)
        break
      case 'awareness':
        this.awareness(conn, msg.update)
        break
      case 'query-awareness':
        this.sendAwarenessSnapshot(conn)
        break
      case 'auth':
        // Only servers send auth messages; a client sending one changes nothing.
        break
    }
  }

  /** Closes `conn` with the close code of `err` (the single error translation for sockets). */
  reject(conn: Connection, err: unknown): void {
    const d = describeError(err)
    if (d.closeCode >= 4500 && d.closeCode < 4600) {
      // The client reconnects and its sync step 2 brings these again, without depending on an
      // append that just failed (and without merging a huge backlog on this event loop).
      conn.queued = []
      conn.queuedBytes = 0
    }
    this.opts.metrics.errors.inc({ code: d.code })
    if (d.code === 'INTERNAL')
      this.log.error({ err, doc: conn.doc, conn: conn.id }, 'internal error')
    else
      this.log.info(
        { code: d.code, reason: d.message, doc: conn.doc, conn: conn.id },
        'closing connection',
      )
    conn.close(d.closeCode, d.message)
  }

  /**
   * Runs a sync for a client's step 1. Step 1s arriving while one runs are coalesced: only the
   * newest is answered afterwards, so a client cannot queue up any number of document reads.
   */
  private requestSync(conn: Connection, stateVector: Uint8Array): void {
    if (conn.syncing) {
      conn.nextStateVector = stateVector
      return
    }
    conn.syncing = true
    void this.sync(conn, stateVector).finally(() => {
      conn.syncing = false
      const next = conn.nextStateVector
      conn.nextStateVector = null
      if (next && !conn.closed) this.requestSync(conn, next)
    })
  }

  private async sync(conn: Connection, clientStateVector: Uint8Array): Promise<void> {
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
      const doc = this.docs.get(conn.doc)
      if (!doc) return
      await doc.ready
      // Buffering starts before the (possibly shared) read starts: see joinBatch.
      conn.beginSync()
      const answer = await this.joinBatch(conn.doc, clientStateVector)
      if (conn.closed) return
      // Our step 1 first, as the reference server does: a client with no content answers it with
      // an empty step 2 before it applies ours, so only clients that had content need a baseline.
      conn.send([encodeSyncStep1(answer.stateVector), step2Message(answer.diff)])
      conn.finishSync(answer.upTo, (id, ref) => compareIds(id, ref) > 0)
      conn.syncedUpTo = maxId(conn.syncedUpTo, answer.upTo)
      if (answer.baseline) conn.setBaseline(answer.baseline, this.limits.baselineKeepMs)
      this.opts.metrics.syncSeconds.observe((performance.now() - started) / 1000)
      this.opts.metrics.syncBytes.inc(answer.diff.length)
    } catch (err) {
      this.reject(conn, err)
    }
  }

  /**
   * Answers a client's sync step 1 from a document read shared with every other step 1 for the
   * same document that arrives before the read starts (a burst of joins, a reconnect storm): one
   * storage load, one stream read, one state vector and one diff per distinct client state vector,
   * computed on a worker thread for large documents. Only requests made before the read starts
   * join it — their connections were already buffering live entries — so nothing falls between
   * the read and live delivery.
   */
  private joinBatch(
    doc: string,
    clientStateVector: Uint8Array,
  ): Promise<{
    diff: Uint8Array
    stateVector: Uint8Array
    baseline: SyncBaseline | null
    upTo: StreamId
  }> {
    let batch = this.batches.get(doc)
    if (!batch) {
      const created: SyncBatch = { requests: [] }
      batch = created
      this.batches.set(doc, created)
      setImmediate(() => void this.runBatch(doc, created))
    }
    const requests = batch.requests
    return new Promise((resolve, reject) =>
      requests.push({ stateVector: clientStateVector, resolve, reject }),
    )
  }

  private async runBatch(doc: string, batch: SyncBatch): Promise<void> {
    this.batches.delete(doc)
    try {
      const read = await readDoc(this.opts.storage, this.opts.streams, doc)
      this.opts.metrics.syncReads.inc()
      const distinct = new Map<string, Uint8Array>()
      for (const r of batch.requests)
        distinct.set(Buffer.from(r.stateVector).toString('latin1'), r.stateVector)
      const svs = [...distinct.values()]
      // A client with no content cannot send back anything redundant: no baseline for it.
      const baseline = svs.some((sv) => !isEmptyStateVector(sv))
      const answer = await this.syncPool.compute({
        parts: read.parts,
        clientStateVectors: svs,
        baseline,
      })
      const diffs = new Map([...distinct.keys()].map((k, i) => [k, answer.diffs[i] as Uint8Array]))
      for (const r of batch.requests) {
        const diff = diffs.get(Buffer.from(r.stateVector).toString('latin1')) as Uint8Array
        r.resolve({
          diff,
          stateVector: answer.stateVector,
          baseline: isEmptyStateVector(r.stateVector) ? null : answer.baseline,
          upTo: read.upTo,
        })
      }
    } catch (err) {
      for (const r of batch.requests) r.reject(err)
    }
  }

  private update(conn: Connection, update: Uint8Array, isStep2: boolean): void {
    try {
      validateUpdate(update)
    } catch (err) {
      this.reject(conn, err)
      return
    }
    if (isStep2 && conn.baseline) {
      const baseline = conn.baseline
      conn.clearBaseline()
      if (addsNothing(update, baseline)) {
        this.opts.metrics.redundantUpdates.inc()
        return
      }
    }
    if (isEmptyUpdate(update)) return
    if (conn.grant.access !== 'write') {
      // Not an error for the connection (reads go on), but never silent: tell the client once.
      if (!conn.deniedWriteNotified) {
        conn.deniedWriteNotified = true
        conn.send([encodePermissionDenied('read-only access: updates are not stored')])
      }
      return
    }
    this.write(conn, update)
  }

  /**
   * Appends `update` for `conn`. Past `maxInFlightUpdates` unanswered appends, updates wait in the
   * connection's queue and are merged into one entry when a slot frees: a burst costs few appends
   * and never reorders nothing the client relies on (Yjs updates commute).
   */
  private write(conn: Connection, update: Uint8Array): void {
    if (conn.inFlight < this.limits.maxInFlightUpdates) {
      this.startAppend(conn, [update])
      return
    }
    conn.queued.push(update)
    conn.queuedBytes += update.length
    if (conn.queuedBytes > this.limits.maxQueuedBytes) {
      this.reject(
        conn,
        new AppError(
          'OVERLOADED',
          `more than ${this.limits.maxQueuedBytes} bytes of updates waiting for Redis`,
        ),
      )
    }
  }

  private startAppend(conn: Connection, updates: readonly Uint8Array[]): void {
    let payload: Uint8Array
    try {
      payload =
        updates.length === 1 ? (updates[0] as Uint8Array) : Y.mergeUpdates(updates as Uint8Array[])
    } catch (err) {
      // Each update was validated; a merge failure is a bug. The client resyncs on reconnect.
      this.reject(conn, new AppError('INTERNAL', 'could not merge queued updates', { cause: err }))
      return
    }
    conn.inFlight++
    const started = performance.now()
    // New ids must stay above everything this node saw of the document (the Redis clock may be
    // behind the stored watermark after Redis lost the document's meta hash).
    const floor = maxId(conn.syncedUpTo, this.docs.get(conn.doc)?.lastId ?? ZERO_ID)
    this.track(
      this.opts.streams
        .append(conn.doc, payload, conn.origin, floor)
        .then(() => {
          this.opts.metrics.updatesAppended.inc(updates.length)
          this.opts.metrics.updateBytesAppended.inc(payload.length)
          this.opts.metrics.appendSeconds.observe((performance.now() - started) / 1000)
        })
        .catch((err: unknown) => this.reject(conn, err))
        .finally(() => {
          conn.inFlight--
          this.flushQueue(conn)
        }),
    )
  }

  /** Appends everything queued for `conn` as one entry; also after the client closed. */
  private flushQueue(conn: Connection): void {
    if (conn.queued.length === 0) return
    const batch = conn.queued
    conn.queued = []
    conn.queuedBytes = 0
    this.startAppend(conn, batch)
  }

  private track(promise: Promise<unknown>): void {
    this.pending.add(promise)
    void promise.finally(() => this.pending.delete(promise))
  }

  private awareness(conn: Connection, update: Uint8Array): void {
    if (conn.closed) return
    let entries
    try {
      entries = decodeAwarenessUpdate(update)
    } catch (err) {
      this.reject(conn, err)
      return
    }
    // Only entries Redis accepted as news belong to this connection (clients echo others' states).
    // Awareness is ephemeral: a failed relay is logged, and the client renews within 15 s.
    this.opts.awareness
      .publish(conn.doc, conn.origin, entries)
      .then((accepted) => {
        for (const e of accepted) {
          if (e.state === 'null') conn.awarenessClients.delete(e.clientId)
          else conn.awarenessClients.set(e.clientId, e.clock)
        }
        // The socket closed while this was in flight: its removal went out without these.
        const late = accepted
          .filter((e) => e.state !== 'null')
          .map((e) => removalEntry(e.clientId, e.clock))
        if (conn.closed && late.length > 0)
          return this.opts.awareness.publish(conn.doc, conn.origin, late)
      })
      .catch((err: unknown) => this.log.warn({ err, doc: conn.doc }, 'awareness relay failed'))
  }

  private sendAwarenessSnapshot(conn: Connection): void {
    this.presence
      .snapshot(conn.doc)
      .then((update) => {
        if (update) conn.send([encodeAwarenessMessage(update)])
      })
      .catch((err: unknown) => this.log.warn({ err, doc: conn.doc }, 'awareness snapshot failed'))
  }

  /** The document as one update (HTTP API). */
  readState(doc: string): Promise<DocRead> {
    return readDoc(this.opts.storage, this.opts.streams, doc)
  }

  /** Appends an update received over HTTP; throws BAD_MESSAGE or REDIS_UNAVAILABLE. */
  async appendUpdate(doc: string, update: Uint8Array): Promise<AppendResult | null> {
    validateUpdate(update)
    if (isEmptyUpdate(update)) return null
    const floor = (await this.opts.storage.watermark(doc)) ?? ZERO_ID
    const result = await this.opts.streams.append(doc, update, `${this.originPrefix}/http`, floor)
    this.opts.metrics.updatesAppended.inc()
    this.opts.metrics.updateBytesAppended.inc(update.length)
    return result
  }

  /** Closes every connection (1001, clients reconnect elsewhere) and waits for pending appends. */
  async close(): Promise<void> {
    this.draining = true
    for (const conn of [...this.conns]) conn.close(CloseCode.goingAway, 'server shutting down')
    await Promise.allSettled([...this.pending])
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer)
    await this.presence.stop()
    await this.docs.closeAll()
    await this.syncPool.close()
    for (const [emitter, event, fn] of this.listeners) emitter.off(event, fn)
  }
}
