import * as Y from 'yjs'
import { AppError, type Logger, sleep } from '@streambed/common'
import { type Placement, readsAsEncoded, type UpdateShape } from '@streambed/protocol'
import {
  type AdmitTicket,
  type AppendGuard,
  type AppendOutcome,
  type DocumentRead,
  type StreamEntry,
  type StreamId,
  type TailRead,
  ZERO_ID,
  compareIds,
  hasHoleAfter,
  partsOf,
} from '@streambed/streams'
import type { NodeMetrics } from './metrics.js'

export interface StructureGuardOptions {
  /** Storage + stream of a document (readDocument). */
  read(doc: string): Promise<DocumentRead>
  /** The stream after an id (DocStreams.readTail). */
  readTail(doc: string, after: StreamId): Promise<TailRead>
  /** Whether the node delivers `doc`'s entries (it has connections): only then is it cached. */
  isServed(doc: string): boolean
  metrics: NodeMetrics
  logger: Logger
  /** First wait for items an update names that the document lacks (doubling); default 5 ms. */
  missingWaitMs?: number
  /** Waits before such an update is refused (CLOCK_GAP); default 11 (about 5 s in all). */
  missingAttempts?: number
  /**
   * Encoded bytes (storage + entries + updates applied) of the copies held at once; past it the
   * least recently written copies are dropped (their next write reads them again). Default none.
   */
  maxBytes?: number
}

/** A document's structure as this node knows it: storage + stream + updates admitted here. */
interface Cached {
  ydoc: Y.Doc | null
  /** Entries delivered while the document was being read; applied once it is. */
  buffered: StreamEntry[]
  /** Every stream entry up to this id is applied. */
  upTo: StreamId
  /** Entries this copy holds already: updates admitted here and appended as they were. */
  readonly admitted: Set<StreamId>
  /** Encoded bytes applied to it (see StructureGuardOptions.maxBytes). */
  bytes: number
  readonly ready: Promise<void>
}

/** An admitted update whose append Redis has not answered: its clocks, and how it settled. */
interface Flight {
  readonly shape: UpdateShape
  readonly settled: Promise<AppendOutcome>
  /**
   * Still waiting for items it names (not appended yet). Others do not wait for it: an update
   * naming its items waits for the same items (they stay pending in the copy), and one holding
   * them may be what it waits for (a client's resync answer after its typing).
   */
  waiting: boolean
}

const NO_TICKET: AdmitTicket = { settle: () => undefined }

/**
 * Refuses updates whose items name neighbours in an order the document contradicts (decision
 * 0014). Yjs places a new item after its left neighbour (origin) and before its right one (right
 * origin); when the right one lies to the left of the left one, or in another list, a client
 * applying the update places it one way and a reader of the document's encoding (a joiner,
 * `GET /docs`, compaction) another, so readers would disagree for good.
 *
 * The check needs the document's structure, so a node keeps a `Y.Doc` of each document it serves
 * that was written through it, fed by every entry it delivers. An update is applied to it; each
 * new item must then sit exactly between the neighbours it names (the update's own items aside),
 * as every item of a client in sync does. When one does not (concurrent inserts between its
 * neighbours, or a forged item), the document is read back from its encoding and compared with
 * itself list by list: any difference refuses the update. Items the update names that the copy
 * lacks (another node's entry not delivered here yet) are read from the stream first; still
 * missing after about 5 s, the update is refused with CLOCK_GAP (close 4509: the client resyncs
 * and sends what it depends on with it).
 *
 * The copy holds stream truth plus admitted updates whose append is in flight. An update naming
 * or holding clocks of one in flight waits for its answer, so nothing is checked against content
 * that Redis then refused or stripped (one still waiting for items it names holds up nobody: what
 * names its items waits for the same items, and what holds them may be what it waits for). An
 * update that did not go in as checked (Redis had some of its ids, or the append failed) drops
 * the copy, which is read again on the document's next write.
 * Documents not served here (HTTP writes) are checked against a fresh read each time.
 */
