/**
 * Memory readings from inside a child process over the Chrome DevTools Protocol: a full GC on
 * demand, the V8 heap, and process.memoryUsage(). The child must be started with
 * `inspectEnv` (NODE_OPTIONS=--inspect=127.0.0.1:0); its "Debugger listening on ws://…" line on
 * stderr gives the URL. RSS alone cannot tell live data from garbage not yet collected.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { Redis } from 'ioredis'
import type { SpawnedProcessNode } from '@streambed/cli/testing'
import { type DocStreams, createDocStreams, createKeys } from '@streambed/streams'
import type { ManagedProcess } from '@streambed/testing'
import { type Cluster, startCluster } from './cluster.js'
import { sleep } from './load.js'
import { rssBytes, statusBytes } from './proc.js'
import { fmt } from './stats.js'

/** Environment for spawnNode / startCluster: the inspector on a free loopback port. */
export const inspectEnv = { NODE_OPTIONS: '--inspect=127.0.0.1:0' }

export interface HeapReading {
  /** V8 heap in use (Runtime.getHeapUsage usedSize). */
  heapUsedBytes: number
  /** V8 heap reserved (totalSize). */
  heapTotalBytes: number
  /** Memory of ArrayBuffers and Buffers outside the V8 heap (process.memoryUsage().external). */
  externalBytes: number
}

export interface Inspector {
  /** Two full, blocking GCs (the second collects what the first one's weak callbacks freed). */
  collectGarbage(): Promise<void>
  heap(): Promise<HeapReading>
  close(): void
}

type Reply = { id?: number; result?: unknown; error?: { message: string } }

export const connectInspector = async (proc: ManagedProcess): Promise<Inspector> => {
  const line = await proc.waitForLine(/Debugger listening on ws:\/\//)
  const url = /(ws:\/\/\S+)/.exec(line)?.[1]
  if (!url) throw new Error(`no inspector URL in "${line}"`)
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 })
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  let nextId = 1
  const pending = new Map<number, { resolve(r: unknown): void; reject(e: Error): void }>()
  ws.on('message', (data: Buffer) => {
    const msg = JSON.parse(data.toString()) as Reply
    const waiter = msg.id === undefined ? undefined : pending.get(msg.id)
    if (!waiter || msg.id === undefined) return // an event, not a reply
    pending.delete(msg.id)
    if (msg.error) waiter.reject(new Error(`inspector: ${msg.error.message}`))
    else waiter.resolve(msg.result)
  })
  const fail = (err: Error) => {
    for (const w of pending.values()) w.reject(err)
    pending.clear()
  }
  ws.on('error', fail)
  ws.on('close', () => fail(new Error('inspector connection closed')))

  const call = <T>(method: string, params: Record<string, unknown> = {}, timeoutMs = 60_000) =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new Error(`inspector: no reply to ${method} within ${timeoutMs} ms`))
      }, timeoutMs)
      pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer)
          resolve(r as T)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      ws.send(JSON.stringify({ id, method, params }))
    })

  return {
    collectGarbage: async () => {
      await call('HeapProfiler.collectGarbage')
      await call('HeapProfiler.collectGarbage')
    },
    heap: async () => {
      const usage = await call<{ usedSize: number; totalSize: number }>('Runtime.getHeapUsage')
      const evaluated = await call<{ result: { value: string } }>('Runtime.evaluate', {
        expression: 'JSON.stringify(process.memoryUsage())',
        returnByValue: true,
      })
      const mu = JSON.parse(evaluated.result.value) as { external: number }
      return {
        heapUsedBytes: usage.usedSize,
        heapTotalBytes: usage.totalSize,
        externalBytes: mu.external,
      }
    },
    close: () => ws.close(),
  }
}

export interface ProbedNode {
  readonly cluster: Cluster
  readonly node: SpawnedProcessNode
  readonly pid: number
  readonly inspector: Inspector
  readonly stop: () => Promise<void>
}

