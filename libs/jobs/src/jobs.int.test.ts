import { Redis } from 'ioredis'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { silentLogger } from '@streambed/common'
import { uniquePrefix, useRedisServer } from '@streambed/testing'
import { createJobs, type Jobs, type Operation } from './jobs.js'

const fx = useRedisServer()
const open: Jobs[] = []
const connections: Redis[] = []
afterEach(async () => {
  for (const j of open.splice(0)) await j.close()
  for (const c of connections.splice(0)) c.disconnect()
})

/** Sums numbers in batches of two; counts batch runs in Redis, can hang or fail on demand. */
const sum = (prefix: string, behaviour: { hangOnce?: number; failAlways?: number } = {}) => {
  const op: Operation<{ numbers: number[] }, number[], number, { total: number }> = {
    name: 'sum',
    plan: async ({ numbers }) => {
      const batches: number[][] = []
      for (let i = 0; i < numbers.length; i += 2) batches.push(numbers.slice(i, i + 2))
      return batches
    },
    runBatch: async (batch, ctx) => {
      const runs = await fx.admin.incr(`${prefix}:runs:${batch.join(',')}`)
      if (batch[0] === behaviour.failAlways) throw new Error(`cannot add ${batch[0]}`)
      // The first run of this batch never ends: its worker "dies" (closed with force).
      if (batch[0] === behaviour.hangOnce && runs === 1) await new Promise(() => undefined)
      await ctx.progress(1)
      return batch.reduce((a, b) => a + b, 0)
    },
    finish: async (_params, results) => ({ total: results.reduce((a, b) => a + b, 0) }),
  }
  return op
}

const jobsFor = (redisPrefix: string, op: Operation<never, never, never, never>) => {
  const connection = new Redis(fx.url, { maxRetriesPerRequest: null })
  connections.push(connection)
  const jobs = createJobs({
    connection,
    redisPrefix,
    logger: silentLogger(),
    operations: [op],
    lockMs: 1000,
    attempts: 3,
  })
  open.push(jobs)
  return jobs
}

describe('jobs', () => {
  it('runs an operation as batches on a worker and finishes it with their results', async () => {
    const prefix = uniquePrefix('jobs')
    const op = sum(prefix) as unknown as Operation<never, never, never, never>
    const client = jobsFor(prefix, op)
    const worker = jobsFor(prefix, op)
    expect(await client.workers()).toBe(0)
    worker.startWorker(2)
    await vi.waitFor(async () => expect(await client.workers()).toBe(1))
    const id = await client.submit('sum', { numbers: [1, 2, 3, 4, 5] })
    expect(id).not.toContain(':')
    const seen: number[] = []
    const final = await client.follow(id, (s) => seen.push(s.done), 50)
    expect(final).toMatchObject({ state: 'completed', done: 3, total: 3, result: { total: 15 } })
    expect(seen[seen.length - 1]).toBe(3)
  })

  it('runs the same code inline, without a worker', async () => {
    const prefix = uniquePrefix('jobs')
    const jobs = jobsFor(prefix, sum(prefix) as unknown as Operation<never, never, never, never>)
    const progress: string[] = []
    const result = await jobs.runInline('sum', { numbers: [10, 20, 30] }, (d, t) =>
      progress.push(`${d}/${t}`),
    )
    expect(result).toEqual({ total: 60 })
    expect(progress).toEqual(['0/2', '1/2', '2/2'])
  })

  it('runs a batch again on another worker when its worker dies', async () => {
    const prefix = uniquePrefix('jobs')
    const op = sum(prefix, { hangOnce: 3 }) as unknown as Operation<never, never, never, never>
    const client = jobsFor(prefix, op)
    const doomed = jobsFor(prefix, op)
    doomed.startWorker(4)
    const id = await client.submit('sum', { numbers: [1, 2, 3, 4] })
    // The doomed worker took the batch [3, 4] and hangs in it; it dies without releasing it.
    await vi.waitFor(async () => expect(await fx.admin.get(`${prefix}:runs:3,4`)).toBe('1'))
    await doomed.close(true)
    open.splice(open.indexOf(doomed), 1)
    const survivor = jobsFor(prefix, op)
    survivor.startWorker(2)
    const final = await client.follow(id, () => undefined, 100)
    expect(final).toMatchObject({ state: 'completed', result: { total: 10 } })
    expect(Number(await fx.admin.get(`${prefix}:runs:3,4`))).toBeGreaterThanOrEqual(2)
  }, 60_000)

  it('fails the operation, with the batch error, when a batch keeps failing', async () => {
    const prefix = uniquePrefix('jobs')
    const op = sum(prefix, { failAlways: 5 }) as unknown as Operation<never, never, never, never>
    const jobs = jobsFor(prefix, op)
    jobs.startWorker(2)
    const id = await jobs.submit('sum', { numbers: [1, 2, 5, 6] })
    const final = await jobs.follow(id, () => undefined, 100)
    expect(final.state).toBe('failed')
    expect(Number(await fx.admin.get(`${prefix}:runs:5,6`))).toBe(3)
  }, 60_000)

  it('submits an operation on a schedule', async () => {
    const prefix = uniquePrefix('jobs')
    const jobs = jobsFor(prefix, sum(prefix) as unknown as Operation<never, never, never, never>)
    jobs.startWorker(2)
    await jobs.schedule('every-second', '* * * * * *', 'sum', { numbers: [7, 8] })
    await vi.waitFor(async () => expect(await fx.admin.get(`${prefix}:runs:7,8`)).not.toBeNull(), {
      timeout: 10_000,
    })
    await jobs.unschedule('every-second')
  })
})
