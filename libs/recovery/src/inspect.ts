/**
 * What an operator looks at first: one document's state across Redis and storage, and the
 * cluster's (documents, stream memory, task queue, workers, nodes). Read-only; every figure is read
 * at a slightly different moment, so a document being compacted meanwhile may show both sides.
 * Ages are measured against Redis time (stream ids and heartbeats carry it), not the local clock.
 */
import { guarded, idTimeMs, type StreamId } from '@streambed/common'
import type { LogExtent } from '@streambed/storage'
import { CONSUMER_GROUP, masterFor, shardOf, type Redis } from '@streambed/streams'
import { type RecoveryDeps, storedDocuments, streamDocuments } from './documents.js'

/** An entry id with how long ago Redis wrote it. */
export interface AgedId {
  readonly id: StreamId
  readonly ageMs: number
}

/** Where a document's compaction task is (decision 0006: always in exactly one place). */
export type TaskState =
  | {
      readonly token: string
      readonly shard: number
      readonly state: 'queued'
      readonly entryId: string
    }
  | {
      readonly token: string
      readonly shard: number
      readonly state: 'delivered'
      readonly entryId: string
      /** The worker (consumer) holding it. */
      readonly consumer: string
      /** Since it was delivered (or last claimed). */
      readonly idleMs: number
      readonly deliveries: number
    }
  | {
      readonly token: string
      readonly shard: number
      readonly state: 'delayed'
      /** Redis time (epoch ms) the task is due again. */
      readonly dueAtMs: number
      readonly dueInMs: number
    }
  /** The document names a token no queue holds: a lost task (the document is not compacted). */
  | { readonly token: string; readonly shard: number; readonly state: 'missing' }

export interface DocumentInspection {
  readonly doc: string
  /** Anything at all of the document in Redis or storage. */
  readonly exists: boolean
  /** Redis time of the inspection (epoch ms). */
  readonly nowMs: number
  /** The document's stream, or null when it has none (compacted and idle, or never written). */
  readonly stream: {
    readonly length: number
    /** MEMORY USAGE of the stream key (sampled by Redis for large streams). */
    readonly bytes: number
    readonly first: AgedId | null
    readonly last: AgedId | null
  } | null
  /** The meta hash (a tombstone with a TTL once the stream is gone), or null. */
  readonly meta: {
    /** The last id ever appended. */
    readonly last: StreamId | null
    /** Entries with smaller ids were trimmed. */
    readonly trimmed: StreamId | null
    /** Clients in the clock map (decision 0010), or null when it is not seeded. */
    readonly clockClients: number | null
    /** Time to live, or null when persistent. */
    readonly ttlMs: number | null
  } | null
  /** The stored watermark and its age, or null when nothing is stored. */
  readonly stored: AgedId | null
  /** The pending compaction task, or null when the document has none. */
  readonly task: TaskState | null
  /** The update log's extent, or null when it holds no entry. */
  readonly log: LogExtent | null
  readonly checkpoints: { readonly count: number; readonly newest: AgedId | null }
}

/** Redis time in ms. */
export const redisNowMs = (redis: Redis): Promise<number> =>
  guarded('REDIS_UNAVAILABLE', 'time', async () => {
    const [s, us] = await redis.time()
    return Number(s) * 1000 + Math.floor(Number(us) / 1000)
  })

const aged = (id: StreamId, nowMs: number): AgedId => ({
  id,
  ageMs: Math.max(0, nowMs - idTimeMs(id)),
})

/** MEMORY USAGE of a key in bytes (0 when it is gone). */
const memoryUsage = async (redis: Redis, key: string): Promise<number> =>
  Number((await redis.call('MEMORY', 'USAGE', key)) ?? 0)

