/** Starts what a scenario measures: Redis, N server node processes, W worker processes. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnNode, type SpawnedProcessNode } from '@streambed/cli/testing'
import { startRedisServer, uniquePrefix, type RedisServer } from '@streambed/testing'
import { type CpuMeter, meterCpu, rssBytes, withOthers } from './proc.js'

export interface Cluster {
  readonly redis: RedisServer
  readonly nodes: SpawnedProcessNode[]
  readonly workers: SpawnedProcessNode[]
  readonly prefix: string
  readonly storageDir: string
  readonly env: Record<string, string>
  /** CPU seconds per process (redis, node0…, worker0…) from now on. */
  meter(): CpuMeter
  rss(): Record<string, number>
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * A server node or worker from the compiled build (`npm run bench` builds first): what users run.
 * The TypeScript source under tsx carries a name-keeping wrapper on every function (measured:
 * ~0.8 KiB more heap per idle socket).
 */
export const spawnBuilt = (
  env: Record<string, string>,
  opts: Parameters<typeof spawnNode>[1] = {},
) => spawnNode(env, { ...opts, built: true })

const extraEnv = (): Record<string, string> => {
  const text = process.env.BENCH_NODE_ENV
  if (!text) return {}
  try {
    return JSON.parse(text) as Record<string, string>
  } catch {
    throw new Error(`BENCH_NODE_ENV must be a JSON object of strings, got ${text}`)
  }
}

export const startCluster = async (opts: {
  nodes: number
  workers?: number
  env?: Record<string, string>
}): Promise<Cluster> => {
  const redis = await startRedisServer()
  const prefix = uniquePrefix('bench')
  const storageDir = await mkdtemp(join(tmpdir(), 'streambed-bench-'))
  const env = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    STORAGE_DIR: storageDir,
    ...opts.env,
    // Extra settings for every node and worker of a run, e.g. BENCH_NODE_ENV='{"SYNC_THREADS":"0"}'.
    ...extraEnv(),
  }
  const nodes = await Promise.all(Array.from({ length: opts.nodes }, () => spawnBuilt(env)))
  const workers = await Promise.all(
    Array.from({ length: opts.workers ?? 0 }, () => spawnBuilt(env, { command: 'worker' })),
  )
  const pids = () => ({
    redis: redis.pid,
    ...Object.fromEntries(nodes.map((n, i) => [`node${i}`, n.proc.child.pid])),
    ...Object.fromEntries(workers.map((w, i) => [`worker${i}`, w.proc.child.pid])),
  })
  const stop = async () => {
    await Promise.all([...nodes, ...workers].map((p) => p.crash()))
    await redis.close()
    await rm(storageDir, { recursive: true, force: true })
  }
  return {
    redis,
    nodes,
    workers,
    prefix,
    storageDir,
    env,
    meter: () => meterCpu(pids()),
    rss: () =>
      Object.fromEntries(Object.entries(pids()).map(([k, pid]) => [k, pid ? rssBytes(pid) : NaN])),
    stop,
    [Symbol.asyncDispose]: stop,
  }
}

/**
 * CPU seconds per process from now on: the cluster's (redis, node0…, worker0…), `bench` (this
 * process, the load generator) and `other` (every other process on the machine).
 */
export const meterAll = (cluster: Cluster): (() => Record<string, number>) => {
  const meter = cluster.meter()
  const bench = process.cpuUsage()
  return withOthers(() => {
    const b = process.cpuUsage(bench)
    return { ...meter.read(), bench: (b.user + b.system) / 1e6 }
  })
}

/** "redis 1.2 s, node0 3.4 s, …" */
export const cpuSummary = (cpu: Record<string, number>): string =>
  Object.entries(cpu)
    .map(([k, v]) => `${k} ${Number.isFinite(v) ? v.toFixed(1) : 'n/a'} s`)
    .join(', ')
