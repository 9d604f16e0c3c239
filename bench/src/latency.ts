/**
 * Cross-node delivery latency: a writer connected to node A sends updates at a fixed rate; readers
 * on node B receive them. Updates are forwarded byte-identical, so each received frame is matched
 * to its send time. Floor measured in the same run: one Redis client's XADD, seen by another
 * client blocked in XREAD, at the same rate.
 */
import * as Y from 'yjs'
import { Redis } from 'ioredis'
import { decodeMessage, encodeSyncStep1, encodeSyncUpdate } from '@streambed/protocol'
import { connectRaw, startRedisServer, uniquePrefix } from '@streambed/testing'
import { spawnBuilt } from './cluster.js'
import { fmt, summary, table } from './stats.js'

const key = (u: Uint8Array) => Buffer.from(u).toString('base64')

const redisFloor = async (url: string, rate: number, count: number): Promise<number[]> => {
  const writer = new Redis(url)
  const reader = new Redis(url)
  const stream = `floor-${Date.now()}`
  const sentAt = new Map<string, number>()
  const latencies: number[] = []
  let last = '$'
  let running = true
  const readLoop = (async () => {
    while (running) {
      const res = await reader.xread('BLOCK', 200, 'STREAMS', stream, last)
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          last = id
          const sent = sentAt.get(fields[1] as string)
          if (sent !== undefined) latencies.push(performance.now() - sent)
        }
      }
    }
  })()
  await new Promise((r) => setTimeout(r, 100))
  for (let i = 0; i < count; i++) {
    const payload = `m${i}`
    sentAt.set(payload, performance.now())
    await writer.xadd(stream, '*', 'u', payload)
    await new Promise((r) => setTimeout(r, 1000 / rate))
  }
  await new Promise((r) => setTimeout(r, 300))
  running = false
  await readLoop
  writer.disconnect()
  reader.disconnect()
  return latencies
}

export const runLatency = async (opts: {
  rate: number
  seconds: number
  readers: number
}): Promise<string> => {
  await using redis = await startRedisServer()
  const prefix = uniquePrefix('bench-lat')
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: prefix }
  await using a = await spawnBuilt(env)
  await using b = await spawnBuilt(env)
  const count = opts.rate * opts.seconds
  await redisFloor(redis.url, opts.rate, opts.rate) // warm-up
  const floor = await redisFloor(redis.url, opts.rate, count)

  const sentAt = new Map<string, number>()
  const latencies: number[] = []
  const readers = Array.from({ length: opts.readers }, () => connectRaw(`${b.url}/lat`))
  const writer = connectRaw(`${a.url}/lat`)
  await Promise.all([...readers, writer].map((c) => c.opened))
  for (const r of [...readers, writer]) r.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
  for (const r of readers) {
    r.ws.on('message', (data: ArrayBuffer) => {
      const msg = decodeMessage(new Uint8Array(data))
      if (msg.kind !== 'sync-update') return
      const sent = sentAt.get(key(msg.update))
      if (sent !== undefined) latencies.push(performance.now() - sent)
    })
  }
  await new Promise((r) => setTimeout(r, 300))
  const doc = new Y.Doc()
  let update: Uint8Array = new Uint8Array()
  doc.on('update', (u: Uint8Array) => (update = u))
  const text = doc.getText('t')
  // Warm-up (JIT, connection pools): sent at the same rate, not measured.
  const warmup = opts.rate
  for (let i = 0; i < warmup; i++) {
    text.insert(text.length, 'w')
    writer.send(encodeSyncUpdate(update))
    await new Promise((r) => setTimeout(r, 1000 / opts.rate))
  }
  await new Promise((r) => setTimeout(r, 200))
  for (let i = 0; i < count; i++) {
    text.insert(text.length, 'x')
    sentAt.set(key(update), performance.now())
    writer.send(encodeSyncUpdate(update))
    await new Promise((r) => setTimeout(r, 1000 / opts.rate))
  }
  await new Promise((r) => setTimeout(r, 500))
  for (const c of [...readers, writer]) c.close()
  const l = summary(latencies)
  const f = summary(floor)
  return table([
    {
      'rate /s': opts.rate,
      readers: opts.readers,
      delivered: `${l.n}/${count * opts.readers}`,
      'p50 ms': fmt(l.p50),
      'p99 ms': fmt(l.p99),
      'Redis floor p50 ms': fmt(f.p50),
      'Redis floor p99 ms': fmt(f.p99),
      'p50 ÷ floor': fmt(l.p50 / f.p50),
      'p99 ÷ floor': fmt(l.p99 / f.p99),
    },
  ])
}
