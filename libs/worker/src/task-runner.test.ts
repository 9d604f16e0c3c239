import { describe, expect, it, vi } from 'vitest'
import { AppError, silentLogger } from '@streambed/common'
import type { Task } from '@streambed/streams'
import type { Outcome } from './compactor.js'
import type { HookPoint } from './hooks.js'
import { createWorkerMetrics } from './metrics.js'
import { createTaskRunner, retryDelayMs } from './task-runner.js'

const task = (doc: string): Task => ({ shard: 1, entryId: '1-0', doc, token: 't' })

/** A runner over a recorded queue; `outcomes` answers each process() call in turn. */
const setup = (outcomes: (Outcome | Error)[]) => {
  const calls: string[] = []
  const settled: { doc: string; delayMs: number | null }[] = []
  let settleFails = false
  const metrics = createWorkerMetrics(undefined, { defaultMetrics: false })
  const logger = silentLogger()
  const warn = vi.fn()
  logger.warn = warn
  const runner = createTaskRunner({
    process: async () => {
      const next = outcomes.shift()
      if (!next) throw new Error('no outcome left')
      if (next instanceof Error) throw next
      return next
    },
    queue: {
      settle: async (t, delayMs) => {
        calls.push('settle')
        if (settleFails) throw new AppError('REDIS_UNAVAILABLE', 'settle: connection lost')
        settled.push({ doc: t.doc, delayMs })
        return true
      },
    },
    hooks: async (point: HookPoint) => void calls.push(point),
    metrics,
    logger,
  })
  const count = async (name: string, label: Record<string, string>) =>
    (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) =>
      Object.entries(label).every(([k, l]) => v.labels[k] === l),
    )?.value ?? 0
  return { runner, calls, settled, warn, count, failSettle: () => (settleFails = true) }
}

describe('retryDelayMs', () => {
  it('doubles from 250 ms and stops at 30 s', () => {
    expect([1, 2, 3, 4].map(retryDelayMs)).toEqual([250, 500, 1000, 2000])
    expect(retryDelayMs(0)).toBe(250)
    expect(retryDelayMs(8)).toBe(30_000)
    expect(retryDelayMs(100)).toBe(30_000)
  })
})

describe('createTaskRunner', () => {
  it('settles each outcome after the before-ack hook and counts it', async () => {
    const { runner, calls, settled, count } = setup([
      { settle: 'ack', reason: 'done' },
      { settle: 'later', delayMs: 120, reason: 'not due' },
    ])
    await runner.run(task('a'))
    await runner.run(task('b'))
    expect(settled).toEqual([
      { doc: 'a', delayMs: null },
      { doc: 'b', delayMs: 120 },
    ])
    expect(calls).toEqual(['before-ack', 'settle', 'before-ack', 'settle'])
    expect(await count('streambed_worker_tasks_total', { outcome: 'done' })).toBe(1)
    expect(await count('streambed_worker_tasks_total', { outcome: 'not due' })).toBe(1)
  })

  it('puts a failed task back with a backoff that grows per document and resets on success', async () => {
    const boom = new AppError('STORAGE_UNAVAILABLE', 'load a: down')
    const { runner, settled, count } = setup([
      boom,
      boom,
      new AppError('STORAGE_UNAVAILABLE', 'load b: down'),
      { settle: 'ack', reason: 'done' },
      boom,
    ])
    for (const doc of ['a', 'a', 'b', 'a', 'a']) await runner.run(task(doc))
    expect(settled.map((s) => `${s.doc} ${s.delayMs}`)).toEqual([
      'a 250',
      'a 500',
      'b 250',
      'a null',
      'a 250',
    ])
    expect(
      await count('streambed_compaction_failures_total', { code: 'STORAGE_UNAVAILABLE' }),
    ).toBe(4)
    expect(await count('streambed_worker_tasks_total', { outcome: 'failed' })).toBe(4)
  })

  it('leaves a task pending, with a warning, when even settling it fails', async () => {
    const { runner, warn, failSettle } = setup([new Error('merge failed')])
    failSettle()
    await expect(runner.run(task('a'))).resolves.toBeUndefined()
    expect(warn).toHaveBeenLastCalledWith(
      expect.objectContaining({ doc: 'a', err: expect.any(AppError) }),
      'could not settle a failed task; it stays pending',
    )
  })

  it('settle rejects when the queue does (the dispatcher logs it)', async () => {
    const { runner, failSettle } = setup([])
    failSettle()
    await expect(runner.settle(task('a'), 5, 'busy')).rejects.toThrow(/connection lost/)
  })
})