/** The task stream entry `{ d: doc, t: token }` in a shard, scanning it a page at a time. */
const findTaskEntry = async (
  redis: Redis,
  queue: string,
  doc: string,
  token: string,
): Promise<string | null> => {
  for (let from = '-'; ;) {
    const page = await redis.xrange(queue, from, '+', 'COUNT', 1000)
    for (const [id, fields] of page) {
      let d: string | undefined
      let t: string | undefined
      for (let i = 0; i + 1 < fields.length; i += 2) {
        if (fields[i] === 'd') d = fields[i + 1]
        else if (fields[i] === 't') t = fields[i + 1]
      }
      if (d === doc && t === token) return id
    }
    const last = page.at(-1)
    if (page.length < 1000 || !last) return null
    from = `(${last[0]}`
  }
}

/**
 * Where the task of `doc` with `token` is. Reads the shard's delayed set (one lookup) and scans
 * its task stream (as long as the backlog). A task moving meanwhile (promoted, settled) is looked
 * for once more before it counts as missing.
 */
const locateTask = async (
  deps: RecoveryDeps,
  doc: string,
  token: string,
  nowMs: number,
): Promise<TaskState> => {
  const { redis, keys } = deps
  const shard = shardOf(doc, deps.queueShards)
  const queue = keys.queue(shard)
  for (let attempt = 0; attempt < 2; attempt++) {
    const due = await redis.zscore(keys.delayed(shard), `${token} ${doc}`)
    if (due !== null) {
      const dueAtMs = Number(due)
      return { token, shard, state: 'delayed', dueAtMs, dueInMs: Math.max(0, dueAtMs - nowMs) }
    }
    const entryId = await findTaskEntry(redis, queue, doc, token)
    if (entryId === null) continue
    const pending = (await redis
      .xpending(queue, CONSUMER_GROUP, entryId, entryId, 1)
      .catch((err: unknown) => {
        // No consumer group yet (no worker ever read): queued, not delivered.
        if (err instanceof Error && err.message.includes('NOGROUP')) return []
        throw err
      })) as [string, string, number, number][]
    const delivery = pending[0]
    if (!delivery) return { token, shard, state: 'queued', entryId }
    const [, consumer, idleMs, deliveries] = delivery
    return { token, shard, state: 'delivered', entryId, consumer, idleMs, deliveries }
  }
  return { token, shard, state: 'missing' }
}

/** One document across Redis (stream, meta, task) and storage (state, log, checkpoints). */
export const inspectDocument = async (
  deps: RecoveryDeps,
  doc: string,
): Promise<DocumentInspection> => {
  const { redis, keys, storage } = deps
  const nowMs = await redisNowMs(redis)
  const { stream, meta, task } = await guarded('REDIS_UNAVAILABLE', `inspect ${doc}`, async () => {
    const streamKey = keys.stream(doc)
    const length = await redis.xlen(streamKey)
    const exists = (await redis.exists(streamKey)) === 1
    let stream: DocumentInspection['stream'] = null
    if (exists) {
      const [first] = await redis.xrange(streamKey, '-', '+', 'COUNT', 1)
      const [last] = await redis.xrevrange(streamKey, '+', '-', 'COUNT', 1)
      stream = {
        length,
        bytes: await memoryUsage(redis, streamKey),
        first: first ? aged(first[0], nowMs) : null,
        last: last ? aged(last[0], nowMs) : null,
      }
    }
    const fields = await redis.hgetall(keys.meta(doc))
    let meta: DocumentInspection['meta'] = null
    if (Object.keys(fields).length > 0) {
      const ttl = await redis.pttl(keys.meta(doc))
      meta = {
        last: fields.last ?? null,
        trimmed: fields.trimmed ?? null,
        clockClients:
          fields.clocks === undefined
            ? null
            : Object.keys(fields).filter((f) => f.startsWith('k:')).length,
        ttlMs: ttl >= 0 ? ttl : null,
      }
    }
    const token = fields.task
    const task = token === undefined ? null : await locateTask(deps, doc, token, nowMs)
    return { stream, meta, task }
  })
  const { watermark, log, checkpoints } = await guarded(
    'STORAGE_UNAVAILABLE',
    `inspect ${doc} in storage`,
    async () => {
      const [watermark, log, checkpoints] = await Promise.all([
        storage.watermark(doc),
        storage.logExtent(doc),
        storage.listCheckpoints(doc),
      ])
      return { watermark, log, checkpoints }
    },
  )
  const newest = checkpoints.at(-1)
  return {
    doc,
    exists:
      stream !== null ||
      meta !== null ||
      watermark !== null ||
      log !== null ||
      newest !== undefined,
    nowMs,
    stream,
    meta,
    stored: watermark === null ? null : aged(watermark, nowMs),
    task,
    log,
    checkpoints: {
      count: checkpoints.length,
      newest: newest === undefined ? null : aged(newest, nowMs),
    },
  }
}

