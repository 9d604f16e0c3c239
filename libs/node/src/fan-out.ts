import { CloseCode, type Logger } from '@streambed/common'
import { encodeAwarenessMessage, encodeSyncUpdate } from '@streambed/protocol'
import {
  type DocStreams,
  type Keys,
  type Redis,
  type StreamEntry,
  type StreamId,
  ZERO_ID,
  compareIds,
  decodeChannelMessage,
  hasHoleAfter,
  isCluster,
  readEpoch,
  redisError,
} from '@streambed/streams'
import type { Connection } from './connection.js'
import type { HopTrace } from './hop-trace.js'
import type { NodeMetrics } from './metrics.js'

/**
 * A document this node serves: its connections, one sharded pub/sub subscription, and `lastId`,
 * the last stream entry delivered to the connections here.
 */
interface LiveDoc {
  readonly name: string
  readonly conns: Set<Connection>
  lastId: StreamId
  /** Resolves once subscribed and `lastId` is initialised; rejects if Redis failed. */
  readonly ready: Promise<void>
  /** Serialises doorbell handling and gap fills, so entries are delivered once and in order. */
  chain: Promise<void>
  /** Tasks on `chain` not finished yet (the subscription counts as one until it settles). */
  queued: number
  lingerTimer: NodeJS.Timeout | undefined
  retryTimer: NodeJS.Timeout | undefined
}

export interface FanOutOptions {
  /** Command connection. */
  redis: Redis
  /** Dedicated connection for sharded pub/sub. */
  subscriber: Redis
  keys: Keys
  streams: DocStreams
  logger: Logger
  metrics: NodeMetrics
  /** Keep an empty document subscribed this long, so reconnects do not churn subscriptions. */
  lingerMs: number
  /** Delay before retrying a delivery that failed (Redis away); default 500 ms. */
  retryMs?: number
  /** Hop timestamps (TRACE_HOPS); null: off. */
  trace?: HopTrace | null
  /**
   * Told of every entry delivered here, and of documents whose delivered entries no longer
   * describe them (dropped, or Redis lost entries): the structure check's cache (StructureGuard).
   */
  structure?: {
    delivered(doc: string, entries: readonly StreamEntry[]): void
    forget(doc: string): void
  }
}

/** After the subscriber reconnects, catch up again this much later (resubscription may lag). */
const CATCH_UP_AGAIN_MS = [1000, 5000, 15_000]

/**
 * Delivery of a document's entries and awareness to the connections on this node: the only owner
 * of subscriptions, doorbells, gap fills and the epoch check.
 *
 * Lua scripts ring a doorbell on the document's channel with every append, carrying the entry id,
 * the id before it and (when small) the update. If `prev` equals `lastId` the update is delivered
 * straight away; otherwise the gap is filled with one XRANGE after `lastId`. So each delivery
 * costs O(1) Redis work per interested node, however many documents the node serves. Entries
 * trimmed before this node delivered them, and a Redis that lost its data (the epoch changed),
 * close the affected connections with 4509: the clients resync from storage.
 */
export class FanOut {
  private readonly docs = new Map<string, LiveDoc>()
  private readonly opts: FanOutOptions
  private epoch: string | undefined
  private subscriberConnectedOnce = false
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- event listener signatures vary
  private readonly listeners: [Redis, string, (...args: any[]) => void][] = []

  constructor(opts: FanOutOptions) {
    this.opts = opts
  }

