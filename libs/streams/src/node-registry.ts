import type { Redis } from './redis.js'
import { guarded } from '@streambed/common'
import type { Keys } from './keys.js'
import { scripts } from './scripts.js'

export interface Heartbeat {
  /** Redis time when the heartbeat was recorded, ms. */
  readonly nowMs: number
  /** Nodes silent for longer than the timeout and not forgotten yet. */
  readonly dead: ReadonlySet<string>
}

/**
 * Records that `nodeId` is alive and returns which nodes are not. Nodes silent for `timeoutMs`
 * count as dead; after `forgetMs` they are dropped from the registry.
 */
export const heartbeat = (
  redis: Redis,
  keys: Keys,
  nodeId: string,
  timeoutMs: number,
  forgetMs: number,
): Promise<Heartbeat> =>
  guarded('REDIS_UNAVAILABLE', 'node heartbeat', async () => {
    const [nowMs, dead] = (await scripts.heartbeat.run(
      redis,
      [keys.nodes],
      [nodeId, timeoutMs, forgetMs],
    )) as [number, Buffer[]]
    return { nowMs, dead: new Set(dead.map(String)) }
  })

/**
 * The value under `<p>:v1:epoch`, created on first use. If it changes or disappears while a process
 * runs, Redis lost its data (restart without persistence, FLUSHALL, failover to an empty replica).
 */
export const readEpoch = (redis: Redis, keys: Keys): Promise<string> =>
  guarded('REDIS_UNAVAILABLE', 'epoch', async () => {
    const fresh = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`
    await redis.set(keys.epoch, fresh, 'NX')
    const value = await redis.get(keys.epoch)
    return value ?? fresh
  })
