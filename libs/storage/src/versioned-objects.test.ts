import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger, isAppError, silentLogger } from '@streambed/common'
import { type Blobs, isLogName, isStateName } from './blobs.js'
import { encodeLogBatch, encodeStateFile, escapeDocName, sortableWatermark } from './encoding.js'
import type { LogEntry, StoredDoc } from './storage.js'
import { createVersionedStorage } from './versioned-objects.js'

/** Blobs in a Map, with hooks to make a test's trouble. */
const memoryBlobs = () => {
  const objects = new Map<string, Uint8Array>()
  const calls: string[] = []
  const hooks: {
    beforeGet?: (key: string) => void
    /** What the next listing returns instead of the folder's names. */
    nextList?: (names: string[]) => string[]
    failDelete?: Error
    refusePut?: boolean
    /** Documents whose lock another process holds until someone waits for it. */
    busy?: Set<string>
  } = {}
  const inFolder = (folder: string) =>
    [...objects.keys()]
      .filter((k) => k.startsWith(folder) && !k.slice(folder.length).includes('/'))
      .map((k) => k.slice(folder.length))
  const listed = (folder: string) => {
    const override = hooks.nextList
    hooks.nextList = undefined
    return override ? override(inFolder(folder)) : inFolder(folder)
  }
  const blobs: Blobs = {
    folders: (escaped) => ({
      state: `d/${escaped}/s/`,
      log: `d/${escaped}/l/`,
      checkpoints: `d/${escaped}/c/`,
      all: [`d/${escaped}/`],
    }),
    list: async (folder) => listed(folder),
    listSized: async (folder) =>
      new Map(listed(folder).map((n) => [n, objects.get(`${folder}${n}`)!.length])),
    documents: async (kind) => {
      const found = new Map<string, string>()
      for (const key of [...objects.keys()].sort()) {
        const [, escaped, folder, name = ''] = key.split('/')
        if (escaped === undefined) continue
        if (kind === 'state' && folder === 's' && isStateName(name)) found.set(escaped, key)
        const history = (folder === 'c' && isStateName(name)) || (folder === 'l' && isLogName(name))
        if (kind === 'history' && history && !found.has(escaped)) found.set(escaped, key)
      }
      return found
    },
    get: async (key, rangeBytes) => {
      calls.push(`get ${key}${rangeBytes === undefined ? '' : ` ${rangeBytes}`}`)
      hooks.beforeGet?.(key)
      const bytes = objects.get(key)
      return bytes === undefined ? null : bytes.subarray(0, rangeBytes)
    },
    put: async (key, bytes, { ifAbsent }) => {
      calls.push(`put ${key}`)
      if (hooks.refusePut && ifAbsent) return false
      objects.set(key, bytes)
      return true
    },
    putMany: async (puts) => {
      calls.push(`put many ${puts.length}`)
      const done: boolean[] = []
      for (const p of puts) done.push(await blobs.put(p.key, p.bytes, p))
      return done
    },
    delete: async (keys) => {
      calls.push(`delete ${keys.join(' ')}`)
      if (hooks.failDelete) throw hooks.failDelete
      for (const k of keys) objects.delete(k)
    },
    deleteAll: async (folder) => {
      for (const k of [...objects.keys()]) if (k.startsWith(folder)) objects.delete(k)
    },
    lock: async (escaped, { wait }) => {
      if (hooks.busy?.has(escaped)) {
        calls.push(`busy ${escaped}`)
        if (!wait) return null
        // The other holder lets go.
        hooks.busy.delete(escaped)
      }
      calls.push(`enter ${escaped}`)
      return async () => void calls.push(`leave ${escaped}`)
    },
  }
  const stateKey = (doc: string, w: string) =>
    `d/${escapeDocName(doc)}/s/${sortableWatermark(w)}.ydoc`
  const logKey = (doc: string, first: string, last: string) =>
    `d/${escapeDocName(doc)}/l/${sortableWatermark(first)}_${sortableWatermark(last)}.ylog`
  return { objects, calls, hooks, blobs, stateKey, logKey }
}

