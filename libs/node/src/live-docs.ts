import { CloseCode, type Logger } from '@streambed/common'
import { encodeSyncUpdate } from '@streambed/protocol'
import {
  type DocStreams,
  type Keys,
  type Redis,
  type StreamEntry,
  type StreamId,
  ZERO_ID,
  compareIds,
  hasHoleAfter,
  redisError,
} from '@streambed/streams'
import type { Connection } from './connection.js'
import type { NodeMetrics } from './metrics.js'

/**
 * The documents this node serves. Per document: the set of connections, one sharded pub/sub
 * subscription, and `lastId`, the last stream entry delivered to the connections here.
 *
 * Delivery: Lua scripts ring a doorbell on the document's channel with every append, carrying the
 * entry id, the id before it and (when small) the update. If `prev` equals `lastId` the update is
 * delivered straight away; otherwise the gap is filled with one XRANGE after `lastId`. So each
 * delivery costs O(1) Redis work per interested node, however many documents the node serves.
 */
export interface LiveDoc {
  readonly name: string
  readonly conns: Set<Connection>
  lastId: StreamId
  /** Resolves once subscribed and `lastId` is initialised; rejects if Redis failed. */
  readonly ready: Promise<void>
  /** Serialises doorbell handling and gap fills, so entries are delivered once and in order. */
  chain: Promise<void>
  lingerTimer: NodeJS.Timeout | undefined
  retryTimer: NodeJS.Timeout | undefined
}

export interface LiveDocsOptions {
  redis: Redis
  subscriber: Redis
  keys: Keys
  streams: DocStreams
  logger: Logger
  metrics: NodeMetrics
  /** Keep an empty document subscribed this long, so reconnects do not churn subscriptions. */
  lingerMs: number
}

export type UpdateBell = { id: StreamId; prev: StreamId; origin: string; update: Uint8Array | null }

export class LiveDocs {
  private readonly docs = new Map<string, LiveDoc>()
  private readonly opts: LiveDocsOptions

  constructor(opts: LiveDocsOptions) {
    this.opts = opts
  }

  get size(): number {
    return this.docs.size
  }

  get(name: string): LiveDoc | undefined {
    return this.docs.get(name)
  }

  all(): IterableIterator<LiveDoc> {
    return this.docs.values()
  }

  /** Adds `conn` to its document, subscribing to the document first if needed. */
  join(conn: Connection): LiveDoc {
    let doc = this.docs.get(conn.doc)
    if (!doc) {
      doc = this.open(conn.doc)
    } else if (doc.lingerTimer) {
      clearTimeout(doc.lingerTimer)
      doc.lingerTimer = undefined
    }
    doc.conns.add(conn)
    return doc
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
    const { subscriber, redis, keys } = this.opts
    let lastId: StreamId = ZERO_ID
    const ready = (async () => {
      try {
        await subscriber.ssubscribe(keys.channel(name))
        lastId = (await redis.hget(keys.meta(name), 'last')) ?? ZERO_ID
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
      lingerTimer: undefined,
      retryTimer: undefined,
    }
    doc.chain = doc.ready.catch(() => {
      // A document that failed to subscribe is dropped; its connections are closed by the runtime.
      if (this.docs.get(name) === doc) this.docs.delete(name)
    })
    this.docs.set(name, doc)
    this.opts.metrics.docsOpen.set(this.docs.size)
    return doc
  }

  private async drop(doc: LiveDoc): Promise<void> {
    this.docs.delete(doc.name)
    this.opts.metrics.docsOpen.set(this.docs.size)
    if (doc.retryTimer) clearTimeout(doc.retryTimer)
    try {
      await this.opts.subscriber.sunsubscribe(this.opts.keys.channel(doc.name))
    } catch (err) {
      this.opts.logger.warn({ err, doc: doc.name }, 'unsubscribe failed')
    }
  }

  /** Handles a doorbell from the document's channel. */
  onBell(name: string, bell: UpdateBell): void {
    const doc = this.docs.get(name)
    if (!doc) return
    this.enqueue(doc, async () => {
      if (compareIds(bell.id, doc.lastId) <= 0) return
      if (bell.update && bell.prev === doc.lastId) {
        this.deliver(doc, [{ id: bell.id, update: bell.update, origin: bell.origin }])
        return
      }
      this.opts.metrics.gapFills.inc()
      await this.fill(doc)
    })
  }

  /** Re-reads every document's tail after `lastId`, e.g. after the subscriber reconnected. */
  catchUpAll(): void {
    for (const doc of this.docs.values()) this.enqueue(doc, () => this.fill(doc))
  }

  private enqueue(doc: LiveDoc, task: () => Promise<void>): void {
    doc.chain = doc.chain.then(task).catch((err: unknown) => {
      // Redis failed mid-fill: try again shortly; the doorbell that triggered it may be lost.
      this.opts.logger.warn({ err, doc: doc.name }, 'delivery failed; retrying')
      if (!doc.retryTimer) {
        doc.retryTimer = setTimeout(() => {
          doc.retryTimer = undefined
          if (this.docs.get(doc.name) === doc) this.enqueue(doc, () => this.fill(doc))
        }, 500)
        doc.retryTimer.unref()
      }
    })
  }

  private async fill(doc: LiveDoc): Promise<void> {
    const tail = await this.opts.streams.readTail(doc.name, doc.lastId)
    if (hasHoleAfter(doc.lastId, tail.trimmed)) {
      // Entries this node never delivered were compacted and trimmed meanwhile (the node lagged
      // longer than the minimum message lifetime). Clients must resync from storage.
      this.opts.logger.warn(
        { doc: doc.name, lastId: doc.lastId, trimmed: tail.trimmed },
        'stream gap; resyncing clients',
      )
      for (const conn of doc.conns) conn.close(CloseCode.resync, 'missed updates; resync')
      doc.lastId = tail.last
      return
    }
    this.deliver(doc, tail.entries)
  }

  private deliver(doc: LiveDoc, entries: readonly StreamEntry[]): void {
    const last = entries[entries.length - 1]
    if (!last) return
    doc.lastId = last.id
    const encoded = entries.map((e) => encodeSyncUpdate(e.update))
    for (const conn of doc.conns) conn.deliver(entries, encoded)
    this.opts.metrics.messagesSent.inc({ type: 'update' }, entries.length * doc.conns.size)
  }

  async closeAll(): Promise<void> {
    const docs = [...this.docs.values()]
    for (const doc of docs) {
      if (doc.lingerTimer) clearTimeout(doc.lingerTimer)
      if (doc.retryTimer) clearTimeout(doc.retryTimer)
    }
    this.docs.clear()
    await Promise.allSettled(docs.map((d) => d.chain))
  }
}