export class StructureGuard implements AppendGuard {
  private readonly cached = new Map<string, Cached>()
  private readonly flights = new Map<string, Set<Flight>>()
  /** Sum of the copies' `bytes`. */
  private heldBytes = 0
  private readonly opts: StructureGuardOptions
  private readonly missingWaitMs: number
  private readonly missingAttempts: number

  constructor(opts: StructureGuardOptions) {
    this.opts = opts
    this.missingWaitMs = opts.missingWaitMs ?? 5
    this.missingAttempts = opts.missingAttempts ?? 11
  }

  async admit(doc: string, update: Uint8Array, shape: UpdateShape): Promise<AdmitTicket> {
    if (!this.opts.isServed(doc)) {
      await this.checkOnce(doc, update, shape)
      return NO_TICKET
    }
    let cached: Cached
    for (;;) {
      cached = await this.cache(doc)
      // Dropped again while this call resumed (another update was refused): take the new one.
      if (this.cached.get(doc) !== cached || !cached.ydoc) continue
      // From here to `fly` nothing awaits: no other update is applied between the check for
      // in-flight appends this one depends on and its own registration.
      const blocker = this.flightTouching(doc, shape)
      if (!blocker) break
      if ((await blocker.settled) === 'failed') {
        // It names or holds clocks that were not appended: it cannot be placed either. Refused at
        // once rather than after waiting (the client resyncs and sends them again).
        throw new AppError(
          'CLOCK_GAP',
          `update to ${doc} depends on an update of the same clients that was not appended`,
        )
      }
    }
    const ydoc = cached.ydoc
    // Most recently written last (Map order): the budget drops from the front.
    this.cached.delete(doc)
    this.cached.set(doc, cached)
    try {
      Y.applyUpdate(ydoc, update)
      this.held(doc, cached, update.length)
      this.keepWithinBudget(doc)
    } catch (err) {
      this.opts.logger.warn({ err, doc }, 'update does not apply to the document; refused')
      this.forget(doc, 'refused')
      throw new AppError('BAD_MESSAGE', `update does not apply to ${doc}`, { cause: err })
    }
    // In flight from now on: an update naming its items waits for its answer, or its refusal.
    const { ticket, flight } = this.fly(doc, shape, cached)
    try {
      for (let attempt = 0; !integrated(ydoc, shape); attempt++) {
        if (attempt >= this.missingAttempts) throw missing(doc, ydoc, shape)
        flight.waiting = true
        if (attempt > 0) await sleep(this.missingWaitMs * 2 ** (attempt - 1))
        if (this.cached.get(doc) !== cached) {
          // Dropped meanwhile (another update was refused): check against a fresh read instead.
          await this.checkOnce(doc, update, shape)
          flight.waiting = false
          return ticket
        }
        await this.catchUp(doc, cached)
      }
      const contradiction = contradictionIn(ydoc, shape)
      if (contradiction) throw new AppError('BAD_MESSAGE', `${contradiction} in ${doc}`)
      flight.waiting = false
      return ticket
    } catch (err) {
      // The copy holds the refused update: it goes (settling as not appended drops it).
      ticket.settle('failed')
      throw err
    }
  }

  /** Entries delivered to the connections of `doc` here (in stream order). */
  delivered(doc: string, entries: readonly StreamEntry[]): void {
    const cached = this.cached.get(doc)
    if (!cached) return
    if (!cached.ydoc) {
      cached.buffered.push(...entries)
      return
    }
    this.apply(doc, cached, entries)
  }

  /**
   * Drops what is known of `doc`: it is not served any more, Redis lost entries (`lost`), an
   * update did not go in as checked (`refused`), or the copies exceed the budget (`budget`).
   */
  forget(doc: string, reason: 'lost' | 'refused' | 'budget' = 'lost'): void {
    const cached = this.cached.get(doc)
    if (!cached) return
    this.cached.delete(doc)
    this.heldBytes -= cached.bytes
    cached.ydoc?.destroy()
    if (this.opts.isServed(doc)) this.opts.metrics.structureDrops.inc({ reason })
    this.opts.metrics.structureDocs.set(this.cached.size)
  }

