import type { Logger } from '@streambed/common'
import type { Task } from '@streambed/streams'

export interface TaskDispatcherOptions {
  /** Tasks processed at once. */
  concurrency: number
  /** Processes and settles a task; the dispatcher logs what it throws. */
  run: (task: Task) => Promise<void>
  /** Settles a delivery for a document already in progress here (it comes back later). */
  putBack: (task: Task) => Promise<void>
  logger: Logger
  /** Told the number of tasks in progress whenever it changes. */
  onActiveChange?: (active: number) => void
  /**
   * Free slots waitForSlot waits for; default 1. More make a busy worker read its tasks in groups,
   * which start together (and share storage calls) instead of one by one as slots free up.
   */
  slotsPerRead?: number
}

export interface TaskDispatcher {
  /** Takes delivered tasks; they start as slots free up. */
  accept(tasks: readonly Task[]): void
  /** Slots neither in progress nor promised to the backlog: how many tasks to ask the queue for. */
  freeSlots(): number
  /**
   * Resolves when slots may be free (slotsPerRead of them): at once if they are, else when enough
   * tasks ended, or on close().
   */
  waitForSlot(): Promise<void>
  /** Stops handing out slots; wakes a waitForSlot(). */
  close(): void
  readonly closed: boolean
  /** Empties the backlog through `putBack` (tasks never started), then awaits the ones in progress. */
  drain(putBack: (task: Task) => Promise<unknown>): Promise<void>
  readonly activeTasks: number
}

/**
 * Runs up to `concurrency` tasks at a time, keeps the others in a backlog (a queue read can deliver
 * a few more than asked for), and processes one delivery per document at a time in this worker: a
 * second delivery for a document in progress goes back through `putBack`.
 */
export const createTaskDispatcher = (opts: TaskDispatcherOptions): TaskDispatcher => {
  const inProgress = new Map<string, Promise<void>>()
  const activeDocs = new Set<string>()
  const backlog: Task[] = []
  let slotFreed: (() => void) | null = null
  let closed = false
  const slotsPerRead = Math.max(1, Math.min(opts.slotsPerRead ?? 1, opts.concurrency))
  const activeChanged = () => opts.onActiveChange?.(inProgress.size)

  const dispatch = (task: Task) => {
    const key = `${task.shard}:${task.entryId}`
    if (inProgress.has(key)) return
    const duplicate = activeDocs.has(task.doc)
    if (!duplicate) activeDocs.add(task.doc)
    const work = duplicate ? opts.putBack(task) : opts.run(task)
    const p = work
      .catch((err: unknown) => opts.logger.warn({ err, doc: task.doc }, 'could not settle task'))
      .finally(() => {
        inProgress.delete(key)
        if (!duplicate) activeDocs.delete(task.doc)
        activeChanged()
        pump()
        if (freeSlots() >= slotsPerRead) slotFreed?.()
      })
    inProgress.set(key, p)
    activeChanged()
  }
  const pump = () => {
    while (backlog.length > 0 && inProgress.size < opts.concurrency)
      dispatch(backlog.shift() as Task)
  }
  const freeSlots = () => opts.concurrency - inProgress.size - backlog.length

  return {
    accept: (tasks) => {
      backlog.push(...tasks)
      pump()
    },
    freeSlots,
    waitForSlot: () =>
      freeSlots() >= slotsPerRead
        ? Promise.resolve()
        : new Promise<void>((resolve) => (slotFreed = resolve)),
    close: () => {
      closed = true
      slotFreed?.()
    },
    get closed() {
      return closed
    },
    drain: async (putBack) => {
      await Promise.allSettled(backlog.splice(0).map((task) => putBack(task)))
      await Promise.allSettled([...inProgress.values()])
    },
    get activeTasks() {
      return inProgress.size
    },
  }
}
