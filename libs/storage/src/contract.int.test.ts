import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import pg from 'pg'
import { describe, expect, it, vi } from 'vitest'
import { createLogger, isAppError } from '@streambed/common'
import { startPostgresServer, startS3Server, testDatabase } from '@streambed/testing'
import {
  type CompareAndSetItem,
  compareWatermarks,
  createPostgresStorage,
  createS3Storage,
  type DocStorage,
  type LogEntry,
} from './index.js'
import {
  contractBackends,
  entry,
  expectLog,
  expectStorageUnavailable,
  expectStored,
  s3Client,
  type Space,
  spaceForEachTest,
  stored,
} from './testing/contract.js'

/**
 * The storage contract, written once and run against every backend on real services (the update
 * log's history operations and checkpoints: history-contract.int.test.ts), then what only one
 * backend does.
 */

const { backends, s3Server } = contractBackends()

describe.each(backends)('$kind storage contract', (backend) => {
  let space: Space
  let storage: DocStorage
  spaceForEachTest(backend, (opened) => {
    space = opened
    storage = opened.storage
  })

  it('names its kind and answers ping', async () => {
    expect(storage.kind).toBe(backend.kind)
    await expect(storage.ping()).resolves.toBeUndefined()
  })

  it('treats a missing document as absent, not as an error', async () => {
    expect(await storage.load('missing')).toBeNull()
    expect(await storage.readLog('missing')).toEqual([])
    expect(await storage.readLog('missing', { after: '5-0' })).toEqual([])
    expect(await storage.readLog('missing', { after: '1-0', upTo: '5-0' })).toEqual([])
    expect(await storage.logExtent('missing')).toBeNull()
    expect(await storage.packLog('missing', '5-0')).toBe(0)
    await expect(storage.dropLog('missing', '5-0')).resolves.toBeUndefined()
    expect(await storage.listCheckpoints('missing')).toEqual([])
    expect(await storage.loadCheckpoint('missing', '5-0')).toBeNull()
    await expect(storage.dropCheckpoints('missing', ['5-0'])).resolves.toBeUndefined()
    await expect(storage.delete('missing')).resolves.toBeUndefined()
    expect(await storage.list()).toEqual([])
    expect(await storage.listHistory()).toEqual([])
  })

  it('creates from null, then advances only from the stored watermark', async () => {
    const first = stored('10-0', [1, 2, 3])
    expect(await storage.compareAndSet('doc', null, first)).toBe(true)
    expectStored(await storage.load('doc'), first)

    expect(await storage.compareAndSet('doc', null, stored('11-0', [9]))).toBe(false)
    expect(await storage.compareAndSet('doc', '9-0', stored('11-0', [9]))).toBe(false)
    expect(await storage.compareAndSet('doc', '10-1', stored('11-0', [9]))).toBe(false)
    expectStored(await storage.load('doc'), first)

    const second = stored('12-3', [4, 5])
    expect(await storage.compareAndSet('doc', '10-0', second)).toBe(true)
    expectStored(await storage.load('doc'), second)
    // A second process sees the same state.
    const other = await space.another()
    expectStored(await other.load('doc'), second)
    const third = stored('13-0', [6])
    expect(await other.compareAndSet('doc', '12-3', third)).toBe(true)
    expectStored(await storage.load('doc'), third)
  })

  it('reports the stored watermark alone, like load', async () => {
    expect(await storage.watermark('doc')).toBeNull()
    expect(await storage.compareAndSet('doc', null, stored('9-5', [1]))).toBe(true)
    expect(await storage.watermark('doc')).toBe('9-5')
    expect(await storage.compareAndSet('doc', '9-5', stored('10-0', [2]))).toBe(true)
    expect(await storage.watermark('doc')).toBe('10-0')
    expect(await storage.watermark('other')).toBeNull()
  })

  it('never lets a stale writer take the watermark back', async () => {
    // 9 < 10 numerically but not as text: ordering must be numeric.
    expect(await storage.compareAndSet('doc', null, stored('9-5', [1]))).toBe(true)
    const ahead = stored('10-0', [2])
    expect(await storage.compareAndSet('doc', '9-5', ahead)).toBe(true)
    // Writers that read before the last write.
    expect(await storage.compareAndSet('doc', '9-5', stored('9-7', [3]))).toBe(false)
    expect(await storage.compareAndSet('doc', '9-5', stored('11-0', [3]))).toBe(false)
    expect(await storage.compareAndSet('doc', null, stored('1-0', [4]))).toBe(false)
    expectStored(await storage.load('doc'), ahead)
    // Even a writer holding the current watermark cannot move it back.
    expect(await storage.compareAndSet('doc', '10-0', stored('9-9', [5]))).toBe(false)
    expectStored(await storage.load('doc'), ahead)
  })

  it('round-trips state bytes exactly: 5 MB, the empty update, every byte value', async () => {
    const big = stored('1-0', randomBytes(5 * 1024 * 1024 + 3))
    const empty = stored('2-0', [0, 0])
    const everyByte = stored(
      '3-0',
      Array.from({ length: 256 }, (_, i) => i),
    )
    expect(await storage.compareAndSet('big', null, big)).toBe(true)
    expect(await storage.compareAndSet('empty', null, empty)).toBe(true)
    expect(await storage.compareAndSet('every-byte', null, everyByte)).toBe(true)
    expectStored(await storage.load('big'), big)
    expectStored(await storage.load('empty'), empty)
    expectStored(await storage.load('every-byte'), everyByte)
    // Replacing a big state with a small one leaves nothing of the old one behind.
    const small = stored('4-0', [7])
    expect(await storage.compareAndSet('big', '1-0', small)).toBe(true)
    expectStored(await storage.load('big'), small)
  })

  it('keeps every name apart: separators, case, escapes, 200 characters and longer', async () => {
    const names = [
      'a/b',
      'a:b',
      'a@b',
      'a+b',
      'a=b',
      'a,b',
      'a~b',
      'a.b',
      'a-b',
      'a_b',
      'ab',
      'a%2Fb',
      '~a',
      '.a',
      'doc',
      'Doc',
      'DOC',
      'org/Team/doc:1@v2+x=y,z~.-',
      'x'.repeat(200),
      // 200 characters escaping to more than 200 (hashed object/file names).
      'X'.repeat(200),
      'x'.repeat(199) + 'X',
      `${'Y/'.repeat(150)}end`,
    ]
    expect(new Set(names).size).toBe(names.length)
    const stateOf = (i: number) => stored(`${i + 1}-0`, [i, i, i])
    await Promise.all(names.map((n, i) => storage.compareAndSet(n, null, stateOf(i))))
    await Promise.all(names.map((n, i) => storage.appendLog(n, [entry(`${i + 1}-0`)])))
    const checkpointOf = (i: number) => ({ upTo: `${i + 1}-0`, state: Uint8Array.from([i, 0]) })
    await Promise.all(names.map((n, i) => storage.putCheckpoint(n, checkpointOf(i))))
    for (const [i, n] of names.entries()) {
      expectStored(await storage.load(n), stateOf(i))
      expectLog(await storage.readLog(n), [entry(`${i + 1}-0`)])
      expect(await storage.listCheckpoints(n)).toEqual([`${i + 1}-0`])
      const checkpoint = await storage.loadCheckpoint(n, `${i + 1}-0`)
      expect(checkpoint && [...checkpoint.state]).toEqual([i, 0])
    }
    expect(await storage.list()).toEqual([...names].sort())
    expect(await storage.listHistory()).toEqual([...names].sort())
    // Deleting one name leaves its look-alikes.
    await storage.delete('Doc')
    expect(await storage.load('Doc')).toBeNull()
    expectStored(await storage.load('doc'), stateOf(names.indexOf('doc')))
    expectStored(await storage.load('DOC'), stateOf(names.indexOf('DOC')))
    await storage.delete('X'.repeat(200))
    expect(await storage.load('X'.repeat(200))).toBeNull()
    expect(await storage.readLog('X'.repeat(200))).toEqual([])
    expect(await storage.listCheckpoints('X'.repeat(200))).toEqual([])
    const alike = 'x'.repeat(199) + 'X'
    expectStored(await storage.load(alike), stateOf(names.indexOf(alike)))
    expect(await storage.listCheckpoints(alike)).toEqual([`${names.indexOf(alike) + 1}-0`])
    const left = names.filter((n) => n !== 'Doc' && n !== 'X'.repeat(200)).sort()
    expect(await storage.listHistory()).toEqual(left)
    expect(await storage.list()).toEqual(left)
  })

  it('settles ten racing writers from one watermark without losing or regressing', async () => {
    const other = await space.another()
    expect(await storage.compareAndSet('race', null, stored('50-0', [5, 0]))).toBe(true)
    const nexts = Array.from({ length: 10 }, (_, i) => stored(`${60 + i}-0`, randomBytes(1000 + i)))
    // Half through a second storage (another process), all from the same expected watermark.
    const results = await Promise.all(
      nexts.map((next, i) => (i % 2 ? other : storage).compareAndSet('race', '50-0', next)),
    )
    const winners = nexts.filter((_, i) => results[i])
    const loaded = await storage.load('race')
    if (backend.kind === 's3') {
      // Not a strict compare-and-set (see the header of s3-storage.ts): racing writers may all
      // succeed; what loads is the highest winner's version, byte for byte.
      expect(winners.length).toBeGreaterThanOrEqual(1)
      const highest = winners.reduce((a, b) =>
        compareWatermarks(a.watermark, b.watermark) >= 0 ? a : b,
      )
      expectStored(loaded, highest)
    } else {
      expect(winners).toHaveLength(1)
      expectStored(loaded, winners[0]!)
    }
    // The stale expected watermark now fails everywhere; retrying from the loaded one succeeds.
    const retry = stored('80-0', [8, 0])
    expect(await other.compareAndSet('race', '50-0', retry)).toBe(false)
    expect(await other.compareAndSet('race', loaded!.watermark, retry)).toBe(true)
    expectStored(await storage.load('race'), retry)
  })

  describe('group commit', () => {
    /** A world of stored documents, the same under two prefixes. */
    const seed = async (prefix: string) => {
      expect(await storage.compareAndSet(`${prefix}at5`, null, stored('5-0', [5]))).toBe(true)
      expect(await storage.compareAndSet(`${prefix}at9`, null, stored('9-5', [9]))).toBe(true)
      expect(await storage.compareAndSet(`${prefix}at10`, null, stored('10-0', [10]))).toBe(true)
    }
    /** Items of every kind: from nothing, advancing, stale, wrong, going back, from the current. */
    const items = (prefix: string): CompareAndSetItem[] =>
      [
        { doc: 'new', expected: null, next: stored('1-0', [1]) },
        { doc: 'at5', expected: '5-0', next: stored('6-0', [6]) },
        { doc: 'at9', expected: '9-0', next: stored('10-0', [7]) },
        { doc: 'at10', expected: null, next: stored('11-0', [8]) },
        { doc: 'missing', expected: '3-0', next: stored('4-0', [4]) },
        { doc: 'also-new', expected: '0-0', next: stored('2-0', [2]) },
      ].map((i) => ({ ...i, doc: `${prefix}${i.doc}` }))

    it('stores each document as compareAndSet would: the conflicting ones report false', async () => {
      await seed('one/')
      await seed('many/')
      const one: boolean[] = []
      for (const i of items('one/'))
        one.push(await storage.compareAndSet(i.doc, i.expected, i.next))
      const many = await storage.compareAndSetMany(items('many/'))
      expect(many).toEqual([true, true, false, false, false, false])
      expect(many).toEqual(one)
      const names = items('').map((i) => i.doc)
      const loadedOne = await storage.loadMany(names.map((n) => `one/${n}`))
      const loadedMany = await storage.loadMany(names.map((n) => `many/${n}`))
      for (const [k, n] of names.entries()) {
        expect(loadedMany[k]?.watermark, n).toBe(loadedOne[k]?.watermark)
        expect(loadedMany[k] && [...loadedMany[k].state], n).toEqual(
          loadedOne[k] && [...loadedOne[k].state],
        )
      }
      expect(loadedMany.map((d) => d?.watermark)).toEqual([
        '1-0',
        '6-0',
        '9-5',
        '10-0',
        undefined,
        undefined,
      ])
      // A watermark never goes back, in a batch either.
      expect(
        await storage.compareAndSetMany([
          { doc: 'many/at5', expected: '6-0', next: stored('5-9', [0]) },
          { doc: 'many/new', expected: '1-0', next: stored('1-1', [1, 1]) },
        ]),
      ).toEqual([false, true])
      expectStored(await storage.load('many/at5'), stored('6-0', [6]))
    })

    it('loads many documents in order, missing ones as null, and empty batches as nothing', async () => {
      await seed('')
      const loaded = await storage.loadMany(['at10', 'missing', 'at5', 'at9', 'at5'])
      expect(loaded.map((d) => d?.watermark ?? null)).toEqual(['10-0', null, '5-0', '9-5', '5-0'])
      expectStored(loaded[0]!, stored('10-0', [10]))
      expect(await storage.loadMany([])).toEqual([])
      expect(await storage.compareAndSetMany([])).toEqual([])
      await expect(storage.appendLogMany([])).resolves.toBeUndefined()
      await expect(storage.appendLogMany([{ doc: 'x', entries: [] }])).resolves.toBeUndefined()
      expect(await storage.readLog('x')).toEqual([])
    })

    it('archives many documents as appendLog would, repeats and all', async () => {
      const logs: [string, LogEntry[]][] = [
        ['a', [entry('3-0'), entry('1-0'), entry('2-0')]],
        ['b', [entry('7-0')]],
        ['a', [entry('2-0'), entry('4-0')]],
        ['c', []],
        ['b', [entry('7-0')]],
      ]
      for (const [doc, entries] of logs) await storage.appendLog(`one/${doc}`, entries)
      await storage.appendLogMany(logs.map(([doc, entries]) => ({ doc: `all/${doc}`, entries })))
      for (const doc of ['a', 'b', 'c']) {
        expectLog(await storage.readLog(`all/${doc}`), await storage.readLog(`one/${doc}`), doc)
        expect(await storage.logExtent(`all/${doc}`)).toEqual(await storage.logExtent(`one/${doc}`))
      }
      expect((await storage.readLog('all/a')).map((e) => e.id)).toEqual([
        '1-0',
        '2-0',
        '3-0',
        '4-0',
      ])
      // Archiving the same batch again changes nothing.
      await storage.appendLogMany([{ doc: 'all/a', entries: [entry('1-0'), entry('4-0')] }])
      expectLog(await storage.readLog('all/a'), await storage.readLog('one/a'))
    })

    it('refuses a batch naming a document twice, storing nothing', async () => {
      const err = await storage
        .compareAndSetMany([
          { doc: 'twice', expected: null, next: stored('1-0', [1]) },
          { doc: 'twice', expected: null, next: stored('2-0', [2]) },
        ])
        .then(
          () => null,
          (e: unknown) => e,
        )
      expect(err).toBeInstanceOf(TypeError)
      expect(await storage.load('twice')).toBeNull()
    })

    it('races batches against single writers and each other: one winner per document', async () => {
      const other = await space.another()
      const docs = Array.from({ length: 12 }, (_, i) => `race-${i}`)
      await storage.compareAndSetMany(
        docs.map((doc) => ({ doc, expected: null, next: stored('5-0', [5]) })),
      )
      const batchOf = (w: string) =>
        docs.map((doc) => ({ doc, expected: '5-0', next: stored(w, randomBytes(64)) }))
      const batches = [batchOf('6-0'), batchOf('7-0')]
      // Two batches over the same documents (one reversed) through two processes, and singles.
      const [first, second, ...singles] = await Promise.all([
        storage.compareAndSetMany(batches[0]!),
        other.compareAndSetMany([...batches[1]!].reverse()).then((r) => r.reverse()),
        ...docs.map((doc) => other.compareAndSet(doc, '5-0', stored('8-0', [8]))),
      ])
      const loaded = await storage.loadMany(docs)
      for (const [i, doc] of docs.entries()) {
        const won = [first[i], second[i], singles[i]]
        const writes = [batches[0]![i]!.next, batches[1]![i]!.next, stored('8-0', [8])]
        const winners = writes.filter((_, k) => won[k])
        expect(winners.length, doc).toBeGreaterThanOrEqual(1)
        if (backend.kind !== 's3') expect(winners, doc).toHaveLength(1)
        // What loads is a winner's version (on s3 the highest: see the racing writers test).
        const highest = winners.reduce((a, b) =>
          compareWatermarks(a.watermark, b.watermark) >= 0 ? a : b,
        )
        expectStored(loaded[i]!, highest)
      }
    })
  })

  it('archives log entries idempotently and reads them ordered, deduplicated, after a point', async () => {
    const all = [
      { id: '1-0', update: Uint8Array.from([0, 0]) },
      entry('1-1'),
      entry('2-0'),
      entry('3-0'),
      entry('9-0'),
      entry('10-0'),
      entry('10-9'),
      entry('10-10'),
      entry('10-18446744073709551615'),
      entry('1700000000000-0'),
    ]
    const [e1, e2, e3, e4, e9, e10, e10s9, e10s10, e10max, eLate] = all as [
      LogEntry,
      LogEntry,
      LogEntry,
      LogEntry,
      LogEntry,
      LogEntry,
      LogEntry,
      LogEntry,
      LogEntry,
      LogEntry,
    ]
    await storage.appendLog('doc', [])
    expect(await storage.readLog('doc')).toEqual([])
    // A later batch archived first, the same batch twice, overlapping batches.
    await storage.appendLog('doc', [e10s10, e10max, eLate])
    await storage.appendLog('doc', [e1, e2, e3])
    await storage.appendLog('doc', [e1, e2, e3])
    await storage.appendLog('doc', [e3, e4, e9])
    await storage.appendLog('doc', [e9, e10, e10s9, e10s10])
    expectLog(await storage.readLog('doc'), all)
    expectLog(await storage.readLog('doc', { after: '0-0' }), all)
    expectLog(await storage.readLog('doc', { after: '3-0' }), [
      e9,
      e10,
      e10s9,
      e10s10,
      e10max,
      eLate,
    ])
    expectLog(await storage.readLog('doc', { after: '10-9' }), [e10s10, e10max, eLate])
    expectLog(await storage.readLog('doc', { after: '5-0' }), [
      e9,
      e10,
      e10s9,
      e10s10,
      e10max,
      eLate,
    ])
    expect(await storage.readLog('doc', { after: '1700000000000-0' })).toEqual([])
    // Bounded above too: ids in (after, upTo].
    expectLog(await storage.readLog('doc', { upTo: '3-0' }), [e1, e2, e3, e4])
    expectLog(await storage.readLog('doc', { after: '1-1', upTo: '10-9' }), [
      e3,
      e4,
      e9,
      e10,
      e10s9,
    ])
    expectLog(await storage.readLog('doc', { after: '10-0', upTo: '10-10' }), [e10s9, e10s10])
    expectLog(await storage.readLog('doc', { after: '9-0', upTo: '9-9' }), [])
    expectLog(await storage.readLog('doc', { upTo: '0-5' }), [])
    expectLog(await storage.readLog('doc', { after: '5-0', upTo: '4-0' }), [])
    expectLog(await storage.readLog('doc', { upTo: '1700000000000-0' }), all)
    // Each id counted once, however often and in whichever batches it was archived.
    const extent = await storage.logExtent('doc')
    expect(extent).toMatchObject({ first: '1-0', last: '1700000000000-0', entries: all.length })
    // Five batches archived, one of them twice under the same name.
    expect(extent?.segments).toBe(backend.kind === 'postgres' ? 1 : 4)
    if (backend.kind === 'postgres') {
      expect(extent?.bytes).toBe(all.reduce((n, e) => n + e.update.length, 0))
    } else {
      expect(extent?.bytes).toBeGreaterThan(all.reduce((n, e) => n + e.update.length, 0))
    }
    // Logs of other documents, including prefix look-alikes, stay apart.
    await storage.appendLog('doc2', [entry('4-0')])
    await storage.appendLog('do', [entry('5-0')])
    expectLog(await storage.readLog('doc2'), [entry('4-0')])
    expectLog(await storage.readLog('do'), [entry('5-0')])
    expectLog(await storage.readLog('doc'), all)
    // The log is not the state.
    expect(await storage.load('doc')).toBeNull()
  })

  it('deletes state, log and checkpoints together, leaves other documents alone, and can start over', async () => {
    for (const name of ['gone', 'gone2', 'gone/child', 'kept']) {
      expect(await storage.compareAndSet(name, null, stored('3-0', Buffer.from(name)))).toBe(true)
      await storage.appendLog(name, [entry('1-0'), entry('3-0')])
      await storage.putCheckpoint(name, { upTo: '1-0', state: Buffer.from(name) })
    }
    await storage.delete('gone')
    expect(await storage.load('gone')).toBeNull()
    expect(await storage.readLog('gone')).toEqual([])
    expect(await storage.logExtent('gone')).toBeNull()
    expect(await storage.listCheckpoints('gone')).toEqual([])
    expect(await storage.loadCheckpoint('gone', '1-0')).toBeNull()
    expect(await storage.list()).toEqual(['gone/child', 'gone2', 'kept'])
    expect(await storage.listHistory()).toEqual(['gone/child', 'gone2', 'kept'])
    for (const name of ['gone2', 'gone/child', 'kept']) {
      expectStored(await storage.load(name), stored('3-0', Buffer.from(name)))
      expectLog(await storage.readLog(name), [entry('1-0'), entry('3-0')])
      expect(await storage.listCheckpoints(name)).toEqual(['1-0'])
    }
    await expect(storage.delete('gone')).resolves.toBeUndefined()
    // Recreated from nothing: no old state, log or checkpoint shows through.
    expect(await storage.compareAndSet('gone', null, stored('1-0', [1]))).toBe(true)
    expectStored(await storage.load('gone'), stored('1-0', [1]))
    expect(await storage.readLog('gone')).toEqual([])
    expect(await storage.listCheckpoints('gone')).toEqual([])
  })

  it('lists documents with state in order, paging with after and limit', async () => {
    const names = ['b', 'a', 'B', 'a/b', 'a-b', 'Z'.repeat(150), 'c', 'a0']
    for (const [i, n] of names.entries()) {
      expect(await storage.compareAndSet(n, null, stored(`${i + 1}-0`, [i]))).toBe(true)
    }
    // Only archived, no state yet (compaction archives before it stores): not a document yet.
    await storage.appendLog('log-only', [entry('1-0')])
    const sorted = [...names].sort()
    expect(sorted).toEqual(['B', 'Z'.repeat(150), 'a', 'a-b', 'a/b', 'a0', 'b', 'c'])
    expect(await storage.list()).toEqual(sorted)
    expect(await storage.list({ limit: 3 })).toEqual(sorted.slice(0, 3))
    expect(await storage.list({ after: 'a' })).toEqual(sorted.slice(3))
    expect(await storage.list({ after: 'a-', limit: 2 })).toEqual(['a-b', 'a/b'])
    expect(await storage.list({ after: 'c' })).toEqual([])
    expect(await storage.list({ after: 'A' })).toEqual(sorted)

    const paged: string[] = []
    for (let page = await storage.list({ limit: 3 }); page.length > 0;) {
      expect(page.length).toBeLessThanOrEqual(3)
      paged.push(...page)
      page = await storage.list({ after: page.at(-1)!, limit: 3 })
    }
    expect(paged).toEqual(sorted)
  })
})