  /** Documents whose structure is held here. */
  get size(): number {
    return this.cached.size
  }

  close(): void {
    for (const doc of [...this.cached.keys()]) this.forget(doc)
  }

  /**
   * Drops the least recently written copies (none with an append in flight, never `keep`) while
   * the copies hold more than `maxBytes`.
   */
  private keepWithinBudget(keep: string): void {
    const max = this.opts.maxBytes
    if (max === undefined || this.heldBytes <= max) return
    for (const [doc, c] of this.cached) {
      if (this.heldBytes <= max) break
      if (doc !== keep && c.ydoc && !this.flights.has(doc)) this.forget(doc, 'budget')
    }
  }

  /** `bytes` more applied to `cached` (counted in the total while it is the document's copy). */
  private held(doc: string, cached: Cached, bytes: number): void {
    cached.bytes += bytes
    if (this.cached.get(doc) === cached) this.heldBytes += bytes
  }

  /** Registers an admitted update applied to `cached` (its copy at admission). */
  private fly(
    doc: string,
    shape: UpdateShape,
    cached: Cached,
  ): { ticket: AdmitTicket; flight: Flight } {
    let done!: (outcome: AppendOutcome) => void
    const flight: Flight = { shape, settled: new Promise((r) => (done = r)), waiting: false }
    let set = this.flights.get(doc)
    if (!set) this.flights.set(doc, (set = new Set()))
    set.add(flight)
    const ticket: AdmitTicket = {
      settle: (outcome, id) => {
        // Not appended as checked: the copy may hold content the stream does not.
        if (outcome !== 'clean') this.forget(doc, 'refused')
        // Its entry is in the copy it was applied to; when that copy is still the one, its
        // delivery need not be applied again (an entry below what the copy read is skipped anyway).
        else if (id && this.cached.get(doc) === cached && compareIds(id, cached.upTo) > 0)
          cached.admitted.add(id)
        set.delete(flight)
        if (set.size === 0 && this.flights.get(doc) === set) this.flights.delete(doc)
        done(outcome)
      },
    }
    return { ticket, flight }
  }

  /** An in-flight append whose clocks `shape` holds or names, if any. */
  private flightTouching(doc: string, shape: UpdateShape): Flight | undefined {
    const set = this.flights.get(doc)
    return set ? [...set].find((f) => !f.waiting && touches(shape, f.shape)) : undefined
  }

  /** The document's copy, read first if needed. */
  private async cache(doc: string): Promise<Cached> {
    for (;;) {
      let cached = this.cached.get(doc)
      if (!cached) {
        const building: { -readonly [K in keyof Cached]: Cached[K] } = {
          ydoc: null,
          buffered: [],
          upTo: ZERO_ID,
          admitted: new Set(),
          bytes: 0,
          ready: Promise.resolve(),
        }
        building.ready = this.build(doc, building)
        this.cached.set(doc, building)
        this.opts.metrics.structureDocs.set(this.cached.size)
        cached = building
      }
      await cached.ready
      if (this.cached.get(doc) === cached && cached.ydoc) {
        this.keepWithinBudget(doc)
        return cached
      }
    }
  }

  /** Reads `doc` into `cached`, then applies what was delivered meanwhile. */
  private async build(doc: string, cached: Cached): Promise<void> {
    const ydoc = new Y.Doc()
    try {
      this.opts.metrics.structureReads.inc({ reason: 'build' })
      const read = await this.opts.read(doc)
      for (const part of partsOf(read)) {
        Y.applyUpdate(ydoc, part)
        this.held(doc, cached, part.length)
      }
      cached.upTo = read.upTo
      cached.ydoc = ydoc
    } catch (err) {
      ydoc.destroy()
      if (this.cached.get(doc) === cached) {
        this.cached.delete(doc)
        this.heldBytes -= cached.bytes
      }
      throw err
    }
    const buffered = cached.buffered
    cached.buffered = []
    this.apply(doc, cached, buffered)
  }

