import { AppError, runLoop, type Logger, type Loop } from '@streambed/common'
import {
  decodeAwarenessUpdate,
  encodeAwarenessMessage,
  encodeAwarenessUpdate,
  removalEntry,
} from '@streambed/protocol'
import {
  type AwarenessSender,
  type AwarenessStore,
  type Keys,
  type Redis,
  heartbeat,
} from '@streambed/streams'
import type { Connection } from './connection.js'
import type { NodeMetrics } from './metrics.js'

export interface PresenceOptions {
  redis: Redis
  keys: Keys
  store: AwarenessStore
  nodeId: string
  logger: Logger
  heartbeatMs: number
  /** A node silent for this long is dead: its clients' awareness states are removed. */
  nodeTimeoutMs: number
  /** States not renewed for this long are ignored and removed (y-protocols uses 30 s). */
  awarenessTimeoutMs: number
  /** Names of the documents this node serves. */
  docs: () => Iterable<string>
  metrics: NodeMetrics
  /** Largest awareness state (JSON) one client may announce; larger closes the socket (4413). */
  maxStateBytes: number
  /** Client ids one connection may own at once; more are refused and counted. */
  maxClientsPerConnection: number
}

/**
 * Awareness (presence) of the clients on this node, cluster-wide: what a connection announces is
 * stored and relayed to every node (awareness-set-1.lua; the relay reaches sockets through
 * FanOut), a joiner gets a snapshot of the current states, a closing connection's states are
 * removed. A heartbeat in the node registry lets every node remove the states of a node that died.
 * Awareness is ephemeral: a failed relay is logged, and clients renew within 15 s.
 */
export class Presence {
  /** Nodes the registry reports silent for longer than `nodeTimeoutMs`, as of the last heartbeat. */
  private dead: ReadonlySet<string> = new Set()
  private clockOffsetMs = 0
  private readonly swept = new Set<string>()
  private lastFullSweep = 0
  private loop: Loop | undefined
  /** Removals not yet answered by Redis; awaited before the node closes. */
  private readonly pending = new Set<Promise<unknown>>()
  private readonly opts: PresenceOptions

  constructor(opts: PresenceOptions) {
    this.opts = opts
  }

  start(): void {
    this.loop = runLoop(() => this.beat(), {
      name: 'heartbeat',
      logger: this.opts.logger,
      intervalMs: this.opts.heartbeatMs,
    })
  }

  /**
   * An awareness message from `conn`. Throws BAD_MESSAGE when it does not decode (the caller
   * closes the connection); the rest is asynchronous.
   */
  receive(conn: Connection, update: Uint8Array): void {
    const entries = decodeAwarenessUpdate(update)
    const { store, logger, metrics, maxStateBytes } = this.opts
    for (const e of entries) {
      if (Buffer.byteLength(e.state) > maxStateBytes)
        throw new AppError(
          'TOO_LARGE',
          `awareness state of client ${e.clientId} is ${Buffer.byteLength(e.state)} bytes, above AWARENESS_MAX_STATE_BYTES (${maxStateBytes})`,
        )
    }
    // Only entries Redis accepted as news from the id's owner belong to this connection.
    store
      .publish(conn.doc, this.sender(conn), entries)
      .then(({ accepted, spoofed, overLimit }) => {
        if (spoofed > 0) metrics.awarenessRefused.inc({ reason: 'not-owner' }, spoofed)
        if (overLimit > 0) metrics.awarenessRefused.inc({ reason: 'too-many-ids' }, overLimit)
        for (const e of accepted) {
          if (e.state === 'null') conn.awarenessClients.delete(e.clientId)
          else conn.awarenessClients.set(e.clientId, e.clock)
        }
        // The socket closed while this was in flight: its removal went out without these.
        const late = accepted
          .filter((e) => e.state !== 'null')
          .map((e) => removalEntry(e.clientId, e.clock))
        if (conn.closed && late.length > 0) return store.publish(conn.doc, this.sender(conn), late)
      })
      .catch((err: unknown) => logger.warn({ err, doc: conn.doc }, 'awareness relay failed'))
  }

  private sender(conn: Connection): AwarenessSender {
    return {
      origin: conn.origin,
      subjectTag: conn.subjectTag,
      mayTake: this.opts.maxClientsPerConnection - conn.awarenessClients.size,
    }
  }

  /** Sends `conn` every current state of its document (on open and on query-awareness). */
  sendSnapshot(conn: Connection): void {
    this.snapshot(conn.doc)
      .then((update) => {
        if (update) conn.send([encodeAwarenessMessage(update)])
      })
      .catch((err: unknown) =>
        this.opts.logger.warn({ err, doc: conn.doc }, 'awareness snapshot failed'),
      )
  }

  /** `conn` closed: its states are removed for everyone. */
  left(conn: Connection): void {
    if (conn.awarenessClients.size === 0) return
    const entries = [...conn.awarenessClients].map(([client, clock]) => removalEntry(client, clock))
    const removal = this.opts.store
      .publish(conn.doc, this.sender(conn), entries)
      .catch((err: unknown) =>
        this.opts.logger.warn({ err, doc: conn.doc }, 'could not announce awareness removal'),
      )
    this.pending.add(removal)
    void removal.finally(() => this.pending.delete(removal))
  }

  /** One heartbeat; exposed for tests. */
  async beat(): Promise<void> {
    const { redis, keys, nodeId, nodeTimeoutMs } = this.opts
    const forgetMs = Math.max(10 * nodeTimeoutMs, 600_000)
    const hb = await heartbeat(redis, keys, nodeId, nodeTimeoutMs, forgetMs)
    this.clockOffsetMs = hb.nowMs - Date.now()
    this.dead = hb.dead
    const newlyDead = [...hb.dead].filter((n) => !this.swept.has(n))
    const fullSweepDue = hb.nowMs - this.lastFullSweep >= this.opts.awarenessTimeoutMs
    if (newlyDead.length > 0 || fullSweepDue) {
      if (newlyDead.length > 0)
        this.opts.logger.info(
          { nodes: newlyDead },
          'server nodes died; removing their clients awareness',
        )
      await this.sweep(hb.dead)
      for (const n of newlyDead) this.swept.add(n)
      this.lastFullSweep = hb.nowMs
    }
    for (const n of this.swept) if (!hb.dead.has(n)) this.swept.delete(n)
  }

  private async sweep(dead: ReadonlySet<string>): Promise<void> {
    const origin = `${this.opts.nodeId}/sweeper`
    for (const doc of [...this.opts.docs()]) {
      await this.opts.store.expire(doc, origin, this.opts.awarenessTimeoutMs, dead)
    }
  }

  /**
   * One awareness update with every current state of `doc`, or null: states renewed within
   * `awarenessTimeoutMs` whose node is not known to be dead. (A node that started after our last
   * heartbeat is unknown, not dead: its states count.)
   */
  async snapshot(doc: string): Promise<Uint8Array | null> {
    const records = await this.opts.store.load(doc)
    const now = Date.now() + this.clockOffsetMs
    const current = records.filter(
      (r) =>
        r.state !== 'null' &&
        now - r.updatedAtMs <= this.opts.awarenessTimeoutMs &&
        !this.dead.has(r.nodeId),
    )
    return current.length === 0 ? null : encodeAwarenessUpdate(current)
  }

  /** Stops the heartbeat and waits for announced removals. */
  async stop(): Promise<void> {
    await this.loop?.stop()
    await Promise.allSettled([...this.pending])
  }
}
