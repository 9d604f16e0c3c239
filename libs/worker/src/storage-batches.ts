import type { Logger } from '@streambed/common'
import type { DocStorage, LogEntry, StoredDoc, Watermark } from '@streambed/storage'

/**
 * One compaction's storage calls, as one lane of a batch: each waits until every other lane of the
 * batch waits too (or has left it), and then the waiting calls of the earliest kind go to storage
 * as one (loadMany, appendLogMany, compareAndSetMany: one transaction, one pass of fsyncs). The
 * calls are made in order (load, appendLog, compareAndSet), once each; a repeated or later call
 * goes to storage on its own. When a batched call fails, each of its lanes makes its call again on
 * its own: one failing document fails only itself.
 */
export interface StorageLane {
  load(doc: string): Promise<StoredDoc | null>
  appendLog(doc: string, entries: readonly LogEntry[]): Promise<void>
  compareAndSet(doc: string, expected: Watermark | null, next: StoredDoc): Promise<boolean>
  /** No further call will be batched: the batch stops waiting for this lane. Idempotent. */
  leave(): void
}

export interface StorageBatches {
  /**
   * A lane for `doc` in the batch being gathered: lanes joined in the same turn of the event loop
   * (the tasks a dispatch starts together) share one, up to `maxSize` documents.
   */
  join(doc: string): StorageLane
}

interface Waiter<I, O> {
  readonly input: I
  readonly resolve: (output: O) => void
  readonly reject: (err: unknown) => void
}

/** The calls of one kind waiting in a batch. */
interface Stage<I, O> {
  /** Calls waiting to be sent. */
  readonly waiting: () => number
  /** Whether `input` may wait with the others: their bytes stay within the batch's cap. */
  fits(input: I): boolean
  /** Resolves once the call, sent with the others, is done. */
  enqueue(input: I): Promise<O>
  /**
   * Sends the waiting calls to storage: one by itself with `one`, several with `many`. When `many`
   * fails, each call is made again alone with `one`, so that one document's trouble (or a
   * deadlock, a dropped connection) fails that document only. Safe: a failed batch is as if each
   * of its documents had had a call of its own (DocStorage), the update log is idempotent, and a
   * document the failed batch did store sees a conflict, which comes back later to nothing new.
   */
  flush(): void
}

const stage = <I, O>(opts: {
  one: (input: I) => Promise<O>
  many: (inputs: I[]) => Promise<O[]>
  /** Bytes `input` adds to the batched call (0 where they are not known beforehand). */
  bytes: (input: I) => number
  maxBytes: number
  onEnqueue: () => void
  /** Told when `many` failed, before the calls are made again one by one. */
  onFail: (err: unknown, calls: number) => void
}): Stage<I, O> => {
  const queue: Waiter<I, O>[] = []
  let queuedBytes = 0
  const alone = (c: Waiter<I, O>) => opts.one(c.input).then(c.resolve, c.reject)
  return {
    waiting: () => queue.length,
    fits: (input) => queuedBytes + opts.bytes(input) <= opts.maxBytes,
    enqueue: (input) =>
      new Promise<O>((resolve, reject) => {
        queue.push({ input, resolve, reject })
        queuedBytes += opts.bytes(input)
        opts.onEnqueue()
      }),
    flush: () => {
      const calls = queue.splice(0)
      queuedBytes = 0
      const only = calls.length === 1 ? calls[0] : undefined
      if (only) return void alone(only)
      opts.many(calls.map((c) => c.input)).then(
        (out) => calls.forEach((c, i) => c.resolve(out[i] as O)),
        (err: unknown) => {
          opts.onFail(err, calls.length)
          for (const c of calls) void alone(c)
        },
      )
    },
  }
}

interface CasInput {
  readonly doc: string
  readonly expected: Watermark | null
  readonly next: StoredDoc
}
interface LogInput {
  readonly doc: string
  readonly entries: readonly LogEntry[]
}

/** Default cap of the bytes one batched call carries (see StorageBatchesOptions.maxBytes). */
export const DEFAULT_BATCH_MAX_BYTES = 16 * 1024 * 1024