  private apply(doc: string, cached: Cached, entries: readonly StreamEntry[]): void {
    const ydoc = cached.ydoc as Y.Doc
    for (const e of entries) {
      if (compareIds(e.id, cached.upTo) <= 0) continue
      // Applied when it was admitted: applying it again would only decode it.
      if (cached.admitted.delete(e.id)) {
        cached.upTo = e.id
        continue
      }
      try {
        Y.applyUpdate(ydoc, e.update)
        this.held(doc, cached, e.update.length)
      } catch (err) {
        this.opts.logger.warn(
          { err, doc, id: e.id },
          'stream entry does not apply; structure dropped',
        )
        this.forget(doc)
        return
      }
      cached.upTo = e.id
    }
  }

  /** Applies the stream after what the cache holds (entries not delivered here yet). */
  private async catchUp(doc: string, cached: Cached): Promise<void> {
    this.opts.metrics.structureReads.inc({ reason: 'catch-up' })
    const tail = await this.opts.readTail(doc, cached.upTo)
    if (this.cached.get(doc) !== cached) return
    if (hasHoleAfter(cached.upTo, tail.trimmed)) {
      // Compacted and trimmed past what the cache holds: read the document again.
      this.forget(doc)
      await this.cache(doc)
      return
    }
    this.apply(doc, cached, tail.entries)
  }

  /** The check of an update to a document not served here: against a fresh read. */
  private async checkOnce(doc: string, update: Uint8Array, shape: UpdateShape): Promise<void> {
    if (!shape.placements?.length) return
    const ydoc = new Y.Doc()
    try {
      this.opts.metrics.structureReads.inc({ reason: 'once' })
      for (const part of partsOf(await this.opts.read(doc))) Y.applyUpdate(ydoc, part)
      try {
        Y.applyUpdate(ydoc, update)
      } catch (err) {
        throw new AppError('BAD_MESSAGE', `update does not apply to ${doc}`, { cause: err })
      }
      if (!integrated(ydoc, shape)) throw missing(doc, ydoc, shape)
      const contradiction = contradictionIn(ydoc, shape)
      if (contradiction) throw new AppError('BAD_MESSAGE', `${contradiction} in ${doc}`)
    } finally {
      ydoc.destroy()
    }
  }
}

/** Whether every struct of `shape` is in the document (none waits for items it names). */
const integrated = (ydoc: Y.Doc, shape: UpdateShape): boolean => {
  for (const [client, runs] of shape.clients) {
    const last = runs[runs.length - 1]
    if (last && Y.getState(ydoc.store, client) < last.to) return false
  }
  return true
}

const missing = (doc: string, ydoc: Y.Doc, shape: UpdateShape): AppError => {
  for (const [client, runs] of shape.clients) {
    const has = Y.getState(ydoc.store, client)
    const from = runs[0]?.from ?? 0
    if (has < from) {
      return new AppError(
        'CLOCK_GAP',
        `update skips clocks of client ${client} in ${doc}: the document has clocks below ${has}, ` +
          `the update starts at ${from}`,
      )
    }
  }
  const lacking = [...shape.clients]
    .filter(([client, runs]) => Y.getState(ydoc.store, client) < (runs[runs.length - 1]?.to ?? 0))
    .map(([client]) => client)
  return new AppError(
    'CLOCK_GAP',
    `update to ${doc} names items the document does not have (its items of client ${lacking.join(', ')} cannot be placed)`,
  )
}

/** Whether `shape` holds or names a clock that `flight` holds. */
const touches = (shape: UpdateShape, flight: UpdateShape): boolean => {
  for (const [client, runs] of flight.clients) {
    const from = runs[0]?.from ?? 0
    const to = runs[runs.length - 1]?.to ?? 0
    const named = shape.refs?.get(client)
    if (named !== undefined && named > from) return true
    for (const r of shape.clients.get(client) ?? []) if (r.from < to && from < r.to) return true
  }
  return false
}

