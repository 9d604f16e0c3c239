/** Starts what a scenario measures: Redis, N server node processes, W worker processes. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnNode, type SpawnedProcessNode } from '@streambed/cli/testing'
import {
  type RedisCluster,
  type RedisServer,
  startRedisServer,
  uniquePrefix,
} from '@streambed/testing'
import { type CpuMeter, meterCpu, rssBytes, withOthers } from './proc.js'

/** Server nodes and workers sharing one Redis (a standalone server or a Redis Cluster). */
export interface Deployment {
  readonly nodes: SpawnedProcessNode[]
  readonly workers: SpawnedProcessNode[]
  readonly prefix: string
  readonly storageDir: string
  readonly env: Record<string, string>
  /** CPU seconds per process (redis…, node0…, worker0…) from now on. */
  meter(): CpuMeter
  rss(): Record<string, number>
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** A deployment on a standalone Redis of its own. */
export interface Cluster extends Deployment {
  readonly redis: RedisServer
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

/**
 * N server nodes and W workers on the Redis that `redis` describes: the settings that reach it
 * (REDIS_URL or REDIS_CLUSTER_NODES) and its processes, for CPU accounting (a Redis Cluster's
 * nodes may stop and start: `pids` is asked at every reading).
 */
export const startDeployment = async (opts: {
  nodes: number
  workers?: number
  env?: Record<string, string>
  redis: { env: Record<string, string>; pids: () => Record<string, number | null | undefined> }
}): Promise<Deployment> => {
  const prefix = uniquePrefix('bench')
  const storageDir = await mkdtemp(join(tmpdir(), 'streambed-bench-'))
  const env = {
    ...opts.redis.env,
    REDIS_PREFIX: prefix,
    STORAGE_DIR: storageDir,
    ...opts.env,
    // Extra settings for every node and worker of a run, e.g. BENCH_NODE_ENV='{"SYNC_THREADS":"0"}'.
    ...extraEnv(),
  }
  const nodes: SpawnedProcessNode[] = []
  const workers: SpawnedProcessNode[] = []
  const stop = async () => {
    await Promise.all([...nodes, ...workers].map((p) => p.crash()))
    await rm(storageDir, { recursive: true, force: true })
  }
  try {
    nodes.push(...(await Promise.all(Array.from({ length: opts.nodes }, () => spawnBuilt(env)))))
    workers.push(
      ...(await Promise.all(
        Array.from({ length: opts.workers ?? 0 }, () => spawnBuilt(env, { command: 'worker' })),
      )),
    )
  } catch (err) {
    await stop()
    throw err
  }
  const pids = () => ({
    ...opts.redis.pids(),
    ...Object.fromEntries(nodes.map((n, i) => [`node${i}`, n.proc.child.pid])),
    ...Object.fromEntries(workers.map((w, i) => [`worker${i}`, w.proc.child.pid])),
  })
  return {
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

/** N server nodes and W workers on a standalone Redis of their own. */
export const startCluster = async (opts: {
  nodes: number
  workers?: number
  env?: Record<string, string>
}): Promise<Cluster> => {
  const redis = await startRedisServer()
  let deployment: Deployment
  try {
    deployment = await startDeployment({
      ...opts,
      redis: { env: { REDIS_URL: redis.url }, pids: () => ({ redis: redis.pid }) },
    })
  } catch (err) {
    await redis.close()
    throw err
  }
  const stop = async () => {
    await deployment.stop()
    await redis.close()
  }
  return { ...deployment, redis, stop, [Symbol.asyncDispose]: stop }
}

/**
 * A deployment on a Redis Cluster (libs/testing's 3 masters with a replica each): every process
 * gets REDIS_CLUSTER_NODES; CPU is read per Redis node (`redis0`…), whatever its role now.
 */
export const startOnRedisCluster = (
  rc: RedisCluster,
  opts: { nodes: number; workers?: number; env?: Record<string, string> },
): Promise<Deployment> =>
  startDeployment({
    ...opts,
    redis: {
      env: { REDIS_URL: `redis://${rc.nodes[0]}`, REDIS_CLUSTER_NODES: rc.nodeList },
      pids: () => Object.fromEntries(rc.nodes.map((n, i) => [`redis${i}`, rc.pid(n)])),
    },
  })

/** CPU seconds of every Redis process (`redis`, `redis0`…) in a reading. */
export const redisCpu = (cpu: Record<string, number>): number =>
  Object.entries(cpu)
    .filter(([k, v]) => /^redis\d*$/.test(k) && Number.isFinite(v))
    .reduce((n, [, v]) => n + v, 0)

/**
 * CPU seconds per process from now on: the cluster's (redis, node0…, worker0…), `bench` (this
 * process, the load generator) and `other` (every other process on the machine).
 */
export const meterAll = (cluster: Deployment): (() => Record<string, number>) => {
  const meter = cluster.meter()
  const bench = process.cpuUsage()
  return withOthers(() => {
    const b = process.cpuUsage(bench)
    return { ...meter.read(), bench: (b.user + b.system) / 1e6 }
  })
}

/** "redis 1.2 s, node0 3.4 s, …"; a Redis Cluster's processes as one sum ("redis×6 2.1 s"). */
export const cpuSummary = (cpu: Record<string, number>): string => {
  const cluster = Object.keys(cpu).filter((k) => /^redis\d+$/.test(k))
  const entries: [string, number][] = Object.entries(cpu).filter(([k]) => !cluster.includes(k))
  if (cluster.length > 0) entries.unshift([`redis×${cluster.length}`, redisCpu(cpu)])
  return entries.map(([k, v]) => `${k} ${Number.isFinite(v) ? v.toFixed(1) : 'n/a'} s`).join(', ')
}