describe('postgres storage', () => {
  it('applies migrations once, however many processes start together', async () => {
    await using db = await testDatabase(undefined, 'migrations')
    const opened = await Promise.all(
      Array.from({ length: 4 }, () => createPostgresStorage({ url: db.url, poolMax: 2 })),
    )
    opened.push(await createPostgresStorage({ url: db.url, poolMax: 2 }))
    try {
      const [a, b] = opened as [DocStorage, DocStorage]
      expect(await a.compareAndSet('doc', null, stored('1-0', [1]))).toBe(true)
      expectStored(await b.load('doc'), stored('1-0', [1]))
      const client = new pg.Client({ connectionString: db.url })
      await client.connect()
      try {
        const applied = await client.query(
          'SELECT version FROM streambed_migrations ORDER BY version',
        )
        expect(applied.rows).toEqual([{ version: 1 }, { version: 2 }])
        // The tables went into the URL's schema.
        const placed = await client.query<{ table: string; schema: string }>(
          `SELECT table_name AS table, table_schema AS schema FROM information_schema.tables
           WHERE table_schema = $1 ORDER BY table_name`,
          [db.schema],
        )
        expect(placed.rows.map((r) => r.table)).toEqual([
          'streambed_checkpoints_v1',
          'streambed_docs_v1',
          'streambed_log_v1',
          'streambed_migrations',
        ])
      } finally {
        await client.end()
      }
    } finally {
      for (const s of opened) await s.close()
    }
  })

  it('adds checkpoints to a schema an earlier release migrated, keeping its data', async () => {
    await using db = await testDatabase(undefined, 'migration2')
    const client = new pg.Client({ connectionString: db.url })
    await client.connect()
    try {
      const first = await createPostgresStorage({ url: db.url, poolMax: 2 })
      expect(await first.compareAndSet('doc', null, stored('2-0', [2]))).toBe(true)
      await first.appendLog('doc', [entry('1-0'), entry('2-0')])
      await first.close()
      // As an earlier release left the schema: migration 1 only.
      await client.query('DROP TABLE streambed_checkpoints_v1')
      await client.query('DELETE FROM streambed_migrations WHERE version = 2')
      const storage = await createPostgresStorage({ url: db.url, poolMax: 2 })
      try {
        expectStored(await storage.load('doc'), stored('2-0', [2]))
        expectLog(await storage.readLog('doc'), [entry('1-0'), entry('2-0')])
        expect(await storage.listCheckpoints('doc')).toEqual([])
        await storage.putCheckpoint('doc', { upTo: '2-0', state: Uint8Array.from([2]) })
        expect(await storage.listCheckpoints('doc')).toEqual(['2-0'])
        const applied = await client.query('SELECT version FROM streambed_migrations ORDER BY 1')
        expect(applied.rows).toEqual([{ version: 1 }, { version: 2 }])
      } finally {
        await storage.close()
      }
    } finally {
      await client.end()
    }
  })

  it('lists history by code point in a database whose default collation sorts otherwise', async () => {
    await using server = await startPostgresServer()
    const admin = new pg.Client({ connectionString: server.url })
    await admin.connect()
    try {
      await admin.query(
        `CREATE DATABASE icu TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`,
      )
    } finally {
      await admin.end()
    }
    const url = new URL(server.url)
    url.pathname = '/icu'
    const storage = await createPostgresStorage({ url: url.toString(), poolMax: 2 })
    try {
      // en-US puts a before B; code points put B before a, as list() and the other backends do.
      const logged = ['b', 'a', 'B', 'Z', 'a-b', 'a/b', 'A']
      for (const name of logged) await storage.appendLog(name, [entry('1-0')])
      for (const name of ['c', 'B', 'C']) {
        await storage.putCheckpoint(name, { upTo: '1-0', state: Uint8Array.from([1]) })
      }
      const sorted = ['A', 'B', 'C', 'Z', 'a', 'a-b', 'a/b', 'b', 'c']
      expect(await storage.listHistory()).toEqual(sorted)
      expect(await storage.listHistory({ after: 'Z', limit: 3 })).toEqual(['a', 'a-b', 'a/b'])
      expect(await storage.listHistory({ after: 'a/b' })).toEqual(['b', 'c'])
    } finally {
      await storage.close()
    }
  })

  it('stores nothing of a batch whose statement fails; each document alone stores', async () => {
    await using db = await testDatabase(undefined, 'failed_batch')
    const storage = await createPostgresStorage({ url: db.url })
    try {
      expect(await storage.compareAndSet('b', null, stored('1-0', [1]))).toBe(true)
      // Postgres text cannot hold a NUL: this document's row fails the statement.
      const items: CompareAndSetItem[] = [
        { doc: 'a', expected: null, next: stored('2-0', [2]) },
        { doc: 'b', expected: '1-0', next: stored('2-0', [2]) },
        { doc: 'bad\u0000', expected: null, next: stored('2-0', [2]) },
      ]
      await expectStorageUnavailable(storage.compareAndSetMany(items))
      expect((await storage.loadMany(['a', 'b'])).map((d) => d?.watermark ?? null)).toEqual([
        null,
        '1-0',
      ])
      const alone = await Promise.allSettled(
        items.map((i) => storage.compareAndSet(i.doc, i.expected, i.next)),
      )
      expect(alone.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected'])
      expect((await storage.loadMany(['a', 'b'])).map((d) => d?.watermark)).toEqual(['2-0', '2-0'])
    } finally {
      await storage.close()
    }
  })

  it('runs overlapping batches in opposite orders without deadlock', async () => {
    await using db = await testDatabase(undefined, 'deadlock')
    const [one, two] = await Promise.all([
      createPostgresStorage({ url: db.url, poolMax: 4 }),
      createPostgresStorage({ url: db.url, poolMax: 4 }),
    ])
    try {
      const docs = Array.from({ length: 40 }, (_, i) => `doc-${String(i).padStart(2, '0')}`)
      let at: string | null = null
      for (let round = 1; round <= 15; round++) {
        const w = `${round}-0`
        const batch = (order: string[], expected: string | null) =>
          order.map((doc) => ({ doc, expected, next: stored(w, [round]) }))
        // The same documents, created or advanced by two processes at once: one forwards, one
        // backwards, and a third batch over every other document.
        const [forwards, backwards, odd] = await Promise.all([
          one.compareAndSetMany(batch(docs, at)),
          two.compareAndSetMany(batch([...docs].reverse(), at)).then((r) => r.reverse()),
          one
            .compareAndSetMany(batch(docs.filter((_, i) => i % 2 === 1).reverse(), at))
            .then((r) => r.reverse()),
        ])
        for (const [i, doc] of docs.entries()) {
          const won = [forwards[i], backwards[i], ...(i % 2 === 1 ? [odd[(i - 1) / 2]] : [])]
          expect(won.filter(Boolean), `${doc} round ${round}`).toHaveLength(1)
        }
        at = w
      }
      expect((await one.loadMany(docs)).every((d) => d?.watermark === '15-0')).toBe(true)
    } finally {
      await one.close()
      await two.close()
    }
  })

  it('reports a stopped server as STORAGE_UNAVAILABLE and recovers without being recreated', async () => {
    await using server = await startPostgresServer()
    const lines: string[] = []
    const destination = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        lines.push(chunk.toString())
        done()
      },
    })
    const logger = createLogger({ level: 'warn', destination })
    const storage = await createPostgresStorage({ url: server.url, logger })
    try {
      expect(await storage.compareAndSet('doc', null, stored('1-0', [1]))).toBe(true)
      await server.stop()
      // The pooled idle connection learns of the shutdown: logged, not an uncaught 'error' event.
      await vi.waitFor(() => expect(lines.join('')).toContain('idle Postgres connection failed'), {
        timeout: 5000,
      })
      await expectStorageUnavailable(storage.load('doc'))
      await expectStorageUnavailable(storage.ping())
      await expectStorageUnavailable(storage.compareAndSet('doc', '1-0', stored('2-0', [2])))
      await expectStorageUnavailable(storage.appendLog('doc', [entry('2-0')]))
      await expectStorageUnavailable(createPostgresStorage({ url: server.url }))
      await server.start()
      await storage.ping()
      expectStored(await storage.load('doc'), stored('1-0', [1]))
      expect(await storage.compareAndSet('doc', '1-0', stored('2-0', [2]))).toBe(true)
      expectStored(await storage.load('doc'), stored('2-0', [2]))
    } finally {
      await storage.close()
    }
  })
})

