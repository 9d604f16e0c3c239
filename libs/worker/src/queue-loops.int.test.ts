import { expect, it, vi } from 'vitest'
import { silentLogger } from '@streambed/common'
import { type Task, createDocStreams, createKeys, createTaskQueue } from '@streambed/streams'
import { captureUpdate, uniquePrefix, useRedisServer } from '@streambed/testing'
import { createWorkerMetrics } from './metrics.js'
import { claimLoop, promoteLoop, queueMetricsLoop, readLoop } from './queue-loops.js'
import { createTaskDispatcher } from './task-dispatcher.js'

const fx = useRedisServer()
const logger = silentLogger()

/** A queue on a fresh prefix with one task per document in `docs`. */
const queueWithTasks = async (name: string, docs: readonly string[]) => {
  const keys = createKeys(uniquePrefix(name))
  const queue = createTaskQueue({ redis: fx.admin, blocking: fx.blocking, keys, shards: 2 })
  await queue.ensureGroups()
  const streams = createDocStreams({ redis: fx.admin, keys, queueShards: 2 })
  for (const d of docs)
    await streams.append(
      d,
      captureUpdate((y) => y.getText('t').insert(0, d)),
      'n/1',
    )
  return queue
}

/** A dispatcher that records the documents it runs and acknowledges each task. */
const recordingDispatcher = (queue: ReturnType<typeof createTaskQueue>, concurrency = 2) => {
  const ran: string[] = []
  const dispatcher = createTaskDispatcher({
    concurrency,
    run: async (t: Task) => {
      ran.push(t.doc)
      await queue.settle(t, null)
    },
    putBack: (t) => queue.settle(t, 0).then(() => undefined),
    logger,
  })
  return { dispatcher, ran }
}

it('reads every task into the dispatcher as slots free up', async () => {
  const docs = ['a', 'b', 'c', 'd', 'e']
  const queue = await queueWithTasks('read', docs)
  const { dispatcher, ran } = recordingDispatcher(queue)
  await using _loop = readLoop({ consumer: 'w1', queue, dispatcher, logger, blockMs: 100 })
  await vi.waitFor(() => expect([...ran].sort()).toEqual(docs), { timeout: 5000 })
  expect((await queue.depth()).pending).toBe(0)
})

it('takes over a task another consumer holds for longer than claimIdleMs', async () => {
  const queue = await queueWithTasks('claim', ['held'])
  const delivered = await queue.read('dead', 10, 100)
  expect(delivered.map((t) => t.doc)).toEqual(['held'])
  const { dispatcher, ran } = recordingDispatcher(queue)
  await using _loop = claimLoop({ consumer: 'w1', queue, dispatcher, logger, claimIdleMs: 200 })
  await vi.waitFor(() => expect(ran).toEqual(['held']), { timeout: 5000 })
  expect((await queue.depth()).pending).toBe(0)
})

it('promotes due delayed tasks and publishes the queue depth', async () => {
  const queue = await queueWithTasks('promote', ['later'])
  const [task] = await queue.read('w1', 10, 100)
  await queue.settle(task!, 50)
  expect(await queue.depth()).toMatchObject({ queued: 0, delayed: 1 })
  const metrics = createWorkerMetrics(undefined, { defaultMetrics: false })
  await using _depth = queueMetricsLoop(queue, metrics, logger)
  await vi.waitFor(async () =>
    expect(await metrics.registry.metrics()).toContain('streambed_queue_tasks{state="delayed"} 1'),
  )
  await using _promote = promoteLoop(queue, logger, 20)
  await vi.waitFor(async () => expect(await queue.depth()).toMatchObject({ queued: 1, delayed: 0 }))
  expect((await queue.read('w1', 10, 100)).map((t) => t.doc)).toEqual(['later'])
})