/** One server node on its own Redis, with the inspector connected: what memory readings need. */
export const startProbedNode = async (env: Record<string, string>): Promise<ProbedNode> => {
  const cluster = await startCluster({ nodes: 1, env: { ...inspectEnv, ...env } })
  try {
    const node = cluster.nodes[0]
    const pid = node?.proc.child.pid
    if (!node || !pid) throw new Error('node did not start')
    const inspector = await connectInspector(node.proc)
    const stop = async () => {
      inspector.close()
      await cluster.stop()
    }
    return { cluster, node, pid, inspector, stop }
  } catch (err) {
    await cluster.stop()
    throw err
  }
}

/**
 * `fn` with a probed node (startProbedNode with `env`) and the streams library on its Redis, for
 * putting documents in place directly; everything stopped afterwards.
 */
export const withProbedNode = async <T>(
  env: Record<string, string>,
  fn: (probed: ProbedNode & { streams: DocStreams }) => Promise<T>,
): Promise<T> => {
  const probed = await startProbedNode(env)
  const admin = new Redis(probed.cluster.redis.url)
  try {
    const keys = createKeys(probed.cluster.prefix)
    return await fn({
      ...probed,
      streams: createDocStreams({ redis: admin, keys, queueShards: 8 }),
    })
  } finally {
    admin.disconnect()
    await probed.stop()
  }
}

/** Peak RSS of `pid` since the last `resetPeakRss` (VmHWM, exact, kept by the kernel). */
export const peakRssBytes = (pid: number): number => statusBytes(pid, 'VmHWM')

/** Resets VmHWM to the current RSS (Linux ≥ 4.0); false where /proc/<pid>/clear_refs is not writable. */
export const resetPeakRss = (pid: number): boolean => {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** Open-file soft limit of `pid` and file descriptors it holds now. */
export const fdUsage = (pid: number): { limit: number; open: number } => {
  const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
  const limit = !m?.[1] || m[1] === 'unlimited' ? Infinity : Number(m[1])
  return { limit, open: readdirSync(`/proc/${pid}/fd`).length }
}

/** Waits until the RSS of `pid` moves less than 1 % over 500 ms (at most `maxMs`); returns it. */
export const settledRss = async (pid: number, maxMs = 5000): Promise<number> => {
  const deadline = Date.now() + maxMs
  let last = rssBytes(pid)
  for (;;) {
    await sleep(500)
    const now = rssBytes(pid)
    if (Math.abs(now - last) < 0.01 * last || Date.now() > deadline) return now
    last = now
  }
}

/** The sum of every sample of `name` (all label sets) in a node's /metrics text. */
export const metricValue = (text: string, name: string): number =>
  text
    .split('\n')
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)

export const fetchMetrics = async (httpUrl: string): Promise<string> => {
  const res = await fetch(`${httpUrl}/metrics`)
  if (!res.ok) throw new Error(`GET ${httpUrl}/metrics: ${res.status}`)
  return res.text()
}

/**
 * Waits (up to 10 s) until the node at `httpUrl` holds no socket and no document: the sockets of
 * a warm-up closed and their documents lingered out.
 */
export const waitForIdleNode = async (httpUrl: string): Promise<void> => {
  for (let i = 0; i < 100; i++) {
    const m = await fetchMetrics(httpUrl)
    if (metricValue(m, 'streambed_connections') + metricValue(m, 'streambed_docs_open') === 0)
      return
    await sleep(100)
  }
}

export const mib = (bytes: number): string => fmt(bytes / 2 ** 20, 1)
export const kib = (bytes: number): string => fmt(bytes / 1024, 2)

/**
 * A text document of `bytes` characters (root type `content`) as one update: one item, the best
 * case for Yjs.
 */
export const textDocument = (bytes: number): Uint8Array => {
  const doc = new Y.Doc()
  const sentence = 'The quick brown fox jumps over the lazy dog; '
  doc
    .getText('content')
    .insert(0, sentence.repeat(Math.ceil(bytes / sentence.length)).slice(0, bytes))
  return Y.encodeStateAsUpdate(doc)
}