const stored = (watermark: string, bytes: number[]): StoredDoc => ({
  watermark,
  state: Uint8Array.from(bytes),
})

const open = (blobs: Blobs, logger = silentLogger()) =>
  createVersionedStorage(blobs, {
    kind: 'memory',
    ping: async () => {},
    close: async () => {},
    logger,
  })

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (err: unknown) => err,
  )

/** `p` fails because what it read kept vanishing under it. */
const expectGivenUp = async (p: Promise<unknown>, what: string) => {
  const err = await rejection(p)
  expect(isAppError(err, 'STORAGE_UNAVAILABLE')).toBe(true)
  expect((err as Error).message).toBe(`${what} vanished 5 times while being read`)
}

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
    await expectGivenUp(storage.load('doc'), 'the newest state of doc')
  })

  it('runs compare-and-set and delete in the critical section, load outside it', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    expect(await storage.compareAndSet('doc', null, stored('1-0', [1]))).toBe(true)
    await storage.load('doc')
    await storage.delete('doc')
    expect(m.calls).toEqual([
      'enter doc',
      'put many 1',
      `put ${m.stateKey('doc', '1-0')}`,
      'leave doc',
      `get ${m.stateKey('doc', '1-0')}`,
      'enter doc',
      'leave doc',
    ])
    expect(m.objects.size).toBe(0)
  })

  it('stores a batch with one put of the versions whose locks were free, then a busy one alone', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    expect(await storage.compareAndSet('a', null, stored('1-0', [1]))).toBe(true)
    m.hooks.busy = new Set(['c'])
    m.calls.length = 0
    const results = await storage.compareAndSetMany([
      { doc: 'a', expected: '1-0', next: stored('2-0', [2]) },
      { doc: 'b', expected: '5-0', next: stored('6-0', [6]) },
      { doc: 'c', expected: null, next: stored('3-0', [3]) },
      { doc: 'd', expected: null, next: stored('4-0', [4]) },
      // Below its expected watermark: refused without a lock.
      { doc: 'e', expected: '9-0', next: stored('8-0', [8]) },
    ])
    expect(results).toEqual([true, false, true, true, false])
    // Locks tried at once; one put of the two winners; the busy document waited for afterwards.
    expect(m.calls.filter((c) => !c.startsWith('put d/'))).toEqual([
      'enter a',
      'enter b',
      'busy c',
      'enter d',
      'put many 2',
      'leave a',
      'leave b',
      'leave d',
      'busy c',
      'enter c',
      'put many 1',
      'leave c',
    ])
    expect((await storage.loadMany(['a', 'b', 'c', 'd'])).map((s) => s?.watermark)).toEqual([
      '2-0',
      undefined,
      '3-0',
      '4-0',
    ])
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

  it('logs a failed clean-up and reports every version stored, in a batch too', async () => {
    const lines: string[] = []
    const destination = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        lines.push(chunk.toString())
        done()
      },
    })
    const m = memoryBlobs()
    const storage = open(m.blobs, createLogger({ level: 'warn', destination }))
    m.hooks.failDelete = new Error('disk says no')
    for (const [expected, w] of [
      [null, '1-0'],
      ['1-0', '2-0'],
    ] as const) {
      expect(
        await storage.compareAndSetMany(
          ['a', 'b'].map((doc) => ({ doc, expected, next: stored(w, [1]) })),
        ),
      ).toEqual([true, true])
    }
    expect(lines).toEqual([])
    // A third version makes the first collectable: its deletion fails, every store still holds.
    expect(
      await storage.compareAndSetMany(
        ['a', 'b'].map((doc) => ({ doc, expected: '2-0', next: stored('3-0', [3]) })),
      ),
    ).toEqual([true, true])
    expect(await storage.compareAndSet('c', null, stored('1-0', [1]))).toBe(true)
    expect(lines.join('')).toContain('could not delete old state versions')
    expect(lines).toHaveLength(2)
    expect((await storage.loadMany(['a', 'b'])).map((d) => d?.watermark)).toEqual(['3-0', '3-0'])
    expect(m.calls.filter((c) => c.startsWith('delete '))).toEqual([
      `delete ${m.stateKey('a', '1-0')}`,
      `delete ${m.stateKey('b', '1-0')}`,
    ])
  })

  it('puts nothing when no document of a batch is still at its expected watermark', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    expect(await storage.compareAndSet('a', null, stored('1-0', [1]))).toBe(true)
    m.calls.length = 0
    expect(
      await storage.compareAndSetMany([
        { doc: 'a', expected: '0-5', next: stored('2-0', [2]) },
        { doc: 'b', expected: '1-0', next: stored('2-0', [2]) },
      ]),
    ).toEqual([false, false])
    expect(m.calls.filter((c) => c.startsWith('put'))).toEqual([])
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

describe('update log over objects', () => {
  const entry = (id: string): LogEntry => ({ id, update: Buffer.from(`update ${id}`) })
  const ids = (entries: readonly LogEntry[]) => entries.map((e) => e.id)
  /** Puts a batch of `entryIds` behind the storage's back; returns its key. */
  const batch = (m: ReturnType<typeof memoryBlobs>, entryIds: string[]) => {
    const key = m.logKey('doc', entryIds[0]!, entryIds.at(-1)!)
    m.objects.set(key, encodeLogBatch('doc', entryIds.map(entry)))
    return key
  }
  const logKeys = (m: ReturnType<typeof memoryBlobs>) =>
    [...m.objects.keys()].filter((k) => k.includes('/l/')).sort()

  it('reads only the batches whose names overlap the range asked for', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    const [b12, b35, b69, b10] = [
      batch(m, ['1-0', '2-0']),
      batch(m, ['3-0', '4-0', '5-0']),
      batch(m, ['6-0', '9-0']),
      batch(m, ['10-0']),
    ]
    const reads = async (range: { after?: string; upTo?: string }) => {
      m.calls.length = 0
      const got = ids(await storage.readLog('doc', range))
      return { got, read: m.calls.filter((c) => c.startsWith('get ')).sort() }
    }
    expect(await reads({ after: '2-0', upTo: '6-0' })).toEqual({
      got: ['3-0', '4-0', '5-0', '6-0'],
      read: [`get ${b35}`, `get ${b69}`],
    })
    expect(await reads({ after: '9-0' })).toEqual({ got: ['10-0'], read: [`get ${b10}`] })
    expect(await reads({ upTo: '2-5' })).toEqual({ got: ['1-0', '2-0'], read: [`get ${b12}`] })
    expect(await reads({ after: '6-0', upTo: '8-0' })).toEqual({ got: [], read: [`get ${b69}`] })
    expect(await reads({ after: '10-0' })).toEqual({ got: [], read: [] })
  })

  it('packs by writing the segment before deleting the batches it replaces', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    const batches = ['1-0', '2-0', '3-0', '4-0'].map((id) => batch(m, [id]))
    const later = batch(m, ['5-0', '6-0'])
    m.calls.length = 0
    expect(await storage.packLog('doc', '5-0')).toBe(4)
    const segment = m.logKey('doc', '1-0', '4-0')
    expect(m.calls.filter((c) => !c.startsWith('get '))).toEqual([
      `put ${segment}`,
      `delete ${batches.join(' ')}`,
    ])
    expect(logKeys(m)).toEqual([segment, later].sort())
    expect(await storage.packLog('doc', '5-0')).toBe(0)
    expect(ids(await storage.readLog('doc'))).toEqual(['1-0', '2-0', '3-0', '4-0', '5-0', '6-0'])
  })

  it('keeps a batch whose name the segment takes, merging it', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    const wide = batch(m, ['1-0', '3-0', '5-0'])
    const inner = batch(m, ['2-0', '4-0'])
    m.calls.length = 0
    expect(await storage.packLog('doc', '9-0')).toBe(2)
    expect(m.calls.filter((c) => !c.startsWith('get '))).toEqual([`put ${wide}`, `delete ${inner}`])
    expect(logKeys(m)).toEqual([wide])
    expect(ids(await storage.readLog('doc'))).toEqual(['1-0', '2-0', '3-0', '4-0', '5-0'])
  })

  it('lists again when a batch is packed away between listing and reading', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    const batches = ['1-0', '2-0', '3-0'].map((id) => batch(m, [id]))
    // A packer in another process, at the worst moment: the segment is in, the batches are out.
    m.hooks.beforeGet = () => {
      m.hooks.beforeGet = undefined
      m.objects.set(
        m.logKey('doc', '1-0', '3-0'),
        encodeLogBatch('doc', ['1-0', '2-0', '3-0'].map(entry)),
      )
      for (const key of batches) m.objects.delete(key)
    }
    expect(ids(await storage.readLog('doc'))).toEqual(['1-0', '2-0', '3-0'])

    // Packers that never let up: whatever is listed is replaced before it is read.
    let next = 100
    m.hooks.beforeGet = (key) => {
      m.objects.delete(key)
      batch(m, [`${next++}-0`])
    }
    await expectGivenUp(storage.readLog('doc'), 'the update log of doc')
  })

  it('finds a segment that one listing missed while the batches it replaced went', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    const [b1, b2, b3] = ['1-0', '2-0', '3-0'].map((id) => batch(m, [id]))
    // A packer ran while a listing in several pages (or directory reads) went on: the listing
    // missed the segment, written where it had already looked, and b2, deleted before it looked.
    const segment = m.logKey('doc', '1-0', '3-0')
    m.objects.set(segment, encodeLogBatch('doc', ['1-0', '2-0', '3-0'].map(entry)))
    m.objects.delete(b2!)
    const name = (key: string) => key.slice(key.lastIndexOf('/') + 1)
    m.hooks.nextList = () => [name(b1!), name(b3!)]
    expect(ids(await storage.readLog('doc'))).toEqual(['1-0', '2-0', '3-0'])
    m.hooks.nextList = () => [name(b1!), name(b3!)]
    expect(await storage.logExtent('doc')).toMatchObject({ entries: 3 })
  })

  it('rewrites a batch straddling the drop bound, merging one that has its new name', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    batch(m, ['1-0', '2-0'])
    batch(m, ['1-5', '5-0', '9-0'])
    const sameName = batch(m, ['5-0', '7-0', '9-0'])
    const after = batch(m, ['10-0'])
    await storage.dropLog('doc', '3-0')
    expect(logKeys(m)).toEqual([sameName, after])
    expect(ids(await storage.readLog('doc'))).toEqual(['5-0', '7-0', '9-0', '10-0'])
    await storage.dropLog('doc', '9-0')
    expect(logKeys(m)).toEqual([after])
    await storage.dropLog('doc', '10-0')
    expect(logKeys(m)).toEqual([])
    expect(await storage.logExtent('doc')).toBeNull()
  })

  it('counts entries from headers alone unless batch ranges overlap', async () => {
    const m = memoryBlobs()
    const storage = open(m.blobs)
    const alone = [batch(m, ['1-0', '2-0']), batch(m, ['3-0', '4-0', '5-0'])]
    const overlapping = [batch(m, ['6-0', '7-0', '8-0']), batch(m, ['7-0', '8-0', '9-0'])]
    const single = batch(m, ['10-0'])
    m.calls.length = 0
    expect(await storage.logExtent('doc')).toEqual({
      first: '1-0',
      last: '10-0',
      entries: 10,
      bytes: [...alone, ...overlapping, single].reduce((n, k) => n + m.objects.get(k)!.length, 0),
      segments: 5,
    })
    expect(m.calls.sort()).toEqual(
      [...alone.map((k) => `get ${k} 16384`), ...overlapping.map((k) => `get ${k}`)].sort(),
    )
  })
})
