import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { AppError } from '@streambed/common'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { createKeys } from './keys.js'
import { heartbeat, readEpoch } from './node-registry.js'

const fx = useRedisServer()

const redisNowMs = async (): Promise<number> => {
  const [s, us] = await fx.admin.time()
  return Number(s) * 1000 + Math.floor(Number(us) / 1000)
}

describe('node registry', () => {
  it('records the node at Redis time and reports the silent nodes as dead until forgotten', async () => {
    const keys = createKeys(uniquePrefix('nodes'))
    const now = await redisNowMs()
    await fx.admin.zadd(
      keys.nodes,
      now - 5_000,
      'quiet',
      now - 60_000,
      'dead',
      now - 7_200_000,
      'gone',
    )

    const hb = await heartbeat(fx.admin, keys, 'me', 10_000, 3_600_000)

    expect(hb.nowMs).toBeGreaterThanOrEqual(now)
    expect(hb.nowMs).toBeLessThan(now + 5_000)
    expect(hb).toEqual({ nowMs: hb.nowMs, dead: new Set(['dead']) })
    expect(await fx.admin.zscore(keys.nodes, 'me')).toBe(String(hb.nowMs))
    expect(await fx.admin.zrange(keys.nodes, 0, -1)).toEqual(['dead', 'quiet', 'me'])
  })

  it('keeps one epoch per prefix', async () => {
    const keys = createKeys(uniquePrefix('epoch'))
    const first = await readEpoch(fx.admin, keys)
    expect(await readEpoch(fx.admin, keys)).toBe(first)
    expect(await fx.admin.get(keys.epoch)).toBe(first)
  })

  it('reports an unreachable Redis as REDIS_UNAVAILABLE naming the call', async () => {
    const keys = createKeys(uniquePrefix('down'))
    const closed = new Redis(fx.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    closed.disconnect()
    const err: unknown = await heartbeat(closed, keys, 'me', 10_000, 60_000).catch(
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(AppError)
    expect(err).toMatchObject({ code: 'REDIS_UNAVAILABLE' })
    expect((err as AppError).message).toMatch(/^node heartbeat: \S/)
    expect((err as AppError).cause).toBeInstanceOf(Error)
  })
})
