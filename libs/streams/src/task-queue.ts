import type { Redis } from 'ioredis'
import { guarded } from '@streambed/common'
import type { Keys } from './keys.js'
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
    ensureGroups,

    /**
     * New tasks for `consumer`, about `count` of them, waiting at most `blockMs` for one. COUNT
     * applies per stream, so each shard is asked for its share; every task returned is delivered
     * (pending for `consumer`) and must be processed or settled.
     */
    read: (consumer: string, count: number, blockMs: number): Promise<Task[]> =>
      guarded('REDIS_UNAVAILABLE', 'read tasks', () =>
        withGroups(async () => {
          const streamKeys = shardIds.map((s) => keys.queue(s))
          const reply = (await blocking.xreadgroup(
            'GROUP',
            CONSUMER_GROUP,
            consumer,
            'COUNT',
            Math.max(1, Math.ceil(count / shards)),
            'BLOCK',
            blockMs,
            'STREAMS',
            ...streamKeys,
            ...streamKeys.map(() => '>'),
          )) as StreamReply
          const tasks: Task[] = []
          for (const [key, entries] of reply ?? []) {
            const shard = shardOfKey.get(key) ?? 0
            for (const entry of entries) {
              const task = parseTask(shard, entry)
              if (task) tasks.push(task)
            }
          }
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

    /** Redis time in ms (stream ids and due times use it, not the local clock). */
    now: (): Promise<number> =>
      guarded('REDIS_UNAVAILABLE', 'time', async () => {
        const [s, us] = await redis.time()
        return Number(s) * 1000 + Math.floor(Number(us) / 1000)
      }),
  }
}

export type TaskQueue = ReturnType<typeof createTaskQueue>
