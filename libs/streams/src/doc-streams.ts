import type { Redis } from './redis.js'
import * as Y from 'yjs'
import { AppError, compareIds, guarded, maxId, sleep, ZERO_ID } from '@streambed/common'
import {
  inspectUpdate,
  nextClocks,
  readsAsEncoded,
  type UpdateShape,
  withoutKnown,
} from '@streambed/protocol'
import { partsOf, readDocument, type StateLoader } from './doc-read.js'
import type { Keys } from './keys.js'
import { shardOf } from './keys.js'
import { encodeConfirmedDoorbell, encodeDoorbell } from './channel.js'
import { isCluster, masterFor } from './redis.js'
import { scripts } from './scripts.js'
import type { AppendOutcome, AppendResult, DocStreams, StreamEntry } from './tail.js'

export interface DocStreamsOptions {
  redis: Redis
  keys: Keys
  /** Number of task queue shards; must be the same for every process. */
  queueShards: number
  /**
   * The document storage, read to seed a document's clock map (see append-3.lua). Without one,
   * documents are taken to have nothing in storage: for tests and benchmarks only.
   */
  storage?: StateLoader
  /** Doorbells carry updates up to this size inline; default 64 KiB. */
  inlineLimitBytes?: number
  /** Entries fetched per XRANGE page; default 1000. */
  pageSize?: number
  /** First wait for a gap before an update to fill (doubling each attempt); default 5 ms. */
  gapWaitMs?: number
  /**
   * Replicas that must confirm an append (WAIT) before its doorbell rings and it counts as done;
   * default 0 (Redis replication is asynchronous: a failover may drop the last writes).
   */
  waitReplicas?: number
  /** How long to wait for them; past it the append fails (REDIS_UNAVAILABLE). Default 1000. */
  waitTimeoutMs?: number
  /**
   * The connection appends (and their WAIT) go on; default `redis`. With `waitReplicas`, give a
   * connection of its own: WAIT blocks the connection it runs on, so on `redis` a slow replica
   * would hold up every read of that master (joins, gap fills) for up to `waitTimeoutMs`.
   */
  writer?: Redis
}

/**
 * Attempts of one append. Each failed attempt means the document's clocks moved: ids to strip,
 * or a gap before the update's first clock that an append still in flight (the same writer's
 * previous update, pipelined) is about to fill; gaps wait `GAP_WAIT_MS * 2^attempt` between
 * attempts, about 5 s in all, before the update is refused.
 */
const APPEND_ATTEMPTS = 10
const GAP_WAIT_MS = 5
/** Lifetime of a meta hash that seeding created, until an append makes it persistent. */
const SEEDED_META_TTL_MS = 3_600_000

/**
 * The clock claims of an update for append-3.lua: per client, the one run of clocks it holds.
 * A client with a gap claims from "-1", which never matches: the script answers with the
 * document's clocks, against which the gap is judged.
 */
const claimsOf = (shape: UpdateShape): string[] => {
  const args: string[] = []
  for (const [client, runs] of shape.clients) {
    const first = runs[0] as { from: number; to: number }
    const single = runs.length === 1
    args.push(String(client), single ? String(first.from) : '-1', String(runs[runs.length - 1]?.to))
  }
  return args
}

/** Whether `shape` holds clocks below the document's next clock of their client. */
const overlaps = (shape: UpdateShape, known: ReadonlyMap<number, number>): boolean =>
  [...shape.clients].some(([client, runs]) => (runs[0]?.from ?? 0) < (known.get(client) ?? 0))

/**
 * The refusal of an update that would leave a gap in the document's clocks (which later writers
 * could fill with other content, see append-3.lua), or null when every client of `shape` starts
 * at its next clock in `known` with one run.
 */
const gapIn = (
  doc: string,
  shape: UpdateShape,
  known: ReadonlyMap<number, number>,
): AppError | null => {
  for (const [client, runs] of shape.clients) {
    const next = known.get(client) ?? 0
    if (runs.length !== 1 || runs[0]?.from !== next) {
      return new AppError(
        'CLOCK_GAP',
        `update skips clocks of client ${client} in ${doc}: the document has clocks below ${next}, ` +
          `the update holds ${runs.map((r) => `${r.from}..${r.to - 1}`).join(', ')}`,
      )
    }
  }
  return null
}

type RawEntry = [Buffer, Buffer[]]

const parseEntry = ([id, fields]: RawEntry): StreamEntry => {
  let update: Uint8Array = new Uint8Array(0)
  let origin = ''
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = (fields[i] as Buffer).toString('latin1')
    if (name === 'u') update = fields[i + 1] as Buffer
    else if (name === 'o') origin = (fields[i + 1] as Buffer).toString('latin1')
  }
  return { id: id.toString('latin1'), update, origin }
}

