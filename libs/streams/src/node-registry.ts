import type { Redis } from 'ioredis'
import type { Keys } from './keys.js'
import { scripts } from './scripts.js'
import { redisError } from './redis.js'

export interface Heartbeat {
  /** Redis time when the heartbeat was recorded, ms. */
  readonly nowMs: number
  readonly live: ReadonlySet<string>
  readonly dead: ReadonlySet<string>
}

/**
 * Records that `nodeId` is alive and returns which nodes are (not). Nodes silent for `timeoutMs`
 * count as dead; after `forgetMs` they are dropped from the registry.
 */
export const heartbeat = async (
  redis: Redis,
  keys: Keys,
  nodeId: string,
  timeoutMs: number,
  forgetMs: number,
): Promise<Heartbeat> => {
  try {
    const [nowMs, live, dead] = (await scripts.heartbeat.run(
      redis,
      [keys.nodes],
      [nodeId, timeoutMs, forgetMs],
    )) as [number, Buffer[], Buffer[]]
    return {
      nowMs,
      live: new Set(live.map(String)),
      dead: new Set(dead.map(String)),
    }
  } catch (err) {
    throw redisError(err, 'node heartbeat')
  }
}

/**
 * The value under `<p>:v1:epoch`, created on first use. If it changes or disappears while a process
 * runs, Redis lost its data (restart without persistence, FLUSHALL, failover to an empty replica).
 */
export const readEpoch = async (redis: Redis, keys: Keys): Promise<string> => {
  try {
    const fresh = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`
    await redis.set(keys.epoch, fresh, 'NX')
    const value = await redis.get(keys.epoch)
    return value ?? fresh
  } catch (err) {
    throw redisError(err, 'epoch')
  }
}
