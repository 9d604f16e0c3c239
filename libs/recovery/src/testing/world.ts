/**
 * Test helper (not built): a deployment's data on real services for the recovery tests — storage
 * of each kind in a space of its own, documents written through the normal append path, and the
 * steps of a compaction (archive, store, trim) done one by one so a test can stop between them.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { expect } from 'vitest'
import { nextId, type StreamId } from '@streambed/common'
import { mergeAll } from '@streambed/protocol'
import { createFsStorage, createPostgresStorage, type DocStorage } from '@streambed/storage'
import {
  createDocStreams,
  createTaskQueue,
  type Keys,
  partsOf,
  readDocument,
  type Redis,
} from '@streambed/streams'
import { testDatabase } from '@streambed/testing'
import { docToJSON, type Json } from '@streambed/protocol'
import type { RecoveryDeps } from '../documents.js'
import { createGen, randomEdits } from './random-docs.js'

export type StorageKind = 'fs' | 'postgres'

/** Fresh, empty storage of `kind`; `close` removes its data. */
export const openSpace = async (
  kind: StorageKind,
): Promise<{ storage: DocStorage; close(): Promise<void> }> => {
  if (kind === 'fs') {
    const dir = await mkdtemp(join(tmpdir(), 'streambed-recovery-'))
    const storage = await createFsStorage({ dir })
    return {
      storage,
      close: async () => {
        await storage.close()
        await rm(dir, { recursive: true, force: true })
      },
    }
  }
  const db = await testDatabase(undefined, 'recovery')
  const storage = await createPostgresStorage({ url: db.url, poolMax: 4 })
  return {
    storage,
    close: async () => {
      await storage.close()
      await db.close()
    },
  }
}

export const depsOf = (
  redis: Redis,
  keys: Keys,
  storage: DocStorage,
  queueShards = 2,
): RecoveryDeps => ({
  redis,
  keys,
  storage,
  streams: createDocStreams({ redis, keys, queueShards, storage, gapWaitMs: 1 }),
  queueShards,
})

/** What a joining client receives, as JSON text (stored state + stream, merged). */
export const servedJSON = async (deps: RecoveryDeps, doc: string): Promise<string> => {
  const read = await readDocument(deps.storage, deps.streams, doc)
  return JSON.stringify(docToJSON(mergeAll(partsOf(read))))
}

export const jsonOf = (state: Uint8Array): Record<string, Json> => docToJSON(state)

/** A client of `doc` whose every transaction is appended (ids at `atMs` or later, when given). */
export const writer = (deps: RecoveryDeps, doc: string, seed: number) => {
  const ydoc = new Y.Doc()
  const gen = createGen(seed)
  const pending: Uint8Array[] = []
  ydoc.on('update', (u: Uint8Array) => pending.push(u))
  const flush = async (atMs?: number): Promise<StreamId[]> => {
    const ids: StreamId[] = []
    for (const u of pending.splice(0)) {
      const floor = atMs === undefined ? undefined : `${atMs}-0`
      const r = await deps.streams.append(doc, u, 'test/writer', floor ? { floor } : {})
      if (r) ids.push(r.id)
    }
    return ids
  }
  return {
    ydoc,
    /** `count` random edits, each its own transaction and entry. */
    edit: async (count: number, atMs?: number) => {
      randomEdits(gen, ydoc, count)
      return flush(atMs)
    },
    /** One transaction of `fn`. */
    transact: async (fn: (d: Y.Doc) => void, atMs?: number) => {
      ydoc.transact(() => fn(ydoc))
      return flush(atMs)
    },
  }
}

/** Applied in order through one Y.Doc. */
export const applied = (parts: readonly Uint8Array[]): Uint8Array => {
  const doc = new Y.Doc()
  for (const p of parts) Y.applyUpdate(doc, p)
  const state = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return state
}

export interface CompactSteps {
  /** Store the merged state (compare-and-set); default true. */
  store?: boolean
  /** Trim what was stored and drop an emptied stream (finish-2.lua); default true. */
  trim?: boolean
}

/**
 * A compaction by hand, in the workers' order: archive the tail to the log, store, trim. Returns
 * the watermark reached (or null when the tail was empty).
 */
export const compact = async (
  deps: RecoveryDeps,
  blocking: Redis,
  doc: string,
  steps: CompactSteps = {},
): Promise<StreamId | null> => {
  const { storage, streams } = deps
  const read = await readDocument(storage, streams, doc)
  const entries = read.tail.entries.map((e) => ({ id: e.id, update: e.update }))
  if (entries.length === 0) return null
  await storage.appendLog(doc, entries)
  if (steps.store === false) return null
  const ok = await storage.compareAndSet(doc, read.stored?.watermark ?? null, {
    state: applied(partsOf(read)),
    watermark: read.upTo,
  })
  expect(ok).toBe(true)
  if (steps.trim !== false) {
    const queue = createTaskQueue({
      redis: deps.redis,
      blocking,
      keys: deps.keys,
      shards: deps.queueShards,
    })
    const token = await queue.liveToken(doc)
    if (token) await queue.finish(doc, token, read.upTo, 0, 60_000)
    else {
      await deps.redis.xtrim(deps.keys.stream(doc), 'MINID', nextId(read.upTo))
      await deps.redis.hset(deps.keys.meta(doc), 'trimmed', nextId(read.upTo))
    }
  }
  return read.upTo
}