describe('s3 storage', () => {
  const allKeys = async (client: S3Client, Bucket: string): Promise<string[]> => {
    const res = await client.send(new ListObjectsV2Command({ Bucket }))
    expect(res.IsTruncated).toBeFalsy()
    return (res.Contents ?? []).map((o) => o.Key!)
  }

  it('keeps the newest two state versions, all keys under its prefix', async () => {
    const server = await s3Server()
    const Bucket = await server.createBucket('versions')
    const storage = await createS3Storage({
      client: s3Client(server),
      bucket: Bucket,
      prefix: 'p/',
    })
    const inspect = s3Client(server)
    try {
      let expected: string | null = null
      for (let i = 1; i <= 5; i++) {
        expect(await storage.compareAndSet('doc', expected, stored(`${i}-0`, [i]))).toBe(true)
        expected = `${i}-0`
      }
      await storage.appendLog('doc', [entry('1-0'), entry('5-0')])
      await storage.putCheckpoint('doc', { upTo: '5-0', state: Uint8Array.from([5]) })
      const keys = await allKeys(inspect, Bucket)
      expect(keys).toEqual([
        `p/v1/docs/doc/checkpoints/${'5'.padStart(15, '0')}-${'0'.padStart(20, '0')}.ydoc`,
        `p/v1/docs/doc/log/${'1'.padStart(15, '0')}-${'0'.padStart(20, '0')}_${'5'.padStart(15, '0')}-${'0'.padStart(20, '0')}.ylog`,
        `p/v1/docs/doc/state/${'4'.padStart(15, '0')}-${'0'.padStart(20, '0')}.ydoc`,
        `p/v1/docs/doc/state/${'5'.padStart(15, '0')}-${'0'.padStart(20, '0')}.ydoc`,
      ])
      await storage.delete('doc')
      expect(await allKeys(inspect, Bucket)).toEqual([])
    } finally {
      await storage.close()
      inspect.destroy()
    }
  })

  it('lists again when the newest version is collected between listing and reading', async () => {
    const server = await s3Server()
    const bucket = await server.createBucket('vanish')
    const writer = await createS3Storage({ client: s3Client(server), bucket })
    const readerClient = s3Client(server)
    let interfered = false
    readerClient.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'GetObjectCommand' && !interfered) {
          interfered = true
          // Two newer versions make the one about to be read collectable.
          expect(await writer.compareAndSet('doc', '2-0', stored('3-0', [3]))).toBe(true)
          expect(await writer.compareAndSet('doc', '3-0', stored('4-0', [4]))).toBe(true)
        }
        return next(args)
      },
      { step: 'initialize', name: 'interfere' },
    )
    const reader = await createS3Storage({ client: readerClient, bucket })
    try {
      expect(await writer.compareAndSet('doc', null, stored('1-0', [1]))).toBe(true)
      expect(await writer.compareAndSet('doc', '1-0', stored('2-0', [2]))).toBe(true)
      expectStored(await reader.load('doc'), stored('4-0', [4]))
      expect(interfered).toBe(true)
    } finally {
      await reader.close()
      await writer.close()
    }
  })

  it('pages through more than 1000 objects when listing, reading and deleting', async () => {
    const server = await s3Server()
    const bucket = await server.createBucket('many')
    const storage = await createS3Storage({ client: s3Client(server), bucket })
    try {
      const entries = Array.from({ length: 1003 }, (_, i) => entry(`${i + 1}-0`))
      for (let at = 0; at < entries.length; at += 50) {
        await Promise.all(entries.slice(at, at + 50).map((e) => storage.appendLog('doc', [e])))
      }
      expect(await storage.compareAndSet('doc', null, stored('1003-0', [1]))).toBe(true)
      // Documents before and after it in key order: list() pages past its log.
      expect(await storage.compareAndSet('a-doc', null, stored('1-0', [1]))).toBe(true)
      expect(await storage.compareAndSet('zz', null, stored('1-0', [1]))).toBe(true)
      expect(await storage.list()).toEqual(['a-doc', 'doc', 'zz'])
      await storage.putCheckpoint('zz', { upTo: '1-0', state: Uint8Array.from([1]) })
      expect(await storage.listHistory()).toEqual(['doc', 'zz'])
      expectLog(await storage.readLog('doc'), entries)
      expectLog(await storage.readLog('doc', { after: '1000-0' }), entries.slice(1000))
      expect(await storage.logExtent('doc')).toMatchObject({
        first: '1-0',
        last: '1003-0',
        entries: 1003,
        segments: 1003,
      })
      await storage.delete('doc')
      expect(await storage.readLog('doc')).toEqual([])
      expect(await storage.load('doc')).toBeNull()
      expect(await storage.list()).toEqual(['a-doc', 'zz'])
    } finally {
      await storage.close()
    }
  })

  it('refuses a missing bucket or a bad prefix at creation, as configuration errors', async () => {
    const server = await s3Server()
    const bucket = await server.createBucket('config')
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => 'created',
        (err: unknown) => (isAppError(err) ? err.code : String(err)),
      )
    expect(
      await codeOf(createS3Storage({ client: s3Client(server), bucket: 'no-such-bucket-here' })),
    ).toBe('CONFIG')
    expect(await codeOf(createS3Storage({ client: s3Client(server), bucket, prefix: 'p' }))).toBe(
      'CONFIG',
    )
  })

  it('puts every document of a batch when one put fails, then reports the failure', async () => {
    const server = await s3Server()
    const bucket = await server.createBucket('partial')
    const client = s3Client(server, { maxAttempts: 1 })
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? ''
        if (context.commandName === 'PutObjectCommand') {
          if (key.includes('/broken/')) throw new Error('put refused')
          // The others are slower than the failure.
          await new Promise((r) => setTimeout(r, 50))
        }
        return next(args)
      },
      { step: 'initialize', name: 'refuse-one-put' },
    )
    const storage = await createS3Storage({ client, bucket })
    try {
      // More documents than run at once: the ones after the failure still start.
      const docs = ['broken', ...Array.from({ length: 40 }, (_, i) => `doc-${i}`)]
      const items = docs.map((doc) => ({ doc, expected: null, next: stored('1-0', [1]) }))
      await expectStorageUnavailable(storage.compareAndSetMany(items))
      expect((await storage.loadMany(docs)).map((d) => d?.watermark)).toEqual([
        undefined,
        ...docs.slice(1).map(() => '1-0'),
      ])
    } finally {
      await storage.close()
    }
  })

  it('reports an unreachable server as STORAGE_UNAVAILABLE', async () => {
    const server = await startS3Server()
    const bucket = await server.createBucket('down')
    const storage = await createS3Storage({ client: s3Client(server, { maxAttempts: 1 }), bucket })
    try {
      expect(await storage.compareAndSet('doc', null, stored('1-0', [1]))).toBe(true)
      await server.close()
      await expectStorageUnavailable(storage.ping())
      await expectStorageUnavailable(storage.load('doc'))
      await expectStorageUnavailable(storage.compareAndSet('doc', '1-0', stored('2-0', [2])))
      await expectStorageUnavailable(storage.list())
    } finally {
      await storage.close()
    }
  })
})
