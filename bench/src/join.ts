/**
 * Join time of a document whose whole history is a stream tail of N entries (nothing compacted
 * yet): time from a client's sync step 1 to our step 2, over a real socket to a server node in its
 * own process. Floors measured in the same run: reading the same entries with XRANGE (Redis floor)
 * and the node's own merge (mergeAll + diffUpdate) run in-process (Yjs floor). A single flat
 * Y.mergeUpdates call is shown for reference.
 */
import * as Y from 'yjs'
import { Redis } from 'ioredis'
import { decodeMessage, encodeSyncStep1, mergeAll } from '@streambed/protocol'
import { createDocStreams, createKeys } from '@streambed/streams'
import { connectRaw, startRedisServer, uniquePrefix } from '@streambed/testing'
import { spawnBuilt } from './cluster.js'
import { fmt, summary, table, type Row } from './stats.js'
import { typingTrace } from './traces.js'

const time = async (fn: () => Promise<unknown>): Promise<number> => {
  const start = performance.now()
  await fn()
  return performance.now() - start
}

/** One join over a real socket: sync step 1 with an empty state vector until our step 2. */
export const joinOnce = async (
  nodeUrl: string,
  doc: string,
): Promise<{ ms: number; bytes: number }> => {
  const raw = connectRaw(`${nodeUrl}/${doc}`)
  await raw.opened
  let bytes = 0
  const ms = await time(
    () =>
      new Promise<void>((resolve) => {
        raw.ws.on('message', (data: ArrayBuffer) => {
          if (decodeMessage(new Uint8Array(data)).kind === 'sync-step2') {
            bytes = data.byteLength
            resolve()
          }
        })
        raw.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
      }),
  )
  raw.close()
  return { ms, bytes }
}

export const runJoin = async (opts: { entries: number[]; repeats: number }): Promise<string> => {
  await using redis = await startRedisServer()
  const prefix = uniquePrefix('bench-join')
  await using node = await spawnBuilt({
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    LOG_LEVEL: 'info',
  })
  const admin = new Redis(redis.url)
  const keys = createKeys(prefix)
  const streams = createDocStreams({ redis: admin, keys, queueShards: 8 })
  const rows: Row[] = []
  for (const n of opts.entries) {
    const doc = `join-${n}`
    const updates = typingTrace(n)
    for (let i = 0; i < updates.length; i += 500) {
      await Promise.all(updates.slice(i, i + 500).map((u) => streams.append(doc, u, 'bench/0')))
    }
    const emptySv = Y.encodeStateVector(new Y.Doc())
    const joins: number[] = []
    const redisFloor: number[] = []
    const yjsFloor: number[] = []
    const flatMerge: number[] = []
    let bytes = 0
    for (let r = 0; r < opts.repeats; r++) {
      redisFloor.push(await time(() => admin.xrangeBuffer(keys.stream(doc), '-', '+')))
      yjsFloor.push(await time(async () => Y.diffUpdate(mergeAll(updates), emptySv)))
      if (r < 2)
        flatMerge.push(await time(async () => Y.diffUpdate(Y.mergeUpdates(updates), emptySv)))
      const j = await joinOnce(node.url, doc)
      joins.push(j.ms)
      bytes = j.bytes
    }
    const j = summary(joins)
    const rf = summary(redisFloor)
    const yf = summary(yjsFloor)
    rows.push({
      'stream entries': n,
      'doc bytes': bytes,
      'join p50 ms': fmt(j.p50),
      'join p99 ms': fmt(j.p99),
      'XRANGE floor p50 ms': fmt(rf.p50),
      'merge floor p50 ms': fmt(yf.p50),
      'join ÷ (XRANGE + merge) p50': fmt(j.p50 / (rf.p50 + yf.p50)),
      'flat Y.mergeUpdates ms (reference)': fmt(summary(flatMerge).p50),
    })
  }
  admin.disconnect()
  return table(rows)
}
