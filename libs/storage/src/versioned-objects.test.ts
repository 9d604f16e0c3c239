import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger, isAppError } from '@streambed/common'
import { encodeStateFile, escapeDocName, sortableWatermark } from './encoding.js'
import type { StoredDoc } from './storage.js'
import { type Blobs, createVersionedStorage, isStateName } from './versioned-objects.js'

/** Blobs in a Map, with hooks to make a test's trouble. */
const memoryBlobs = () => {
  const objects = new Map<string, Uint8Array>()
  const calls: string[] = []
  const hooks: {
    beforeGet?: (key: string) => void
    failDelete?: Error
    refusePut?: boolean
  } = {}
  const blobs: Blobs = {
    folders: (escaped) => ({
      state: `d/${escaped}/s/`,
      log: `d/${escaped}/l/`,
      all: [`d/${escaped}/`],
    }),
    list: async (folder) =>
      [...objects.keys()]
        .filter((k) => k.startsWith(folder) && !k.slice(folder.length).includes('/'))
        .map((k) => k.slice(folder.length)),
    newestStates: async () => {
      const newest = new Map<string, string>()
      for (const key of objects.keys()) {
        const [, escaped, folder, name] = key.split('/')
        if (escaped === undefined || folder !== 's' || !isStateName(name ?? '')) continue
        if (name! > (newest.get(escaped) ?? '')) newest.set(escaped, name!)
      }
      return newest
    },
    get: async (key, rangeBytes) => {
      calls.push(`get ${key}${rangeBytes === undefined ? '' : ` ${rangeBytes}`}`)
      hooks.beforeGet?.(key)
      const bytes = objects.get(key)
      return bytes === undefined ? null : bytes.subarray(0, rangeBytes)
    },
    put: async (key, bytes, { ifAbsent }) => {
      if (hooks.refusePut && ifAbsent) return false
      objects.set(key, bytes)
      return true
    },
    delete: async (keys) => {
      if (hooks.failDelete) throw hooks.failDelete
      for (const k of keys) objects.delete(k)
    },
    deleteAll: async (folder) => {
      for (const k of [...objects.keys()]) if (k.startsWith(folder)) objects.delete(k)
    },
    exclusive: async (escaped, fn) => {
      calls.push(`enter ${escaped}`)
      try {
        return await fn()
      } finally {
        calls.push(`leave ${escaped}`)
      }
    },
  }
  const stateKey = (doc: string, w: string) =>
    `d/${escapeDocName(doc)}/s/${sortableWatermark(w)}.ydoc`
  return { objects, calls, hooks, blobs, stateKey }
}

const stored = (watermark: string, bytes: number[]): StoredDoc => ({
  watermark,
  state: Uint8Array.from(bytes),
})

const open = (blobs: Blobs, logger?: ReturnType<typeof createLogger>) =>
  createVersionedStorage(blobs, {
    kind: 'memory',
    ping: async () => {},
    close: async () => {},
    ...(logger ? { logger } : {}),
  })

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (err: unknown) => err,
  )