export interface ShardDepth {
  readonly shard: number
  /** Tasks in the shard's stream (delivered or not). */
  readonly queued: number
  /** Tasks waiting in the delayed set. */
  readonly delayed: number
  /** Delivered to a worker and not settled. */
  readonly pending: number
  /** Idle time of the oldest pending delivery, ms (0 if none). */
  readonly oldestPendingMs: number
}

export interface WorkerSeen {
  /** The worker's consumer name in the group. */
  readonly consumer: string
  /** Tasks delivered to it and not settled, over every shard. */
  readonly pending: number
  /** Since it last read or claimed, on the shard it touched last. */
  readonly idleMs: number
  readonly alive: boolean
}

export interface NodeSeen {
  readonly id: string
  /** Redis time of its last heartbeat (epoch ms). */
  readonly lastSeenMs: number
  readonly ageMs: number
  readonly alive: boolean
}

export interface ClusterInspection {
  readonly nowMs: number
  readonly documents: {
    /** With stored state. */
    readonly stored: number
    /** With a stream in Redis. */
    readonly streams: number
    /** Either. */
    readonly total: number
  }
  /** MEMORY USAGE of every document stream, summed. */
  readonly streamBytes: number
  readonly queue: { readonly shards: ShardDepth[]; readonly totals: Omit<ShardDepth, 'shard'> }
  readonly workers: WorkerSeen[]
  readonly nodes: NodeSeen[]
}

export interface InspectClusterOptions {
  /**
   * A worker counts as alive when it read or claimed within this long; default 30 000. Workers
   * read with a blocking XREADGROUP of a second or so whenever they have a free slot.
   */
  workerIdleMs?: number
  /** A node counts as alive when it heartbeat within this long (NODE_TIMEOUT_MS); default 10 000. */
  nodeTimeoutMs?: number
}

const isNoGroup = (err: unknown) => err instanceof Error && err.message.includes('NOGROUP')

