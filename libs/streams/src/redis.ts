// eslint-disable-next-line @typescript-eslint/triple-slash-reference -- cluster-key-slot ships no types; every package compiling this source needs the declaration
/// <reference path="./cluster-key-slot.d.ts" />
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis as Standalone, type RedisOptions } from 'ioredis'
import { AppError, failure, type Logger } from '@streambed/common'

/** A connection to Redis: one server, or a Redis Cluster (every command routed by its key's slot). */
export type Redis = Standalone | Cluster

/** Whether `redis` talks to a Redis Cluster. */
export const isCluster = (redis: Redis): redis is Cluster => redis instanceof Cluster

/** The servers that hold data: the one server, or every master of the cluster. */
export const masters = (redis: Redis): Standalone[] =>
  isCluster(redis) ? redis.nodes('master') : [redis]

/**
 * The server that holds `key`: the one server, or the master serving its slot (the connection
 * the cluster client sends the key's commands on, so WAIT there covers them).
 */
export const masterFor = (redis: Redis, key: string): Standalone => {
  if (!isCluster(redis)) return redis
  const nodeKey = redis.slots[calculateSlot(key)]?.[0]
  const node = redis.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === nodeKey)
  if (!node) throw new AppError('REDIS_UNAVAILABLE', `no master known for the slot of ${key}`)
  return node
}

export interface RedisConnectionOptions {
  /**
   * `redis://[user:pass@]host:port[/db]` or `rediss://…`. With `clusterNodes`, only its user,
   * password and scheme (rediss: TLS) are used.
   */
  url: string
  /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES); absent: a standalone server. */
  clusterNodes?: readonly { host: string; port: number }[] | undefined
  /** A pub/sub connection: on a cluster, one sharded subscriber per master (SSUBSCRIBE). */
  subscriber?: boolean
  /** Shown in CLIENT LIST; helps operators tell nodes and workers apart. */
  connectionName?: string
  /**
   * Reject a command that got no reply within this time; default 5000. `null`: never, for BullMQ
   * connections (see apps/worker operations.ts).
   */
  commandTimeoutMs?: number | null
  /**
   * How many reconnect attempts a queued command waits for before failing; default 2, so a
   * request fails within a few seconds of Redis going away instead of hanging.
   */
  maxRetriesPerRequest?: number | null
}

/** How often a cluster subscriber rereads the slot map (see `createRedis`). */
const SUBSCRIBER_SLOTS_REFRESH_MS = 1000

/** Creates an ioredis client with the options every Streambed process uses. Connects lazily. */
export const createRedis = (opts: RedisConnectionOptions): Redis => {
  const options: RedisOptions = {
    lazyConnect: true,
    connectionName: opts.connectionName ?? 'streambed',
    ...(opts.commandTimeoutMs === null ? {} : { commandTimeout: opts.commandTimeoutMs ?? 5000 }),
    maxRetriesPerRequest: opts.maxRetriesPerRequest === undefined ? 2 : opts.maxRetriesPerRequest,
    // Auto-pipelining is off: in ioredis 5.11 a connection closing mid-pipeline throws an uncaught
    // TypeError (autoPipelining.js, results[i] undefined). Commands are still pipelined on the socket.
    enableAutoPipelining: false,
    // Back off up to 2 s between reconnect attempts, forever: a node outlives a Redis restart.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
  }
  if (!opts.clusterNodes || opts.clusterNodes.length === 0) return new Standalone(opts.url, options)
  const url = new URL(opts.url)
  const { retryStrategy: _retry, ...nodeOptions } = options
  return new Cluster([...opts.clusterNodes], {
    lazyConnect: true,
    enableAutoPipelining: false,
    shardedSubscribers: opts.subscriber === true,
    // A slot moving to another master (resharding) makes its old master drop the sharded
    // subscriptions of that slot (SUNSUBSCRIBE), and ioredis subscribes again on the new owner
    // only when it refreshes its slot map, which nothing else prompts on a connection that only
    // listens: refresh it periodically, or doorbells of moved documents stop for good.
    ...(opts.subscriber === true ? { slotsRefreshInterval: SUBSCRIBER_SLOTS_REFRESH_MS } : {}),
    // A failover or a slot move answers MOVED / TRYAGAIN / CLUSTERDOWN for a few seconds: retry
    // long enough to ride through one (a command that still fails closes its socket with 4503,
    // and the client resends on reconnect).
    maxRedirections: 40,
    retryDelayOnMoved: 100,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 100,
    retryDelayOnFailover: 300,
    clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    redisOptions: {
      ...nodeOptions,
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
    },
  })
}

/** Maps a failed Redis call to `AppError('REDIS_UNAVAILABLE')`, keeping AppErrors as they are. */
export const redisError = (err: unknown, what: string): AppError =>
  failure('REDIS_UNAVAILABLE', what, err)