describe('versioned objects', () => {
  it('lists again when the newest version vanishes, and gives up after five times', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    m.objects.set(m.stateKey('doc', '1-0'), encodeStateFile('doc', stored('1-0', [1])))
    m.objects.set(m.stateKey('doc', '2-0'), encodeStateFile('doc', stored('2-0', [2])))
    // The first read loses 2-0 to a writer that stored 3-0 meanwhile.
    m.hooks.beforeGet = (key) => {
      m.hooks.beforeGet = undefined
      m.objects.delete(key)
      m.objects.set(m.stateKey('doc', '3-0'), encodeStateFile('doc', stored('3-0', [3])))
    }
    expect((await storage.load('doc'))?.watermark).toBe('3-0')

    m.hooks.beforeGet = (key) => m.objects.delete(key)
    for (let i = 4; i < 10; i++) {
      m.objects.set(m.stateKey('doc', `${i}-0`), encodeStateFile('doc', stored(`${i}-0`, [i])))
    }
    const err = await rejection(storage.load('doc'))
    expect(isAppError(err, 'STORAGE_UNAVAILABLE')).toBe(true)
    expect((err as Error).message).toBe('the newest state of doc vanished 5 times while being read')
  })

  it('runs compare-and-set and delete in the critical section, load outside it', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    expect(await storage.compareAndSet('doc', null, stored('1-0', [1]))).toBe(true)
    await storage.load('doc')
    await storage.delete('doc')
    expect(m.calls).toEqual([
      'enter doc',
      'leave doc',
      `get ${m.stateKey('doc', '1-0')}`,
      'enter doc',
      'leave doc',
    ])
    expect(m.objects.size).toBe(0)
  })

  it('returns false when the store refuses a version it already holds', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    for (const [expected, w] of [
      [null, '1-0'],
      ['1-0', '2-0'],
    ] as const) {
      expect(await storage.compareAndSet('doc', expected, stored(w, [1]))).toBe(true)
    }
    m.hooks.refusePut = true
    expect(await storage.compareAndSet('doc', '2-0', stored('3-0', [3]))).toBe(false)
    // Nothing collected: both versions stay.
    expect([...m.objects.keys()].sort()).toEqual([
      m.stateKey('doc', '1-0'),
      m.stateKey('doc', '2-0'),
    ])
    // Storing the current watermark again replaces it, without asking for absence.
    expect(await storage.compareAndSet('doc', '2-0', stored('2-0', [4]))).toBe(true)
    expect((await storage.load('doc'))?.state).toEqual(Uint8Array.from([4]))
  })

  it('logs a failed clean-up when given a logger, and fails the write without one', async () => {
    const lines: string[] = []
    const destination = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        lines.push(chunk.toString())
        done()
      },
    })
    const logged = memoryBlobs()
    const lenient = open(logged.blobs, createLogger({ level: 'warn', destination }))
    const strict = memoryBlobs()
    const failing = open(strict.blobs)
    for (const m of [logged, strict]) m.hooks.failDelete = new Error('disk says no')
    for (const [expected, w] of [
      [null, '1-0'],
      ['1-0', '2-0'],
    ] as const) {
      expect(await lenient.compareAndSet('doc', expected, stored(w, [1]))).toBe(true)
      expect(await failing.compareAndSet('doc', expected, stored(w, [1]))).toBe(true)
    }
    // A third version makes the first collectable.
    expect(await lenient.compareAndSet('doc', '2-0', stored('3-0', [3]))).toBe(true)
    expect(lines.join('')).toContain('could not delete old state versions')
    const err = await rejection(failing.compareAndSet('doc', '2-0', stored('3-0', [3])))
    expect(isAppError(err, 'STORAGE_UNAVAILABLE')).toBe(true)
    expect((err as Error).message).toBe('cannot store doc: disk says no')
    // The version itself was stored before the clean-up failed.
    expect(await failing.watermark('doc')).toBe('3-0')
  })

  it('lists only its own folders and reads a hashed name from the header alone', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    const long = 'L'.repeat(150)
    expect(escapeDocName(long).startsWith('~')).toBe(true)
    for (const name of ['b', long, 'a/b']) {
      expect(await storage.compareAndSet(name, null, stored('1-0', [1]))).toBe(true)
    }
    const state = encodeStateFile('x', stored('1-0', [1]))
    // Another program's objects: not canonical escapes, not a hash.
    for (const escaped of ['B', 'a%2fb', '%zz', '~abc']) {
      m.objects.set(`d/${escaped}/s/${sortableWatermark('1-0')}.ydoc`, state)
    }
    m.calls.length = 0
    expect(await storage.list()).toEqual([long, 'a/b', 'b'])
    expect(await storage.list({ after: 'a/b', limit: 1 })).toEqual(['b'])
    expect(m.calls.filter((c) => c.startsWith('get '))).toEqual([
      `get ${m.stateKey(long, '1-0')} 16384`,
      `get ${m.stateKey(long, '1-0')} 16384`,
    ])
  })
})
