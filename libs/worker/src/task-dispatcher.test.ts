import { describe, expect, it, vi } from 'vitest'
import { silentLogger } from '@streambed/common'
import type { Task } from '@streambed/streams'
import { createTaskDispatcher, type TaskDispatcherOptions } from './task-dispatcher.js'

let nextEntry = 0
const task = (doc: string, entryId = `${++nextEntry}-0`): Task => ({
  shard: 0,
  entryId,
  doc,
  token: `t-${doc}`,
})

/** A dispatcher whose runs finish only when the test says so. */
const setup = (concurrency: number, over: Partial<TaskDispatcherOptions> = {}) => {
  const running = new Map<Task, () => void>()
  const putBack: Task[] = []
  const active: number[] = []
  const logger = silentLogger()
  const dispatcher = createTaskDispatcher({
    concurrency,
    run: (t) => new Promise<void>((resolve) => running.set(t, resolve)),
    putBack: async (t) => void putBack.push(t),
    logger,
    onActiveChange: (n) => active.push(n),
    ...over,
  })
  /** Lets `t` finish and waits until the dispatcher has seen it (its promise chain settled). */
  const finish = async (t: Task) => {
    const resolve = running.get(t)
    if (!resolve) throw new Error(`${t.doc} is not running`)
    running.delete(t)
    resolve()
    await new Promise((r) => setImmediate(r))
  }
  return { dispatcher, running, putBack, active, logger, finish }
}

describe('createTaskDispatcher', () => {
  it('runs up to `concurrency` tasks and starts the backlog as slots free up', async () => {
    const { dispatcher, running, active, finish } = setup(2)
    const [a, b, c] = [task('a'), task('b'), task('c')]
    expect(dispatcher.freeSlots()).toBe(2)
    dispatcher.accept([a, b, c])
    expect([...running.keys()]).toEqual([a, b])
    expect(dispatcher.activeTasks).toBe(2)
    // The backlog counts against the free slots: a read asks only for what can start.
    expect(dispatcher.freeSlots()).toBe(-1)
    await finish(a)
    expect([...running.keys()]).toEqual([b, c])
    expect(dispatcher.freeSlots()).toBe(0)
    await finish(b)
    await finish(c)
    expect(dispatcher.activeTasks).toBe(0)
    expect(dispatcher.freeSlots()).toBe(2)
    expect(active).toEqual([1, 2, 1, 2, 1, 0])
  })

  it('processes one delivery per document at a time and puts the others back', async () => {
    const { dispatcher, running, putBack, finish } = setup(4)
    const first = task('doc')
    const second = task('doc')
    dispatcher.accept([first, second])
    expect([...running.keys()]).toEqual([first])
    await vi.waitFor(() => expect(putBack).toEqual([second]))
    await finish(first)
    const third = task('doc')
    dispatcher.accept([third])
    expect([...running.keys()]).toEqual([third])
    expect(putBack).toEqual([second])
  })

  it('ignores a delivery it is already processing', () => {
    const { dispatcher, running, putBack } = setup(4)
    const t = task('doc', '7-0')
    dispatcher.accept([t, { ...t }])
    expect(running.size).toBe(1)
    expect(dispatcher.activeTasks).toBe(1)
    expect(putBack).toEqual([])
  })

  it('logs a task that fails to settle and frees its slot', async () => {
    const warn = vi.fn()
    const logger = silentLogger()
    logger.warn = warn
    const dispatcher = createTaskDispatcher({
      concurrency: 1,
      run: () => Promise.reject(new Error('redis down')),
      putBack: () => Promise.resolve(),
      logger,
    })
    dispatcher.accept([task('a'), task('b')])
    await vi.waitFor(() => expect(warn).toHaveBeenCalledTimes(2))
    expect(warn).toHaveBeenCalledWith(
      expect.objectContaining({ doc: 'a', err: expect.any(Error) }),
      'could not settle task',
    )
    expect(dispatcher.activeTasks).toBe(0)
  })

  it('waitForSlot resolves at once with a free slot, else when a task ends or on close', async () => {
    const { dispatcher, finish } = setup(1)
    await dispatcher.waitForSlot()
    const a = task('a')
    dispatcher.accept([a])
    let woken = false
    const waiting = dispatcher.waitForSlot().then(() => (woken = true))
    await new Promise((r) => setImmediate(r))
    expect(woken).toBe(false)
    await finish(a)
    await waiting
    expect(woken).toBe(true)

    dispatcher.accept([task('b')])
    const beforeClose = dispatcher.waitForSlot()
    expect(dispatcher.closed).toBe(false)
    dispatcher.close()
    expect(dispatcher.closed).toBe(true)
    await beforeClose
  })

  it('with slotsPerRead, waitForSlot waits until that many slots are free', async () => {
    const { dispatcher, finish } = setup(4, { slotsPerRead: 2 })
    const [a, b, c] = [task('a'), task('b'), task('c')]
    dispatcher.accept([a, b, c, task('d')])
    let woken = false
    const waiting = dispatcher.waitForSlot().then(() => (woken = true))
    await finish(a)
    // One free slot is not enough: a read now would start a task on its own.
    expect(woken).toBe(false)
    await finish(b)
    await waiting
    expect(dispatcher.freeSlots()).toBe(2)
    await finish(c)
    await dispatcher.waitForSlot()
  })

  it('drain puts back the tasks never started, then awaits the ones in progress', async () => {
    const { dispatcher, running } = setup(1)
    const [a, b, c] = [task('a'), task('b'), task('c')]
    dispatcher.accept([a, b, c])
    dispatcher.close()
    const returned: Task[] = []
    let drained = false
    const draining = dispatcher
      .drain(async (t) => void returned.push(t))
      .then(() => (drained = true))
    await vi.waitFor(() => expect(returned).toEqual([b, c]))
    expect(drained).toBe(false)
    running.get(a)?.()
    await draining
    expect(dispatcher.activeTasks).toBe(0)
    // What was put back does not start afterwards.
    expect([...running.keys()]).toEqual([a])
  })
})
