import { isCluster, masters, type Redis } from './redis.js'
import { guarded, idTimeMs, sleep } from '@streambed/common'
import { type Keys, shardOf } from './keys.js'
import { scripts } from './scripts.js'

/**
 * The compaction task queue: per shard n, a stream `<p>:v1:{qN}:tasks` read by one consumer group,
 * and a sorted set `<p>:v1:{qN}:delayed` of tasks waiting for their due time. A task names a
 * document and carries a token (the id of the entry that created it; `meta.task` of the document
 * holds the live token, so stale or duplicate deliveries are recognised and dropped).
 *
 * Life of a task: append-3.lua adds it to the stream → a worker reads it (XREADGROUP) → the worker
 * settles it (settle-2.lua: ack + delete, and possibly back into the delayed set) → promote-2.lua
 * moves due delayed tasks back into the stream. A worker that dies holding a task leaves it pending;
 * another worker takes it over with XAUTOCLAIM after `claimIdleMs`.
 */
export const CONSUMER_GROUP = 'streambed-workers-v1'

/** On a Redis Cluster, how long a worker waits before polling empty queue shards again. */
const CLUSTER_POLL_MS = 200

export interface Task {
  readonly shard: number
  /** Entry id in the shard's task stream (what XACK needs). */
  readonly entryId: string
  readonly doc: string
  readonly token: string
}

export type FinishResult =
  | { readonly kind: 'stale' }
  | { readonly kind: 'done' }
  | { readonly kind: 'wait'; readonly oldestId: string }
  | { readonly kind: 'dirty' }

export interface QueueDepth {
  /** Tasks in the streams, delivered or not. */
  readonly queued: number
  /** Tasks waiting in the delayed sets. */
  readonly delayed: number
  /** Delivered to a worker and not settled yet. */
  readonly pending: number
  /** Idle time of the oldest pending delivery, ms (0 if none). */
  readonly oldestPendingMs: number
}

export interface TaskQueueOptions {
  /** Command connection. */
  redis: Redis
  /** A connection only for blocking reads (XREADGROUP BLOCK ties it up). */
  blocking: Redis
  keys: Keys
  shards: number
}

type StreamReply = [string, [string, string[]][]][] | null

const parseTask = (shard: number, [entryId, fields]: [string, string[]]): Task | null => {
  let doc: string | undefined
  let token: string | undefined
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'd') doc = fields[i + 1]
    else if (fields[i] === 't') token = fields[i + 1]
  }
  return doc && token ? { shard, entryId, doc, token } : null
}

