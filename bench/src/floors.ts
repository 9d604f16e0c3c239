/**
 * Floors every benchmark run measures first, on this machine, now: results are reported as ratios
 * to them so they stay comparable across machines.
 */
import * as Y from 'yjs'
import { Redis } from 'ioredis'
import WebSocket from 'ws'
import { mergeAll } from '@streambed/protocol'
import { cliArgs } from '@streambed/cli/testing'
import { startProcess, type RedisServer } from '@streambed/testing'
import { rssBytes } from './proc.js'
import { sleep } from './load.js'
import { fmt, repoRoot, summary, table } from './stats.js'
import { openMany } from './sockets.js'
import { typingTrace } from './traces.js'

export interface Floors {
  redis: { rttP50Ms: number; rttP99Ms: number; xaddPerSec: number }
  socket: {
    /** Echo round trip, back to back (hot caches, busy processes). */
    rttP50Ms: number
    rttP99Ms: number
    /** The same at PACED_RATE/s, as the latency scenarios send: every message wakes idle processes. */
    pacedRttP50Ms: number
    pacedRttP99Ms: number
    rssPerIdleSocketBytes: number
  }
  yjs: { docBytes: number; applyEncodeMs: number; mergeMs: number }
}

/** One client's XADD seen by another client blocked in XREAD, at `rate` per second. */
export const measureRedisRtt = async (
  url: string,
  rate: number,
  count: number,
): Promise<number[]> => {
  const writer = new Redis(url)
  const reader = new Redis(url)
  const stream = `floor-${Date.now()}-${Math.random()}`
  const sentAt = new Map<string, number>()
  const latencies: number[] = []
  let last = '$'
  let running = true
  const loop = (async () => {
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
  await sleep(100)
  for (let i = 0; i < count; i++) {
    sentAt.set(`m${i}`, performance.now())
    await writer.xadd(stream, '*', 'u', `m${i}`)
    await sleep(1000 / rate)
  }
  await sleep(300)
  running = false
  await loop
  await writer.del(stream)
  writer.disconnect()
  reader.disconnect()
  return latencies
}

const redisFloor = async (redis: RedisServer, quick: boolean): Promise<Floors['redis']> => {
  await measureRedisRtt(redis.url, 100, 50) // warm-up
  const rtt = summary(await measureRedisRtt(redis.url, 100, quick ? 200 : 1000))
  // XADD rate: one client, pipelined in batches of 100, small payloads.
  const client = new Redis(redis.url)
  const n = quick ? 20_000 : 100_000
  const start = performance.now()
  for (let i = 0; i < n; i += 100) {
    const p = client.pipeline()
    for (let j = 0; j < 100; j++) p.xadd('floor-rate', '*', 'u', 'xxxxxxxxxxxxxxxxxxxx')
    await p.exec()
  }
  const xaddPerSec = n / ((performance.now() - start) / 1000)
  await client.del('floor-rate')
  client.disconnect()
  return { rttP50Ms: rtt.p50, rttP99Ms: rtt.p99, xaddPerSec }
}

/** Starts the bare uWS echo server as a child process. */
export const startEchoServer = async () => {
  const proc = startProcess(
    process.execPath,
    [...cliArgs('').slice(0, 3), `${repoRoot}bench/src/echo-server.ts`],
    { cwd: repoRoot },
  )
  const line = await proc.waitForLine(/echo listening/)
  const port = (JSON.parse(line) as { port: number }).port
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    pid: proc.child.pid as number,
    stop: () => proc.kill('SIGKILL'),
  }
}

/** The rate of the Redis floor and of the paced echo: S1's reference rate. */
export const PACED_RATE = 100

const socketFloor = async (quick: boolean): Promise<Floors['socket']> => {
  const echo = await startEchoServer()
  try {
    const ws = new WebSocket(echo.url)
    ws.binaryType = 'arraybuffer'
    await new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
    })
    const payload = new Uint8Array(40)
    const roundTrip = async () => {
      const start = performance.now()
      await new Promise<void>((resolve) => {
        ws.once('message', () => resolve())
        ws.send(payload)
      })
      return performance.now() - start
    }
    const rtts: number[] = []
    for (let i = 0; i < (quick ? 300 : 1000); i++) {
      rtts.push(await roundTrip())
      if (i % 10 === 0) await sleep(1)
    }
    const paced: number[] = []
    for (let i = 0; i < (quick ? 150 : 500); i++) {
      paced.push(await roundTrip())
      await sleep(1000 / PACED_RATE)
    }
    ws.close()
    const rtt = summary(rtts.slice(20))
    const pacedRtt = summary(paced.slice(10))
    // RSS per idle connection: RSS growth over `count` idle sockets.
    const count = quick ? 2000 : 5000
    await sleep(200)
    const before = rssBytes(echo.pid)
    const sockets = await openMany(echo.url, count)
    await sleep(500)
    const after = rssBytes(echo.pid)
    sockets.close()
    return {
      rttP50Ms: rtt.p50,
      rttP99Ms: rtt.p99,
      pacedRttP50Ms: pacedRtt.p50,
      pacedRttP99Ms: pacedRtt.p99,
      rssPerIdleSocketBytes: (after - before) / count,
    }
  } finally {
    await echo.stop()
  }
}

