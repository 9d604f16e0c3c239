import type { Redis } from './redis.js'
import { guarded } from '@streambed/common'
import type { Keys } from './keys.js'
import { scripts } from './scripts.js'

/** How long a deleted document's tombstone (its last id and deletion time) stays in Redis. */
export const DELETED_TOMBSTONE_TTL_MS = 7 * 24 * 3600 * 1000

export interface DeletedState {
  /** The document had a stream or a pending compaction in Redis. */
  readonly existed: boolean
  /** Redis time (ms) of the deletion, kept in the tombstone as `deleted`. */
  readonly deletedAt: number
}

/**
 * Deletes a document's Redis state (delete-doc-3.lua): stream, awareness and clock map, keeping
 * a tombstone, and tells every node to close the document's sockets. Storage is the caller's: it
 * deletes it next, then calls `dropClocks`. Throws `AppError('REDIS_UNAVAILABLE')`.
 */
export const deleteDocumentState = (
  redis: Redis,
  keys: Keys,
  doc: string,
  origin: string,
): Promise<DeletedState> =>
  guarded('REDIS_UNAVAILABLE', `delete ${doc} from Redis`, async () => {
    const [existed, deletedAt] = (await scripts.deleteDoc.run(
      redis,
      [keys.stream(doc), keys.meta(doc), keys.awareness(doc)],
      [keys.channel(doc), origin, DELETED_TOMBSTONE_TTL_MS],
    )) as [number, number]
    return { existed: existed === 1, deletedAt: Number(deletedAt) }
  })

/** Forgets the document's clock map (drop-clocks-1.lua); the next append seeds it again. */
export const dropClocks = (redis: Redis, keys: Keys, doc: string): Promise<number> =>
  guarded('REDIS_UNAVAILABLE', `drop the clock map of ${doc}`, async () =>
    Number(await scripts.dropClocks.run(redis, [keys.meta(doc)], [])),
  )

/**
 * When the document was last deleted (Redis time, ms), from its tombstone, or null. A worker that
 * stored the document after reading it before that time deletes what it stored.
 */
export const deletedAt = (redis: Redis, keys: Keys, doc: string): Promise<number | null> =>
  guarded('REDIS_UNAVAILABLE', `read the tombstone of ${doc}`, async () => {
    const value = await redis.hget(keys.meta(doc), 'deleted')
    return value === null ? null : Number(value)
  })