  /** Reads the epoch and starts listening to the subscriber. */
  async start(): Promise<void> {
    const { subscriber, redis, keys } = this.opts
    this.epoch = await readEpoch(redis, keys)
    this.on(subscriber, 'smessageBuffer', (channel: Buffer, message: Buffer) =>
      this.onChannelMessage(channel, message),
    )
    this.on(subscriber, 'ready', () => {
      if (this.subscriberConnectedOnce) {
        // Doorbells rung while the subscriber was away are lost: read what we missed.
        this.opts.logger.info('pub/sub reconnected; catching up on every open document')
        this.catchUpAll()
        for (const ms of CATCH_UP_AGAIN_MS) setTimeout(() => this.catchUpAll(), ms).unref()
      }
      this.subscriberConnectedOnce = true
    })
    if (subscriber.status === 'ready') this.subscriberConnectedOnce = true
    if (isCluster(subscriber)) {
      // A failover or a slot move gives a shard a new subscriber: doorbells rung in between are
      // lost; catch up when subscribers change (a later doorbell's gap fill would, too).
      const catchUp = () => {
        this.catchUpAll()
        for (const ms of CATCH_UP_AGAIN_MS) setTimeout(() => this.catchUpAll(), ms).unref()
      }
      for (const event of ['+subscriber', 'subscribersReady', '-node'])
        this.on(subscriber, event, catchUp)
    }
    this.on(redis, 'ready', () => void this.checkEpoch())
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- event listener signatures vary
  private on(emitter: Redis, event: string, fn: (...args: any[]) => void): void {
    emitter.on(event, fn)
    this.listeners.push([emitter, event, fn])
  }

  /** Names of the documents served here. */
  docNames(): string[] {
    return [...this.docs.keys()]
  }

  /** The last entry id delivered here for `doc` (`0-0` when not served). */
  lastId(doc: string): StreamId {
    return this.docs.get(doc)?.lastId ?? ZERO_ID
  }

  /**
   * Adds `conn` to its document, subscribing first if needed. Resolves once the document is
   * subscribed (entries appended after that reach the connection); rejects if Redis failed.
   */
  join(conn: Connection): Promise<void> {
    let doc = this.docs.get(conn.doc)
    if (!doc) {
      doc = this.open(conn.doc)
    } else if (doc.lingerTimer) {
      clearTimeout(doc.lingerTimer)
      doc.lingerTimer = undefined
    }
    doc.conns.add(conn)
    return doc.ready
  }

  /** Connections of `doc` on this node. */
  connectionCount(doc: string): number {
    return this.docs.get(doc)?.conns.size ?? 0
  }

  /** The subscription of `doc` (see `join`), or undefined when `doc` is not served here. */
  subscribed(doc: string): Promise<void> | undefined {
    return this.docs.get(doc)?.ready
  }

  leave(conn: Connection): void {
    const doc = this.docs.get(conn.doc)
    if (!doc?.conns.delete(conn) || doc.conns.size > 0) return
    doc.lingerTimer = setTimeout(() => {
      if (doc.conns.size === 0 && this.docs.get(doc.name) === doc) void this.drop(doc)
    }, this.opts.lingerMs)
    doc.lingerTimer.unref()
  }

  private open(name: string): LiveDoc {
    const { subscriber, keys } = this.opts
    let lastId: StreamId = ZERO_ID
    const ready = (async () => {
      try {
        await subscriber.ssubscribe(keys.channel(name))
        // What readers may see (with REDIS_WAIT_REPLICAS, entries still waiting for replicas come
        // later with their doorbell, or a confirmation's).
        lastId = await this.opts.streams.lastVisible(name)
      } catch (err) {
        // ioredis would resubscribe a channel it once subscribed after every reconnect.
        subscriber.sunsubscribe(keys.channel(name)).catch(() => undefined)
        throw redisError(err, `subscribe to ${name}`)
      }
    })()
    const doc: LiveDoc = {
      name,
      conns: new Set(),
      lastId,
      ready: ready.then(() => {
        doc.lastId = lastId
      }),
      chain: Promise.resolve(),
      queued: 1,
      lingerTimer: undefined,
      retryTimer: undefined,
    }
    doc.chain = doc.ready
      .catch(() => {
        // A document that failed to subscribe is dropped; its connections are closed by the runtime.
        if (this.docs.get(name) === doc) this.docs.delete(name)
      })
      .finally(() => doc.queued--)
    this.docs.set(name, doc)
    this.opts.metrics.docsOpen.set(this.docs.size)
    return doc
  }

  private async drop(doc: LiveDoc): Promise<void> {
    this.docs.delete(doc.name)
    this.opts.structure?.forget(doc.name)
    this.opts.metrics.docsOpen.set(this.docs.size)
    if (doc.retryTimer) clearTimeout(doc.retryTimer)
    try {
      await this.opts.subscriber.sunsubscribe(this.opts.keys.channel(doc.name))
    } catch (err) {
      this.opts.logger.warn({ err, doc: doc.name }, 'unsubscribe failed')
    }
  }

  private onChannelMessage(channel: Buffer, message: Buffer): void {
    const rung = this.opts.trace ? this.opts.trace.now() : 0
    const key = this.opts.keys.decode(channel.toString('utf8'))
    if (key?.kind !== 'c') return
    const doc = this.docs.get(key.doc)
    if (!doc) return
    const msg = decodeChannelMessage(message)
    if (!msg) {
      this.opts.logger.warn({ doc: key.doc }, 'undecodable channel message')
      return
    }
    if (msg.kind === 'deleted') {
      // The document was deleted (DELETE /docs/<name>): its clients must not write it back.
      this.opts.logger.info({ doc: key.doc, by: msg.origin }, 'document deleted; closing sockets')
      for (const conn of doc.conns) conn.close(CloseCode.documentDeleted, 'document deleted')
      return
    }
    if (msg.kind === 'awareness') {
      // Relayed to every connection including the sender, as the reference y-websocket server
      // does: a client's own renewals keep its "no message received" watchdog quiet.
      const out = [encodeAwarenessMessage(msg.update)]
      for (const conn of doc.conns) conn.send(out)
      this.opts.metrics.messagesSent.inc({ type: 'awareness' }, doc.conns.size)
      return
    }
    if (msg.kind === 'stateless') {
      // Hocuspocus stateless messages: to every other socket of the document (y-websocket
      // connections have no such message and skip it), never back to the sender.
      let sent = 0
      for (const conn of doc.conns)
        if (conn.origin !== msg.origin && conn.sendStateless(msg.payload)) sent++
      this.opts.metrics.messagesSent.inc({ type: 'stateless' }, sent)
      return
    }
    if (doc.queued === 0 && msg.update && msg.prev === doc.lastId) {
      // The next entry, inline, and nothing queued before it: delivered now rather than on the
      // chain (a promise hop later). Its id is above `prev`, so above `lastId`.
      try {
        this.deliver(doc, [{ id: msg.id, update: msg.update, origin: msg.origin }], rung)
      } catch (err) {
        this.failed(doc, err)
      }
      return
    }
    this.enqueue(doc, async () => {
      if (compareIds(msg.id, doc.lastId) <= 0) return
      // The entry before this one is older than one delivered here: entries this node delivered
      // are gone.
      if (compareIds(msg.prev, doc.lastId) < 0) this.lostDelivered(doc, msg.prev)
      if (msg.update && msg.prev === doc.lastId) {
        this.deliver(doc, [{ id: msg.id, update: msg.update, origin: msg.origin }], rung)
        return
      }
      this.opts.metrics.gapFills.inc()
      await this.fill(doc, rung)
    })
  }

  /** Re-reads every document's tail after `lastId`, e.g. after the subscriber reconnected. */
  catchUpAll(): void {
    for (const doc of this.docs.values()) this.enqueue(doc, () => this.fill(doc))
  }

  private enqueue(doc: LiveDoc, task: () => Promise<void>): void {
    doc.queued++
    doc.chain = doc.chain
      .then(task)
      .catch((err: unknown) => this.failed(doc, err))
      .finally(() => doc.queued--)
  }

  /** A delivery failed (Redis failed mid-fill): try again shortly; its doorbell may be lost. */
  private failed(doc: LiveDoc, err: unknown): void {
    this.opts.logger.warn({ err, doc: doc.name }, 'delivery failed; retrying')
    if (!doc.retryTimer) {
      doc.retryTimer = setTimeout(() => {
        doc.retryTimer = undefined
        if (this.docs.get(doc.name) === doc) this.enqueue(doc, () => this.fill(doc))
      }, this.opts.retryMs ?? 500)
      doc.retryTimer.unref()
    }
  }

  /** `rung`: when the doorbell that asked for this fill arrived (hop trace; 0: none). */
  private async fill(doc: LiveDoc, rung = 0): Promise<void> {
    const tail = await this.opts.streams.readTail(doc.name, doc.lastId)
    if (hasHoleAfter(doc.lastId, tail.trimmed)) {
      // Entries this node never delivered were compacted and trimmed meanwhile (the node lagged
      // longer than the minimum message lifetime). Clients must resync from storage.
      this.opts.logger.warn(
        { doc: doc.name, lastId: doc.lastId, trimmed: tail.trimmed },
        'stream gap; resyncing clients',
      )
      for (const conn of doc.conns) conn.close(CloseCode.resync, 'missed updates; resync')
      this.opts.structure?.forget(doc.name)
      doc.lastId = tail.last
      return
    }
    if (
      doc.lastId !== ZERO_ID &&
      compareIds(tail.trimmed, doc.lastId) < 0 &&
      (await this.opts.redis.xrange(this.opts.keys.stream(doc.name), doc.lastId, doc.lastId))
        .length === 0
    ) {
      // The last entry delivered here is gone though nothing was trimmed past it: Redis lost it
      // (a failover to a replica that had not received it). Its writer holds it: resync.
      this.lostDelivered(doc, tail.last)
      return
    }
    this.deliver(doc, tail.entries, rung)
  }

  /**
   * Entries delivered here are no longer in the stream (a failover to a replica that had not
   * received them, with asynchronous replication). Their writers and readers hold them: every
   * connection resyncs (4509), so the clients resend what the server lacks instead of writing on
   * above a gap in their clocks (refused with 4400). Delivery goes on after `last`.
   */
  private lostDelivered(doc: LiveDoc, last: StreamId): void {
    this.opts.logger.warn(
      { doc: doc.name, lastId: doc.lastId, now: last },
      'stream lost entries delivered here; resyncing clients',
    )
    for (const conn of doc.conns) conn.close(CloseCode.resync, 'server lost updates; resync')
    this.opts.structure?.forget(doc.name)
    doc.lastId = last
  }

  private deliver(doc: LiveDoc, entries: readonly StreamEntry[], rung = 0): void {
    const last = entries[entries.length - 1]
    if (!last) return
    const trace = this.opts.trace
    const read = trace ? trace.now() : 0
    doc.lastId = last.id
    const encoded = entries.map((e) => encodeSyncUpdate(e.update))
    for (const conn of doc.conns) conn.deliver(entries, encoded)
    // After the sockets: the structure check's copy is not on the delivery's path.
    this.opts.structure?.delivered(doc.name, entries)
    this.opts.metrics.messagesSent.inc({ type: 'update' }, entries.length * doc.conns.size)
    if (trace) {
      const sent = trace.now()
      for (const e of entries) trace.delivered(e.id, rung, read, sent)
    }
  }

  /**
   * Redis lost its data if the epoch changed (restart without persistence, FLUSHALL, failover to
   * an empty replica): every client must resend what it has, so every connection is closed 4509.
   */
  async checkEpoch(): Promise<void> {
    try {
      const epoch = await readEpoch(this.opts.redis, this.opts.keys)
      if (this.epoch !== undefined && epoch !== this.epoch) {
        this.opts.logger.error(
          { was: this.epoch, now: epoch },
          'Redis lost its data (epoch changed); resyncing every client',
        )
        for (const doc of this.docs.values()) {
          for (const conn of doc.conns) conn.close(CloseCode.resync, 'server state reset; resync')
          this.opts.structure?.forget(doc.name)
          doc.lastId = ZERO_ID
        }
      }
      this.epoch = epoch
    } catch (err) {
      this.opts.logger.warn({ err }, 'epoch check failed')
    }
  }

  /** Stops delivering: timers cleared, listeners removed, in-flight deliveries awaited. */
  async close(): Promise<void> {
    for (const [emitter, event, fn] of this.listeners) emitter.off(event, fn)
    const docs = [...this.docs.values()]
    for (const doc of docs) {
      if (doc.lingerTimer) clearTimeout(doc.lingerTimer)
      if (doc.retryTimer) clearTimeout(doc.retryTimer)
    }
    this.docs.clear()
    await Promise.allSettled(docs.map((d) => d.chain))
  }
}