export interface StorageBatchesOptions {
  /** Most documents in a batch; 1 sends every call on its own, as the single-document methods. */
  maxSize: number
  /**
   * Most bytes of states (compare-and-set) or of log updates (archive) one batched call carries;
   * default 16 MiB. A lane whose call would take its batch past the cap leaves the batch and makes
   * its calls on its own (Postgres sends a batch as one statement: a few large documents would
   * otherwise make it as large as they are together).
   */
  maxBytes?: number
  /** Told of batched calls that failed and were made again one by one; default silent. */
  logger?: Logger
}

/** Batches of storage calls for deliveries processed together (group commit). */
export const createStorageBatches = (
  storage: DocStorage,
  opts: StorageBatchesOptions,
): StorageBatches => {
  const maxBytes = opts.maxBytes ?? DEFAULT_BATCH_MAX_BYTES
  const failed = (kind: string) => (err: unknown, calls: number) =>
    opts.logger?.warn(
      { err, kind, calls },
      'a batched storage call failed; making its calls one by one',
    )
  const open = () => {
    const docs = new Set<string>()
    let members = 0
    let closed = false
    /** When no lane is under way (each waits or has left), the earliest calls go to storage. */
    const check = () => {
      const waiting = stages.reduce((n, s) => n + s.waiting(), 0)
      if (closed && waiting > 0 && waiting === members) stages.find((s) => s.waiting() > 0)?.flush()
    }
    const load = stage({
      one: (doc: string) => storage.load(doc),
      many: (docs) => storage.loadMany(docs),
      // The states come back: their sizes are not known before.
      bytes: () => 0,
      maxBytes,
      onEnqueue: check,
      onFail: failed('loadMany'),
    })
    const archive = stage({
      one: (i: LogInput) => storage.appendLog(i.doc, i.entries),
      many: (items) => storage.appendLogMany(items).then(() => items.map(() => undefined)),
      bytes: (i) => i.entries.reduce((n, e) => n + e.update.byteLength, 0),
      maxBytes,
      onEnqueue: check,
      onFail: failed('appendLogMany'),
    })
    const store = stage({
      one: (i: CasInput) => storage.compareAndSet(i.doc, i.expected, i.next),
      many: (items) => storage.compareAndSetMany(items),
      bytes: (i) => i.next.state.byteLength,
      maxBytes,
      onEnqueue: check,
      onFail: failed('compareAndSetMany'),
    })
    const stages: Pick<Stage<never, unknown>, 'waiting' | 'flush'>[] = [load, archive, store]
    // Joins end with this turn of the event loop: only then can every lane be waiting.
    queueMicrotask(() => {
      closed = true
      check()
    })

    const join = (doc: string): StorageLane => {
      docs.add(doc)
      members++
      /** The stages this lane may still call, from the next one on. */
      let next = 0
      let left = false
      const leave = () => {
        if (left) return
        left = true
        members--
        check()
      }
      /** The call through stage `at` of the batch, or straight to storage once past it. */
      const through = <I, O>(at: number, s: Stage<I, O>, input: I, alone: () => Promise<O>) => {
        if (left || at < next) return alone()
        next = at + 1
        if (s.fits(input)) return s.enqueue(input)
        // Too large to go with the others: this document stores alone, the batch goes on without it.
        leave()
        return alone()
      }
      return {
        load: (doc) => through(0, load, doc, () => storage.load(doc)),
        appendLog: (doc, entries) =>
          through(1, archive, { doc, entries }, () => storage.appendLog(doc, entries)),
        compareAndSet: (doc, expected, next) =>
          through(2, store, { doc, expected, next }, () =>
            storage.compareAndSet(doc, expected, next),
          ),
        leave,
      }
    }
    return { join, accepts: (doc: string) => !closed && docs.size < opts.maxSize && !docs.has(doc) }
  }

  let current = open()
  return {
    join: (doc) => {
      if (!current.accepts(doc)) current = open()
      return current.join(doc)
    },
  }
}
