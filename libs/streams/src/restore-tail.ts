import { isCluster, type Redis } from './redis.js'
import { AppError, compareIds, guarded, isStreamId, type StreamId } from '@streambed/common'
import { type Keys, shardOf } from './keys.js'
import { scripts } from './scripts.js'

export interface RestoreTailOptions {
  /** The stored watermark now (`0-0`: nothing stored): entries at or below it are skipped. */
  above: StreamId
  /** The last id the document had reached when the tail was read; `meta.last` becomes at least it. */
  reached: StreamId
  /** Entries, ids ascending, all above `above` in the normal case. */
  entries: readonly { readonly id: StreamId; readonly update: Uint8Array }[]
  /** Written as the entries' origin. */
  origin: string
  /** Task queue shards of the deployment (the document's task goes to its shard). */
  queueShards: number
}

export interface RestoreTailResult {
  /** Entries written. */
  readonly added: number
  /** Entries the stream held already (a restore run again). */
  readonly present: number
  /** The stream held later entries and was rewritten as the union, in id order. */
  readonly rebuilt: boolean
  /** This call created the document's compaction task. */
  readonly newTask: boolean
}

/** Entries per script call: each call is atomic, together they are idempotent. */
const CHUNK = 1000

/**
 * Puts stream entries back with their original ids (restore-tail-3.lua): skips those at or below
 * `above` and those present, makes sure the document has a compaction task, and drops its clock
 * map (the next append seeds it from storage + stream). Throws `AppError('BAD_MESSAGE')` for an
 * entry id that is not a stream id or out of order, `REDIS_UNAVAILABLE` when Redis fails.
 */
export const restoreTail = async (
  redis: Redis,
  keys: Keys,
  doc: string,
  opts: RestoreTailOptions,
): Promise<RestoreTailResult> => {
  let previous: StreamId | null = null
  for (const e of opts.entries) {
    if (!isStreamId(e.id) || (previous !== null && compareIds(previous, e.id) >= 0))
      throw new AppError('BAD_MESSAGE', `entries of ${doc} to restore: bad or unordered id ${e.id}`)
    previous = e.id
  }
  return guarded('REDIS_UNAVAILABLE', `restore the stream of ${doc}`, async () => {
    const total = { added: 0, present: 0, rebuilt: false, newTask: false }
    const queue = keys.queue(shardOf(doc, opts.queueShards))
    const cluster = isCluster(redis)
    // A cluster keeps the queue in another slot: the task goes on in a second command.
    const streamKeys = cluster
      ? [keys.stream(doc), keys.meta(doc)]
      : [keys.stream(doc), keys.meta(doc), queue]
    const script = cluster ? scripts.restoreTailInSlot : scripts.restoreTail
    // One call even for no entries: it drops the clock map.
    for (let at = 0; at === 0 || at < opts.entries.length; at += CHUNK) {
      const args: (string | Uint8Array)[] = [doc, opts.above, opts.reached, opts.origin]
      for (const e of opts.entries.slice(at, at + CHUNK)) args.push(e.id, e.update)
      const [added, present, rebuilt, newTask, highest] = (await script.run(
        redis,
        streamKeys,
        args,
      )) as [number, number, number, number, Buffer | undefined]
      if (cluster && newTask === 1 && highest)
        await redis.xadd(queue, '*', 'd', doc, 't', highest.toString())
      total.added += added
      total.present += present
      total.rebuilt ||= rebuilt === 1
      total.newTask ||= newTask === 1
    }
    return total
  })
}