export const createTaskQueue = (opts: TaskQueueOptions) => {
  const { redis, blocking, keys, shards } = opts
  const shardIds = Array.from({ length: shards }, (_, i) => i)
  const shardOfKey = new Map(shardIds.map((s) => [keys.queue(s), s]))

  /** Creates the consumer group on every shard (existing groups are kept). */
  const ensureGroups = () =>
    guarded('REDIS_UNAVAILABLE', 'create consumer groups', async () => {
      for (const s of shardIds) {
        try {
          await redis.xgroup('CREATE', keys.queue(s), CONSUMER_GROUP, '0', 'MKSTREAM')
        } catch (err) {
          if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err
        }
      }
    })

  /**
   * Runs `fn`; if Redis lost the consumer groups (restart without persistence, failover to an empty
   * replica: appends recreate the queue streams without a group), creates them and runs it again.
   */
  const withGroups = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn()
    } catch (err) {
      if (!(err instanceof Error && err.message.includes('NOGROUP'))) throw err
      await ensureGroups()
      return await fn()
    }
  }

  /** Where each shard's XAUTOCLAIM scan continues, so repeated claims walk the whole backlog. */
  const claimCursors = new Map<number, string>()

  return {
    /** Whether this queue lives on a Redis Cluster (tasks then need `reconcile`). */
    clustered: isCluster(redis),

    ensureGroups,

    /**
     * New tasks for `consumer`, about `count` of them, waiting at most `blockMs` for one. COUNT
     * applies per stream, so each shard is asked for its share; every task returned is delivered
     * (pending for `consumer`) and must be processed or settled.
     */
    read: (consumer: string, count: number, blockMs: number): Promise<Task[]> =>
      guarded('REDIS_UNAVAILABLE', 'read tasks', () =>
        withGroups(async () => {
          const perShard = Math.max(1, Math.ceil(count / shards))
          const parse = (reply: StreamReply) => {
            const tasks: Task[] = []
            for (const [key, entries] of reply ?? []) {
              const shard = shardOfKey.get(key) ?? 0
              for (const entry of entries) {
                const task = parseTask(shard, entry)
                if (task) tasks.push(task)
              }
            }
            return tasks
          }
          if (!isCluster(blocking)) {
            const streamKeys = shardIds.map((s) => keys.queue(s))
            return parse(
              (await blocking.xreadgroup(
                'GROUP',
                CONSUMER_GROUP,
                consumer,
                'COUNT',
                perShard,
                'BLOCK',
                blockMs,
                'STREAMS',
                ...streamKeys,
                ...streamKeys.map(() => '>'),
              )) as StreamReply,
            )
          }
          // On a cluster the shards live in different slots: one read each, and no blocking
          // read (it would hold up every command on that master's connection); a short pause
          // when every shard was empty.
          const replies = await Promise.all(
            shardIds.map(
              (s) =>
                redis.xreadgroup(
                  'GROUP',
                  CONSUMER_GROUP,
                  consumer,
                  'COUNT',
                  perShard,
                  'STREAMS',
                  keys.queue(s),
                  '>',
                ) as Promise<StreamReply>,
            ),
          )
          const tasks = replies.flatMap(parse)
          if (tasks.length === 0) await sleep(Math.min(blockMs, CLUSTER_POLL_MS))
          return tasks
        }),
      ),

    /** Takes over up to `count` tasks other consumers held for longer than `minIdleMs`. */
    claim: (consumer: string, minIdleMs: number, count: number): Promise<Task[]> =>
      guarded('REDIS_UNAVAILABLE', 'claim tasks', () =>
        withGroups(async () => {
          const tasks: Task[] = []
          for (const s of shardIds) {
            if (tasks.length >= count) break
            const [next, entries] = (await redis.xautoclaim(
              keys.queue(s),
              CONSUMER_GROUP,
              consumer,
              minIdleMs,
              claimCursors.get(s) ?? '0-0',
              'COUNT',
              count - tasks.length,
            )) as [string, [string, string[]][], string[]]
            claimCursors.set(s, next)
            for (const entry of entries) {
              const task = parseTask(s, entry)
              if (task) tasks.push(task)
              // An entry without a document is junk: acknowledge it away.
              else await redis.xack(keys.queue(s), CONSUMER_GROUP, entry[0])
            }
          }
          return tasks
        }),
      ),

    /** Moves due delayed tasks into the streams; returns how many. */
    promote: (maxPerShard = 500): Promise<number> =>
      guarded('REDIS_UNAVAILABLE', 'promote delayed tasks', async () => {
        let moved = 0
        for (const s of shardIds) {
          moved += Number(
            await scripts.promote.run(redis, [keys.delayed(s), keys.queue(s)], [maxPerShard]),
          )
        }
        return moved
      }),

    /** Acknowledges a delivery; with `delayMs`, the task comes back after that long. */
    settle: (task: Task, delayMs: number | null): Promise<boolean> =>
      guarded('REDIS_UNAVAILABLE', `settle task of ${task.doc}`, async () => {
        const acked = await scripts.settle.run(
          redis,
          [keys.queue(task.shard), keys.delayed(task.shard)],
          [
            CONSUMER_GROUP,
            task.entryId,
            delayMs === null ? '' : Math.max(0, Math.round(delayMs)),
            `${task.token} ${task.doc}`,
          ],
        )
        return Number(acked) === 1
      }),

    /** Trims what storage now covers and clears the task if the document is idle (finish-2.lua). */
    finish: (
      doc: string,
      token: string,
      storedUpTo: string,
      minLifetimeMs: number,
      tombstoneTtlMs: number,
    ): Promise<FinishResult> =>
      guarded('REDIS_UNAVAILABLE', `finish compaction of ${doc}`, async () => {
        const reply = (await scripts.finish.run(
          redis,
          [keys.stream(doc), keys.meta(doc)],
          [token, storedUpTo, minLifetimeMs, tombstoneTtlMs],
        )) as Buffer[]
        const kind = String(reply[0])
        if (kind === 'wait') return { kind, oldestId: String(reply[1]) }
        if (kind === 'stale' || kind === 'done' || kind === 'dirty') return { kind }
        throw new Error(`finish-2.lua returned ${kind}`)
      }),

    /** The token of the document's live task, or null when it has none. */
    liveToken: (doc: string): Promise<string | null> =>
      guarded('REDIS_UNAVAILABLE', `task of ${doc}`, () => redis.hget(keys.meta(doc), 'task')),

    depth: (): Promise<QueueDepth> =>
      guarded('REDIS_UNAVAILABLE', 'queue depth', async () => {
        let queued = 0
        let delayed = 0
        let pending = 0
        let oldestPendingMs = 0
        for (const s of shardIds) {
          queued += await redis.xlen(keys.queue(s))
          delayed += await redis.zcard(keys.delayed(s))
          const summary = (await redis
            .xpending(keys.queue(s), CONSUMER_GROUP)
            .catch(() => [0])) as [number, ...unknown[]]
          pending += Number(summary[0])
          if (Number(summary[0]) > 0) {
            const oldest = (await redis.xpending(keys.queue(s), CONSUMER_GROUP, '-', '+', 1)) as [
              string,
              string,
              number,
              number,
            ][]
            oldestPendingMs = Math.max(oldestPendingMs, oldest[0]?.[2] ?? 0)
          }
        }
        return { queued, delayed, pending, oldestPendingMs }
      }),

    /**
     * On a Redis Cluster a document's task is marked in its slot and put on the queue by a second
     * command (append-2.lua): after a crash between the two, the mark has no queue entry and the
     * document would never be compacted. This finds marks older than `graceMs` that no queue shard
     * (stream or delayed set) holds and enqueues them; returns how many. O(documents + tasks): a
     * worker runs it now and then, one at a time (`keys.reconciler`). An extra entry it may add
     * for a task settled meanwhile is harmless (a stale token is acknowledged away).
     */
    reconcile: (graceMs: number): Promise<number> =>
      guarded('REDIS_UNAVAILABLE', 'reconcile tasks', async () => {
        // One worker at a time; the lock expires on its own should that worker die.
        if ((await redis.set(keys.reconciler, '1', 'PX', Math.max(1000, graceMs), 'NX')) === null)
          return 0
        const held = new Set<string>()
        for (const s of shardIds) {
          for (let after = '-'; ;) {
            const page = (await redis.xrange(keys.queue(s), after, '+', 'COUNT', 1000)) as [
              string,
              string[],
            ][]
            for (const entry of page) {
              const task = parseTask(s, entry)
              if (task) held.add(`${task.doc}\n${task.token}`)
            }
            if (page.length < 1000) break
            after = `(${(page[page.length - 1] as [string, string[]])[0]}`
          }
          for (const member of await redis.zrange(keys.delayed(s), 0, -1)) {
            const m = /^(\S+) (.+)$/.exec(member)
            if (m) held.add(`${m[2] as string}\n${m[1] as string}`)
          }
        }
        const [sec, us] = await redis.time()
        const nowMs = Number(sec) * 1000 + Math.floor(Number(us) / 1000)
        let enqueued = 0
        for (const node of masters(redis)) {
          let cursor = '0'
          do {
            const [next, batch] = await node.scan(cursor, 'MATCH', keys.metaPattern, 'COUNT', 1000)
            cursor = next
            for (const key of batch) {
              const doc = keys.decode(key)?.doc
              const token = doc === undefined ? null : await node.hget(key, 'task')
              if (!doc || !token || nowMs - idTimeMs(token) < graceMs) continue
              if (held.has(`${doc}\n${token}`)) continue
              await redis.xadd(keys.queue(shardOf(doc, shards)), '*', 'd', doc, 't', token)
              enqueued++
            }
          } while (cursor !== '0')
        }
        return enqueued
      }),

    /** Redis time in ms (stream ids and due times use it, not the local clock). */
    now: (): Promise<number> =>
      guarded('REDIS_UNAVAILABLE', 'time', async () => {
        const [s, us] = await redis.time()
        return Number(s) * 1000 + Math.floor(Number(us) / 1000)
      }),
  }
}

export type TaskQueue = ReturnType<typeof createTaskQueue>