/** Every figure of the cluster an operator checks first. Scans Redis (SCAN) and lists storage. */
export const inspectCluster = async (
  deps: RecoveryDeps,
  opts: InspectClusterOptions = {},
): Promise<ClusterInspection> => {
  const { redis, keys } = deps
  const workerIdleMs = opts.workerIdleMs ?? 30_000
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 10_000
  const nowMs = await redisNowMs(redis)
  const stored = await storedDocuments(deps.storage)
  const streamDocs = await streamDocuments(redis, keys)
  return guarded('REDIS_UNAVAILABLE', 'inspect the cluster', async () => {
    // Pipelined on the master of each stream: ioredis cannot route MEMORY USAGE by its key (its
    // command table names no key for MEMORY), so a cluster pipeline of them goes to one node and
    // meets MOVED for the others. A stream whose slot moved since is asked alone (redirected).
    const byMaster = new Map<ReturnType<typeof masterFor>, string[]>()
    for (const doc of streamDocs) {
      const node = masterFor(redis, keys.stream(doc))
      const group = byMaster.get(node) ?? []
      if (group.length === 0) byMaster.set(node, group)
      group.push(keys.stream(doc))
    }
    let streamBytes = 0
    for (const [node, streamKeys] of byMaster) {
      for (let i = 0; i < streamKeys.length; i += 200) {
        const batch = streamKeys.slice(i, i + 200)
        const pipeline = node.pipeline()
        for (const key of batch) pipeline.call('MEMORY', 'USAGE', key)
        for (const [j, [err, bytes]] of ((await pipeline.exec()) ?? []).entries()) {
          const moved = err && /^(MOVED|ASK) /.test(err.message)
          if (err && !moved) throw err
          streamBytes += Number((moved ? await memoryUsage(redis, batch[j]!) : bytes) ?? 0)
        }
      }
    }

    const shards: ShardDepth[] = []
    const workers = new Map<string, { pending: number; idleMs: number }>()
    for (let shard = 0; shard < deps.queueShards; shard++) {
      const queue = keys.queue(shard)
      const queued = await redis.xlen(queue)
      const delayed = await redis.zcard(keys.delayed(shard))
      let pending = 0
      let oldestPendingMs = 0
      try {
        const summary = (await redis.xpending(queue, CONSUMER_GROUP)) as [number, ...unknown[]]
        pending = Number(summary[0])
        if (pending > 0) {
          const [oldest] = (await redis.xpending(queue, CONSUMER_GROUP, '-', '+', 1)) as [
            string,
            string,
            number,
            number,
          ][]
          oldestPendingMs = oldest?.[2] ?? 0
        }
        const consumers = (await redis.xinfo('CONSUMERS', queue, CONSUMER_GROUP)) as unknown[][]
        for (const fields of consumers) {
          const info: Record<string, unknown> = {}
          for (let i = 0; i + 1 < fields.length; i += 2) info[String(fields[i])] = fields[i + 1]
          const name = String(info.name)
          const seen = workers.get(name) ?? { pending: 0, idleMs: Infinity }
          seen.pending += Number(info.pending ?? 0)
          seen.idleMs = Math.min(seen.idleMs, Number(info.idle ?? Infinity))
          workers.set(name, seen)
        }
      } catch (err) {
        // A shard no worker ever read has no group (and a missing stream no XINFO): nothing pending.
        if (!isNoGroup(err) && !(err instanceof Error && err.message.includes('no such key')))
          throw err
      }
      shards.push({ shard, queued, delayed, pending, oldestPendingMs })
    }
    const totals = shards.reduce(
      (t, s) => ({
        queued: t.queued + s.queued,
        delayed: t.delayed + s.delayed,
        pending: t.pending + s.pending,
        oldestPendingMs: Math.max(t.oldestPendingMs, s.oldestPendingMs),
      }),
      { queued: 0, delayed: 0, pending: 0, oldestPendingMs: 0 },
    )

    const registry = await redis.zrange(keys.nodes, 0, -1, 'WITHSCORES')
    const nodes: NodeSeen[] = []
    for (let i = 0; i + 1 < registry.length; i += 2) {
      const lastSeenMs = Number(registry[i + 1])
      const ageMs = Math.max(0, nowMs - lastSeenMs)
      nodes.push({ id: registry[i] as string, lastSeenMs, ageMs, alive: ageMs <= nodeTimeoutMs })
    }

    const union = new Set([...stored, ...streamDocs])
    return {
      nowMs,
      documents: { stored: stored.length, streams: streamDocs.length, total: union.size },
      streamBytes,
      queue: { shards, totals },
      workers: [...workers]
        .map(([consumer, w]) => ({
          consumer,
          pending: w.pending,
          idleMs: w.idleMs,
          alive: w.idleMs <= workerIdleMs,
        }))
        .sort((a, b) => a.consumer.localeCompare(b.consumer)),
      nodes: nodes.sort((a, b) => a.id.localeCompare(b.id)),
    }
  })
}