const holds = (struct: Y.AbstractStruct, id: Y.ID): boolean =>
  struct.id.client === id.client &&
  struct.id.clock <= id.clock &&
  id.clock < struct.id.clock + struct.length

/** Whether `struct` is one of the update's own items (`shape`'s clocks). */
const ownItem = (shape: UpdateShape, struct: Y.AbstractStruct): boolean =>
  (shape.clients.get(struct.id.client) ?? []).some(
    (r) => r.from <= struct.id.clock && struct.id.clock < r.to,
  )

/**
 * Whether the item placed at `p` sits exactly between the neighbours it names, the update's own
 * items aside: what an honest item shows unless concurrent inserts landed between them.
 */
const between = (ydoc: Y.Doc, shape: UpdateShape, p: Placement): boolean => {
  for (const clock of [p.first, p.last]) {
    const item = Y.getItem(ydoc.store, Y.createID(p.client, clock))
    // Garbage-collected (its parent was deleted): nothing of it is read anywhere.
    if (!(item instanceof Y.Item)) continue
    const { origin, right } = p
    // Typing continues a run: the origin is the item's own previous clock.
    const inRun =
      origin !== null &&
      origin.client === p.client &&
      item.id.clock <= origin.clock &&
      origin.clock < clock
    if (!inRun) {
      let left = item.left
      while (left !== null && ownItem(shape, left)) left = left.left
      const leftOk =
        origin === null
          ? left === null
          : left !== null && holds(left, origin) && left.id.clock + left.length - 1 === origin.clock
      if (!leftOk) return false
    }
    let next = item.right
    while (next !== null && ownItem(shape, next)) next = next.right
    const rightOk =
      right === null
        ? next === null
        : next !== null && holds(next, right) && next.id.clock === right.clock
    if (!rightOk) return false
  }
  return true
}

/**
 * The order of every list of `ydoc` (root types and nested ones, map keys' histories included),
 * deleted items too: two documents with equal outlines place every item alike.
 */
const outline = (ydoc: Y.Doc): string => {
  const parts: string[] = []
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any Yjs type
  const visit = (type: Y.AbstractType<any>, path: string): void => {
    const ids: string[] = []
    const item = (n: Y.Item) => {
      ids.push(`${n.id.client}:${n.id.clock}+${n.length}${n.deleted ? 'd' : ''}`)
      if (n.content instanceof Y.ContentType)
        visit(n.content.type, `${path}/${n.id.client}:${n.id.clock}`)
    }
    for (let n = type._start; n !== null; n = n.right) item(n)
    for (const [key, last] of [...type._map].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const chain: Y.Item[] = []
      for (let n: Y.Item | null = last; n !== null; n = n.left) chain.push(n)
      ids.push(`[${key}]`)
      for (const n of chain.reverse()) item(n)
    }
    if (ids.length > 0) parts.push(`${path}=${ids.join(',')}`)
  }
  for (const [name, type] of [...ydoc.share].sort(([a], [b]) => (a < b ? -1 : 1))) visit(type, name)
  return parts.join('\n')
}

/**
 * The first item of `shape` that a reader of the document's encoding would place elsewhere than
 * `ydoc` (the document with the update applied) does, described; null when there is none. Items
 * sitting exactly between the neighbours they name are fine; otherwise (concurrent inserts, or
 * an update naming neighbours that are not next to each other) the whole document is read back
 * from its encoding and compared, item order included.
 */
const contradictionIn = (ydoc: Y.Doc, shape: UpdateShape): string | null => {
  const odd = (shape.placements ?? []).find((p) => !between(ydoc, shape, p))
  if (!odd || readsAsEncoded(ydoc, outline)) return null
  const named = (id: Y.ID | null) => (id ? `${id.client}:${id.clock}` : 'none')
  return (
    `item ${odd.client}:${odd.first} names neighbours ${named(odd.origin)} and ` +
    `${named(odd.right)} in an order the document contradicts (readers would place it differently)`
  )
}