const yjsFloor = (): Floors['yjs'] => {
  const updates = typingTrace(20_000)
  const merged = mergeAll(updates)
  const runs = 5
  let applyEncode = 0
  let merge = 0
  for (let i = 0; i < runs; i++) {
    let start = performance.now()
    const doc = new Y.Doc()
    Y.applyUpdate(doc, merged)
    Y.encodeStateAsUpdate(doc)
    applyEncode += performance.now() - start
    doc.destroy()
    start = performance.now()
    mergeAll(updates)
    merge += performance.now() - start
  }
  return { docBytes: merged.length, applyEncodeMs: applyEncode / runs, mergeMs: merge / runs }
}

export const measureFloors = async (redis: RedisServer, quick: boolean): Promise<Floors> => ({
  redis: await redisFloor(redis, quick),
  socket: await socketFloor(quick),
  yjs: yjsFloor(),
})

export const floorsTable = (f: Floors): string =>
  table([
    {
      floor: 'Redis: XADD → XREAD BLOCK round trip, one client, 100/s',
      p50: `${fmt(f.redis.rttP50Ms, 3)} ms`,
      p99: `${fmt(f.redis.rttP99Ms, 3)} ms`,
      other: '',
    },
    {
      floor: 'Redis: XADD rate, one client, pipelined',
      p50: '',
      p99: '',
      other: `${fmt(f.redis.xaddPerSec, 0)} /s`,
    },
    {
      floor: 'Socket: bare uWebSockets.js echo round trip',
      p50: `${fmt(f.socket.rttP50Ms, 3)} ms`,
      p99: `${fmt(f.socket.rttP99Ms, 3)} ms`,
      other: '',
    },
    {
      floor: `Socket: bare uWebSockets.js echo round trip, ${PACED_RATE}/s`,
      p50: `${fmt(f.socket.pacedRttP50Ms, 3)} ms`,
      p99: `${fmt(f.socket.pacedRttP99Ms, 3)} ms`,
      other: '',
    },
    {
      floor: 'Socket: bare uWebSockets.js RSS per idle connection',
      p50: '',
      p99: '',
      other: `${fmt(f.socket.rssPerIdleSocketBytes / 1024, 2)} KiB`,
    },
    {
      floor: `Yjs: apply + encodeStateAsUpdate of a ${Math.round(f.yjs.docBytes / 1024)} KiB document`,
      p50: `${fmt(f.yjs.applyEncodeMs)} ms`,
      p99: '',
      other: '',
    },
    {
      floor: 'Yjs: merge of the same document from 20k updates (tree of mergeUpdates)',
      p50: `${fmt(f.yjs.mergeMs)} ms`,
      p99: '',
      other: '',
    },
  ])