export interface RedisFacts {
  version: string
  /** `maxmemory-policy`; anything but `noeviction` may evict streams, i.e. lose data. */
  maxmemoryPolicy: string
  /** Append-only file on: acknowledged updates survive a Redis restart. */
  aof: boolean
}

/**
 * Connects (if not yet), checks the server is Redis >= 7.0 (sharded pub/sub, XAUTOCLAIM) and
 * returns the settings that decide durability.
 */
export const connectRedis = async (redis: Redis, url: string): Promise<RedisFacts> => {
  try {
    if (redis.status === 'wait') await redis.connect()
    // On a cluster every master must qualify: its weakest setting is the deployment's.
    const infos = await Promise.all(masters(redis).map((r) => r.info()))
    let facts = null as RedisFacts | null
    for (const info of infos) {
      const version = /redis_version:(\d+)\.(\d+)/.exec(info)
      const major = Number(version?.[1] ?? 0)
      if (major < 7) {
        throw new AppError(
          'CONFIG',
          `Redis at ${redactUrl(url)} is version ${version?.[1] ?? '?'}.${version?.[2] ?? '?'}; Streambed needs Redis 7.0 or newer`,
        )
      }
      const policy = /maxmemory_policy:(\S+)/.exec(info)?.[1] ?? 'unknown'
      facts = {
        version: facts?.version ?? `${version?.[1]}.${version?.[2]}`,
        maxmemoryPolicy:
          facts && facts.maxmemoryPolicy !== 'noeviction' ? facts.maxmemoryPolicy : policy,
        aof: (facts?.aof ?? true) && /aof_enabled:1/.test(info),
      }
    }
    if (!facts) throw new Error('no master answered')
    return facts
  } catch (err) {
    if (err instanceof AppError) throw err
    throw new AppError(
      'REDIS_UNAVAILABLE',
      `cannot reach Redis at ${redactUrl(url)} (${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    )
  }
}

/** The URL without its password, for messages and logs. */
export const redactUrl = (url: string): string => {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    // not a URL: show nothing of it rather than leak a secret
    return '<invalid url>'
  }
}

/**
 * Redis evicting keys would silently drop uncompacted updates: refuse unless explicitly allowed
 * (REDIS_ALLOW_EVICTION). Without an append-only file, a Redis restart loses them unless clients
 * resend (connected ones do): warn.
 */
export const assertDurableRedis = (
  facts: RedisFacts,
  allowEviction: boolean,
  log: Logger,
): void => {
  if (facts.maxmemoryPolicy !== 'noeviction' && !allowEviction) {
    throw new AppError(
      'CONFIG',
      `Redis maxmemory-policy is "${facts.maxmemoryPolicy}": Redis may evict document streams and lose updates. ` +
        'Set "maxmemory-policy noeviction" on Redis, or REDIS_ALLOW_EVICTION=true to accept the risk.',
    )
  }
  if (!facts.aof) {
    log.warn(
      'Redis runs without an append-only file: updates not yet compacted are lost if Redis restarts ' +
        '(connected clients resend theirs). Enable "appendonly yes" in production.',
    )
  }
}

export interface RedisPair {
  /** Commands. */
  readonly redis: Redis
  /** A second connection for what ties one up: sharded pub/sub, or blocking reads. */
  readonly second: Redis
  readonly facts: RedisFacts
  readonly disconnect: () => void
}

/**
 * The two connections every Streambed process uses, connected and checked (Redis >= 7, eviction
 * policy, AOF: see assertDurableRedis). The second never gives up on a command (subscriptions and
 * blocking reads survive Redis restarts). Connection errors are logged, not thrown: ioredis keeps
 * reconnecting.
 */
export const connectRedisPair = async (opts: {
  url: string
  /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES); absent: standalone. */
  clusterNodes?: readonly { host: string; port: number }[] | undefined
  commandTimeoutMs: number
  /** CLIENT SETNAME of the first; the second gets `-2` appended. */
  name: string
  allowEviction: boolean
  logger: Logger
}): Promise<RedisPair> => {
  const base = {
    url: opts.url,
    clusterNodes: opts.clusterNodes,
    commandTimeoutMs: opts.commandTimeoutMs,
  }
  const redis = createRedis({ ...base, connectionName: opts.name })
  const second = createRedis({
    ...base,
    connectionName: `${opts.name}-2`,
    maxRetriesPerRequest: null,
    subscriber: true,
  })
  for (const [client, connection] of [
    [redis, opts.name],
    [second, `${opts.name}-2`],
  ] as const) {
    client.on('error', (err: Error) =>
      opts.logger.warn({ err: err.message, connection }, 'redis connection error'),
    )
  }
  const disconnect = () => {
    redis.disconnect()
    second.disconnect()
  }
  try {
    const facts = await connectRedis(redis, opts.url)
    await connectRedis(second, opts.url)
    assertDurableRedis(facts, opts.allowEviction, opts.logger)
    return { redis, second, facts, disconnect }
  } catch (err) {
    disconnect()
    throw err
  }
}
