import { describe, expect, it } from 'vitest'
import { AppError } from '@streambed/common'
import { workerReadiness } from './worker-process.js'

describe('workerReadiness', () => {
  const worker = { activeTasks: 3 }
  const up = { ping: () => Promise.resolve() }

  it('is ready, with the tasks in progress, when Redis is connected and storage answers', async () => {
    expect(await workerReadiness({ status: 'ready' }, up, worker)()).toEqual({
      ready: true,
      details: { activeTasks: 3 },
    })
  })

  it('names Redis first, without asking storage', async () => {
    let pinged = false
    const storage = { ping: async () => void (pinged = true) }
    expect(await workerReadiness({ status: 'reconnecting' }, storage, worker)()).toEqual({
      ready: false,
      reason: 'redis reconnecting',
    })
    expect(pinged).toBe(false)
  })

  it('gives the storage failure as the reason', async () => {
    const down = {
      ping: () => Promise.reject(new AppError('STORAGE_UNAVAILABLE', 'ping postgres: refused')),
    }
    expect(await workerReadiness({ status: 'ready' }, down, worker)()).toEqual({
      ready: false,
      reason: 'ping postgres: refused',
    })
  })
})
