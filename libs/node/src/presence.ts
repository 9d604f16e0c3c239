import { runLoop, type Logger, type Loop } from '@streambed/common'
import { encodeAwarenessUpdate } from '@streambed/protocol'
import { type AwarenessStore, type Keys, type Redis, heartbeat } from '@streambed/streams'

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
}

/**
 * Awareness bookkeeping that spans nodes: a heartbeat in the node registry, the join snapshot of
 * states held by live nodes, and removal of states whose node died (announced to every node).
 */
export class Presence {
  /** Nodes the registry reports silent for longer than `nodeTimeoutMs`, as of the last heartbeat. */
  private dead: ReadonlySet<string> = new Set()
  private clockOffsetMs = 0
  private readonly swept = new Set<string>()
  private lastFullSweep = 0
  private loop: Loop | undefined
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

  async stop(): Promise<void> {
    await this.loop?.stop()
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
}
