/**
 * Workloads and probes for S6 (compaction): document generators that produce real Yjs updates, a
 * paced writer that remembers each document's last appended id, and a poller that sees when
 * storage holds a watermark at or above it.
 */
import * as Y from 'yjs'
import { type DocStorage, compareWatermarks } from '@streambed/storage'
import type { DocStreams } from '@streambed/streams'
import { sleep } from './load.js'

/** Seeded pseudo-random numbers in [0, 1). */
const random = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31

/** A short editing session on a small document: five text inserts and a map field, six updates. */
export const smallDocUpdates = (i: number): Uint8Array[] => {
  const doc = new Y.Doc()
  const out: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => out.push(u))
  for (let k = 0; k < 5; k++) doc.getText('t').insert(0, `doc ${i} edit ${k} `)
  doc.getMap('m').set('n', i)
  doc.destroy()
  return out
}

/**
 * A document of about `targetBytes` of text made of real updates of about `updateBytes` each:
 * every update pastes chunks of 2 KiB at random places and deletes three short ranges (so the
 * snapshot has deleted content to collect), like a large pasted or imported document.
 */
export const largeDocUpdates = (seed: number, targetBytes: number, updateBytes = 100 * 1024) => {
  const doc = new Y.Doc()
  const text = doc.getText('content')
  const out: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => out.push(u))
  const rand = random(seed)
  const letters = 'etaoin shrdlu cmfwyp vbgkjq xz\n'
  const pool = Array.from({ length: 64 * 1024 }, () => letters[Math.floor(rand() * 31)]).join('')
  const chunkBytes = 2048
  while (text.length < targetBytes) {
    doc.transact(() => {
      for (let k = 0; k < updateBytes / chunkBytes; k++) {
        const from = Math.floor(rand() * (pool.length - chunkBytes))
        text.insert(Math.floor(rand() * (text.length + 1)), pool.slice(from, from + chunkBytes))
      }
      for (let k = 0; k < 3 && text.length > 20_000; k++)
        text.delete(Math.floor(rand() * (text.length - 2000)), 500 + Math.floor(rand() * 1000))
    })
  }
  doc.destroy()
  return out
}

export const totalBytes = (updates: readonly Uint8Array[]): number =>
  updates.reduce((n, u) => n + u.length, 0)

/** The reference: encodeStateAsUpdate of a Y.Doc built from the same updates. */
export const referenceState = (updates: readonly Uint8Array[]): Uint8Array => {
  const doc = new Y.Doc()
  for (const u of updates) Y.applyUpdate(doc, u)
  const state = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return state
}

/** Appends every document's updates at once (a backlog), 100 documents at a time. */
export const appendBacklog = async (
  streams: DocStreams,
  docs: readonly { name: string; updates: readonly Uint8Array[] }[],
): Promise<void> => {
  for (let i = 0; i < docs.length; i += 100) {
    await Promise.all(
      docs
        .slice(i, i + 100)
        .flatMap((d) => d.updates.map((u) => streams.append(d.name, u, 'bench/0'))),
    )
  }
}

export interface DurabilityProbe {
  /** `doc`'s last update was acknowledged by Redis at `at` (performance.now()) with id `id`. */
  wrote(doc: string, id: string, at: number): void
  /** Resolves once every document given to `wrote` is durable; ms from last write to durable. */
  settled(timeoutMs: number): Promise<number[]>
  stop(): Promise<void>
}

/**
 * Polls storage every `pollMs` for the documents whose last write is known and which are not
 * durable yet (so the cost stays proportional to what is in flight). A document counts as durable
 * at the end of the poll that first sees its watermark at or above its last id: the result is late
 * by at most one poll interval plus one poll.
 */
export const probeDurability = (storage: DocStorage, pollMs: number): DurabilityProbe => {
  const pending = new Map<string, { id: string; at: number }>()
  const results: number[] = []
  let running = true
  let failure: Error | null = null
  const loop = (async () => {
    while (running) {
      const docs = [...pending]
      const marks = await Promise.all(docs.map(([doc]) => storage.watermark(doc)))
      const now = performance.now()
      docs.forEach(([doc, last], i) => {
        const mark = marks[i]
        if (mark && compareWatermarks(mark, last.id) >= 0) {
          results.push(now - last.at)
          pending.delete(doc)
        }
      })
      await sleep(pollMs)
    }
  })().catch((err: unknown) => {
    failure = err instanceof Error ? err : new Error(String(err))
  })
  let expected = 0
  return {
    wrote: (doc, id, at) => {
      expected++
      pending.set(doc, { id, at })
    },
    settled: async (timeoutMs) => {
      const deadline = performance.now() + timeoutMs
      while (results.length < expected || pending.size > 0) {
        if (failure) throw failure
        if (performance.now() > deadline)
          throw new Error(`${pending.size} documents not durable after ${timeoutMs} ms`)
        await sleep(pollMs)
      }
      return [...results]
    },
    stop: async () => {
      running = false
      await loop
    },
  }
}

/**
 * Writes `docs` as live traffic: document i starts at i/n of `windowMs` and sends its updates
 * `gapMs` apart; each document's last acknowledged append goes to `probe`. Resolves once every
 * append was acknowledged.
 */
export const writeLive = async (
  streams: DocStreams,
  docs: readonly { name: string; updates: readonly Uint8Array[] }[],
  opts: { windowMs: number; gapMs: number; probe: DurabilityProbe },
): Promise<void> => {
  const schedule = docs
    .flatMap((d, i) =>
      d.updates.map((update, k) => ({
        atMs: (i / docs.length) * opts.windowMs + k * opts.gapMs,
        doc: d.name,
        update,
        last: k === d.updates.length - 1,
      })),
    )
    .sort((a, b) => a.atMs - b.atMs)
  const acks: Promise<void>[] = []
  const start = performance.now()
  let next = 0
  while (next < schedule.length) {
    const elapsed = performance.now() - start
    for (; next < schedule.length && (schedule[next]?.atMs ?? Infinity) <= elapsed; next++) {
      const s = schedule[next]
      if (!s) break
      // Appends of one document keep their order: one connection, commands in call order.
      acks.push(
        streams.append(s.doc, s.update, 'bench/0').then((appended) => {
          if (s.last && appended) opts.probe.wrote(s.doc, appended.id, performance.now())
        }),
      )
    }
    await sleep(2)
  }
  await Promise.all(acks)
}