export const createDocStreams = (opts: DocStreamsOptions): DocStreams => {
  const { redis, keys } = opts
  const writer = opts.writer ?? redis
  const cluster = isCluster(redis)
  const waitFor = opts.waitReplicas
    ? { replicas: opts.waitReplicas, timeoutMs: opts.waitTimeoutMs ?? 1000 }
    : null
  const storage: StateLoader = opts.storage ?? { load: () => Promise.resolve(null) }
  const inlineLimit = opts.inlineLimitBytes ?? 64 * 1024
  const pageSize = opts.pageSize ?? 1000
  const gapWaitMs = opts.gapWaitMs ?? GAP_WAIT_MS

  /** One attempt: appended, or what the script needs first (a seeded map, other clocks). */
  const tryAppend = async (
    doc: string,
    update: Uint8Array,
    origin: string,
    floor: string,
    shape: UpdateShape,
  ): Promise<AppendResult | 'seed' | Map<number, number>> => {
    const claims = claimsOf(shape)
    const queue = keys.queue(shardOf(doc, opts.queueShards))
    const args = [update, origin, keys.channel(doc), inlineLimit, doc, floor]
    const tail = [waitFor ? 0 : 1, claims.length / 3, ...claims]
    // A cluster keeps the queue in another slot than the document: the task goes on in a second
    // command (a crash between the two is repaired by reconcileTasks).
    const reply = (
      cluster
        ? await scripts.appendInSlot.run(
            writer,
            [keys.stream(doc), keys.meta(doc)],
            [...args, ...tail],
          )
        : await scripts.append.run(
            writer,
            [keys.stream(doc), keys.meta(doc), queue],
            [...args, ...tail],
          )
    ) as Buffer[]
    const kind = String(reply[0])
    if (kind === 'seed') return 'seed'
    if (kind === 'clocks') {
      const known = new Map<number, number>()
      for (let i = 1; i + 1 < reply.length; i += 2)
        known.set(Number(reply[i]), Number(reply[i + 1]))
      return known
    }
    const appended = { id: kind, prev: String(reply[1]), newTask: Number(reply[2]) === 1 }
    if (cluster && appended.newTask) await writer.xadd(queue, '*', 'd', doc, 't', appended.id)
    if (waitFor) {
      // Nothing becomes visible to other clients before a replica has it: a failover then keeps
      // every update any client saw.
      const acked = await replicated(doc, waitFor)
      if (acked < waitFor.replicas) {
        throw new AppError(
          'REDIS_UNAVAILABLE',
          `append to ${doc}: ${acked} of ${waitFor.replicas} replicas confirmed within ${waitFor.timeoutMs} ms`,
        )
      }
      await showAndRing(
        doc,
        appended.id,
        encodeDoorbell(appended.id, appended.prev, origin, update, inlineLimit),
      )
    }
    return appended
  }

  /**
   * Entries of `doc` up to `id` were confirmed by the replicas: visible to readers first, then
   * rung (one connection, in this order), so a node filling a gap on the doorbell reads them.
   */
  const showAndRing = async (doc: string, id: string, doorbell: Buffer) => {
    await Promise.all([
      scripts.replicated.run(writer, [keys.meta(doc)], ['raise', id]),
      writer.spublish(keys.channel(doc), doorbell),
    ])
  }

  /**
   * With `waitReplicas`: makes every entry of `doc` appended so far visible once the replicas
   * confirm it (entries whose own WAIT timed out stay unseen until then). True when nothing is
   * left unconfirmed, false when the replicas did not confirm in time.
   */
  const confirm = async (doc: string): Promise<boolean> => {
    if (!waitFor) return true
    const [last, visible] = (
      (await scripts.replicated.run(writer, [keys.meta(doc)], ['mark'])) as Buffer[]
    ).map(String) as [string, string]
    if (compareIds(last, visible) <= 0) return true
    if ((await replicated(doc, waitFor)) < waitFor.replicas) return false
    await showAndRing(doc, last, encodeConfirmedDoorbell(last))
    return true
  }

  /** WAIT on the master that holds `doc` (the connection that ran its append). */
  const replicated = async (doc: string, waitFor: { replicas: number; timeoutMs: number }) => {
    const node = masterFor(writer, keys.stream(doc))
    return Number(await node.wait(waitFor.replicas, waitFor.timeoutMs))
  }

  /**
   * Seeds the clock map from storage + stream (nothing is appended until it is seeded). Appends
   * waiting for one document share one seed and then retry in the order they were made.
   */
  const seeding = new Map<string, Promise<void>>()
  const seed = (doc: string): Promise<void> => {
    let running = seeding.get(doc)
    if (!running) {
      running = (async () => {
        const read = await readDocument(storage, streams, doc)
        const pairs: string[] = []
        for (const [client, next] of nextClocks(partsOf(read)))
          pairs.push(String(client), String(next))
        await scripts.seedClocks.run(redis, [keys.meta(doc)], [SEEDED_META_TTL_MS, ...pairs])
      })().finally(() => seeding.delete(doc))
      seeding.set(doc, running)
    }
    return running
  }

  /**
   * Whether the document with `update` applied reads as its own encoding (readsAsEncoded). Checked
   * only for an update that overlapped ids the document has (rare for honest clients: a resend),
   * since its new items may name reused ids whose content differs from the writer's; it reads the
   * whole document.
   */
  const agreesWithDocument = async (doc: string, update: Uint8Array): Promise<boolean> => {
    const ydoc = new Y.Doc({ guid: 'streambed-check' })
    try {
      for (const part of partsOf(await readDocument(storage, streams, doc)))
        Y.applyUpdate(ydoc, part)
      Y.applyUpdate(ydoc, update)
      return readsAsEncoded(ydoc)
    } catch {
      // An update that does not apply to the document disagrees with it.
      return false
    } finally {
      ydoc.destroy()
    }
  }

  const append: DocStreams['append'] = (doc, update, origin, appendOpts = {}) =>
    guarded('REDIS_UNAVAILABLE', `append to ${doc}`, async () => {
      const floor = appendOpts.floor ?? ZERO_ID
      const shape = appendOpts.shape ?? inspectUpdate(update)
      const ticket = await appendOpts.guard?.admit(doc, update, shape)
      let outcome: AppendOutcome = 'failed'
      let id: string | undefined
      try {
        const appended = await appendChecked(doc, update, origin, floor, shape)
        outcome = appended.stripped ? 'stripped' : 'clean'
        id = appended.result?.id
        return appended.result
      } finally {
        ticket?.settle(outcome, id)
      }
    })

  /** `append` after the structure check: `stripped` when ids of it were in the stream already. */
  const appendChecked = async (
    doc: string,
    update: Uint8Array,
    origin: string,
    floor: string,
    shape: UpdateShape,
  ): Promise<{ result: AppendResult | null; stripped: boolean }> => {
    let gap: AppError | null = null
    let stripped = false
    for (let attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
      if (shape.clients.size === 0 && !shape.hasDeletes) {
        // A resend of entries the stream has, maybe unconfirmed (their WAIT timed out): it is
        // acknowledged only once the replicas have them.
        if (stripped && !(await confirm(doc))) {
          throw new AppError(
            'REDIS_UNAVAILABLE',
            `append to ${doc}: replicas did not confirm its earlier entries within ${waitFor?.timeoutMs} ms`,
          )
        }
        return { result: null, stripped }
      }
      if (gap) await sleep(gapWaitMs * 2 ** attempt)
      const outcome = await tryAppend(doc, update, origin, floor, shape)
      if (outcome === 'seed') await seed(doc)
      else if (outcome instanceof Map) {
        // The document has some of these ids (their first content stays): keep what is new.
        const overlapped = overlaps(shape, outcome)
        stripped = true
        update = withoutKnown(update, outcome)
        shape = inspectUpdate(update)
        gap = gapIn(doc, shape, outcome)
        if (overlapped && !gap && !(await agreesWithDocument(doc, update))) {
          throw new AppError(
            'BAD_MESSAGE',
            `update reuses ids of ${doc} with other content in a way its new items contradict`,
          )
        }
      } else return { result: outcome, stripped }
    }
    throw (
      gap ?? new AppError('OVERLOADED', `concurrent writers keep appending the same ids to ${doc}`)
    )
  }

  const readTail: DocStreams['readTail'] = (doc, after) =>
    guarded('REDIS_UNAVAILABLE', `read ${doc}`, async () => {
      const [trimmedBuf, lastBuf, firstPage, endBuf, pendingFlag] = (await scripts.read.run(
        redis,
        [keys.stream(doc), keys.meta(doc)],
        [after, pageSize, waitFor ? 1 : 0],
      )) as [Buffer, Buffer, RawEntry[], Buffer, number]
      let trimmed = trimmedBuf.toString()
      const last = lastBuf.toString()
      const end = endBuf.toString()
      const entries = firstPage.map(parseEntry)
      let page = firstPage.length
      while (page === pageSize) {
        const from = (entries[entries.length - 1] as StreamEntry).id
        const raw = (await redis.xrangeBuffer(
          keys.stream(doc),
          `(${from}`,
          end,
          'COUNT',
          pageSize,
        )) as unknown as RawEntry[]
        for (const e of raw) entries.push(parseEntry(e))
        page = raw.length
      }
      if (entries.length > pageSize) {
        // Later pages were read outside the script: re-read the marker so a trim that happened
        // between pages is not missed (the caller then reloads storage).
        const again = await redis.hget(keys.meta(doc), 'trimmed')
        if (again) trimmed = maxId(trimmed, again)
      }
      return { trimmed, last, entries, pending: pendingFlag === 1 }
    })

  const lastVisible: DocStreams['lastVisible'] = (doc) =>
    guarded('REDIS_UNAVAILABLE', `read ${doc}`, async () => {
      const [last, visible] = await redis.hmget(keys.meta(doc), 'last', 'visible')
      if (!last) return ZERO_ID
      return waitFor && visible && compareIds(visible, last) < 0 ? visible : last
    })

  const markVisible: DocStreams['markVisible'] = (doc, id) =>
    guarded('REDIS_UNAVAILABLE', `mark ${doc}`, async () => {
      if (waitFor) await scripts.replicated.run(redis, [keys.meta(doc)], ['raise', id])
    })

  const streams: DocStreams = { append, readTail, confirm, lastVisible, markVisible }
  return streams
}
