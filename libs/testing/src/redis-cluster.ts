import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Cluster, Redis, type ClusterOptions } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'
import { freePort } from './ports.js'
import { startProcess, type ManagedProcess } from './process.js'

export interface RedisClusterOptions {
  /** Append-only file persistence on every node. Default false. */
  aof?: boolean
  /** With `aof`: `always` makes every acknowledged write durable first. Default `always`. */
  appendfsync?: 'always' | 'everysec'
  /**
   * `cluster-node-timeout`: how long a node may be unreachable before it is failed over.
   * Default 1500, so a failover completes within seconds.
   */
  nodeTimeoutMs?: number
  /** Upper bound of every wait (a node answering, the cluster agreeing, a failover). Default 60000. */
  waitTimeoutMs?: number
}

/** One node as a cluster member sees it (a line of CLUSTER NODES). */
export interface ClusterNodeView {
  readonly id: string
  /** `127.0.0.1:port`, the form of `RedisCluster.nodes`. */
  readonly address: string
  readonly role: 'master' | 'replica'
  /** The master's id for a replica; null for a master. */
  readonly masterId: string | null
  /** CLUSTER NODES flags without `myself`, e.g. `['master']`, `['slave', 'fail']`. */
  readonly flags: readonly string[]
  /** Inclusive slot ranges served (empty for replicas). */
  readonly slots: readonly (readonly [number, number])[]
  readonly slotCount: number
}

/** A node by its `127.0.0.1:port` address, or anything carrying one (a `ClusterNodeView`). */
export type ClusterNodeRef = string | { readonly address: string }

export interface KillOptions {
  /** SIGKILL (default): a crash, no shutdown work. SIGTERM: a graceful shutdown. */
  signal?: 'SIGKILL' | 'SIGTERM'
}

export interface RedisCluster {
  /** Every node's `127.0.0.1:port`, whatever its role or state. */
  readonly nodes: readonly string[]
  /** `127.0.0.1:p1,127.0.0.1:p2,…`: a REDIS_CLUSTER_NODES value. */
  readonly nodeList: string
  /** The nodes as `{ host, port }` seeds (the form `createRedis({ clusterNodes })` takes). */
  readonly seeds: readonly { readonly host: string; readonly port: number }[]
  /** Running masters, as the first running node sees them (after a wait, every node agrees). */
  masters(): Promise<ClusterNodeView[]>
  /** Running replicas, as the first running node sees them. */
  replicas(): Promise<ClusterNodeView[]>
  /** The master serving `key`'s slot (CLUSTER KEYSLOT), as the first running node sees it. */
  masterOf(key: string): Promise<ClusterNodeView>
  /** Stops one node's process; returns its address. */
  killNode(node: ClusterNodeRef, opts?: KillOptions): Promise<string>
  /**
   * Stops the master serving `key` — or `node` when given a node address or view (a string that
   * is one of `nodes` is taken as a node, any other string as a key). Returns its address.
   */
  killMaster(target: ClusterNodeRef, opts?: KillOptions): Promise<string>
  /**
   * Waits until a running replica took over every slot of a killed master: `waitForStable`,
   * which already requires every slot to be served by a running master.
   */
  waitForFailover(opts?: { timeoutMs?: number }): Promise<void>
  /**
   * Waits until every running node reports cluster_state:ok with all 16384 slots ok, every running
   * node sees the same slot owners and roles, no down node serves slots, no running node is flagged
   * fail or disconnected, no slot is migrating, and every running replica's link to its master is up.
   */
  waitForStable(opts?: { timeoutMs?: number }): Promise<void>
  /**
   * Starts a stopped node again on its port and files (its nodes.conf keeps its id) and waits for
   * `waitForStable`: a master that was failed over comes back as a replica of its successor.
   */
  restartNode(node: ClusterNodeRef): Promise<void>
  /**
   * Moves `slots` slots from one master to another (`redis-cli --cluster reshard`), keys included;
   * clients may keep working meanwhile. Resolves once every node agrees on the new owners. A
   * master left without slots turns into a replica (replica migration) of the one that took them.
   */
  reshard(
    from: ClusterNodeRef,
    to: ClusterNodeRef,
    slots: number,
    opts?: { timeoutMs?: number },
  ): Promise<void>
  /** A new ioredis Cluster on the seeds, disconnected by `close()`; `options` as ioredis takes them. */
  client(options?: ClusterOptions): Cluster
  /** FLUSHALL on every running master (replicas follow). */
  flushAll(): Promise<void>
  /** The redis-server process id of a running node (null when stopped), for CPU accounting. */
  pid(node: ClusterNodeRef): number | null
  /** Disconnects the clients, kills every process, removes the files. Idempotent. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const TOTAL_SLOTS = 16384
const MASTERS = 3
const REPLICAS_PER_MASTER = 1
const POLL_MS = 150

interface NodeState {
  readonly address: string
  readonly host: string
  readonly port: number
  readonly args: readonly string[]
  proc: ManagedProcess | null
  admin: Redis | null
}

interface ParsedNode extends ClusterNodeView {
  readonly myself: boolean
  readonly connected: boolean
  /** `[slot->-id]` / `[slot-<-id]` entries: slots being migrated or imported. */
  readonly openSlots: readonly string[]
}

/** A failure that no amount of waiting fixes (a process exited): stops a poll at once. */
class GiveUp extends Error {}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err))

/** Calls `check` until it returns null (done) or `timeoutMs` passed; it returns why it is not done. */
const pollUntil = async (
  what: string,
  timeoutMs: number,
  check: () => Promise<string | null>,
): Promise<void> => {
  const started = Date.now()
  let reason = 'not checked'
  for (let checks = 1; ; checks++) {
    try {
      const r = await check()
      if (r === null) return
      reason = r
    } catch (err) {
      if (err instanceof GiveUp) throw err
      reason = messageOf(err)
    }
    if (Date.now() - started >= timeoutMs)
      throw new Error(
        `${what}: not reached within ${timeoutMs} ms (${checks} checks); last: ${reason}`,
      )
    await sleep(POLL_MS)
  }
}

/** `key:value` lines (CLUSTER INFO, INFO sections) as a record. */
const parseInfo = (text: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':')
    if (at > 0 && !line.startsWith('#')) out[line.slice(0, at)] = line.slice(at + 1).trim()
  }
  return out
}

/** CLUSTER NODES: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>…` */
const parseNodes = (text: string): ParsedNode[] =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .map((line) => {
      const [id = '', addr = '', flagText = '', master = '-', , , , link = '', ...tokens] =
        line.split(' ')
      const allFlags = flagText.split(',')
      const flags = allFlags.filter((f) => f !== 'myself')
      const slots: [number, number][] = []
      const openSlots: string[] = []
      for (const t of tokens) {
        if (t.startsWith('[')) {
          openSlots.push(t)
          continue
        }
        const [a = '', b] = t.split('-')
        slots.push([Number(a), Number(b ?? a)])
      }
      return {
        id,
        address: addr.split('@')[0] ?? addr,
        role: flags.includes('slave') ? 'replica' : 'master',
        masterId: master === '-' ? null : master,
        flags,
        slots,
        slotCount: slots.reduce((n, [a, b]) => n + b - a + 1, 0),
        myself: allFlags.includes('myself'),
        connected: link === 'connected',
        openSlots,
      }
    })

const publicView = (n: ParsedNode): ClusterNodeView => ({
  id: n.id,
  address: n.address,
  role: n.role,
  masterId: n.masterId,
  flags: n.flags,
  slots: n.slots,
  slotCount: n.slotCount,
})

const tail = (text: string, lines = 60): string =>
  text.trimEnd().split('\n').slice(-lines).join('\n')

/** Runs redis-cli; rejects with its output when it exits non-zero or prints an `[ERR]` line. */
const redisCli = (args: readonly string[], timeoutMs: number): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile(
      'redis-cli',
      [...args],
      // TERM=dumb: no colour codes, so `[ERR]` starts its line.
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, TERM: 'dumb' } },
      (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`
        if (err || /^\[ERR\]/m.test(output)) {
          const why = err ? messageOf(err).split('\n')[0] : 'it printed [ERR]'
          reject(
            new Error(`redis-cli ${args.join(' ')} failed (${why}):\n${tail(output)}`, {
              cause: err ?? undefined,
            }),
          )
        } else resolve(output)
      },
    )
  })

/** `count` distinct ports that were free a moment ago. */
const freePorts = async (count: number): Promise<number[]> => {
  const ports = new Set<number>()
  while (ports.size < count) ports.add(await freePort())
  return [...ports]
}

/**
 * A throwaway Redis Cluster: 3 masters with 1 replica each, six local `redis-server --cluster-enabled
 * yes` processes on free loopback ports (client and bus ports both chosen, so none falls past 65535),
 * joined by `redis-cli --cluster create --cluster-replicas 1`. Resolves once every node agrees and
 * all 16384 slots are served. Local binaries only: a cluster in containers would announce addresses
 * the host cannot reach.
 */
export const startRedisCluster = async (opts: RedisClusterOptions = {}): Promise<RedisCluster> => {
  const waitTimeoutMs = opts.waitTimeoutMs ?? 60_000
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 1500
  const count = MASTERS * (1 + REPLICAS_PER_MASTER)
  const root = await mkdtemp(join(tmpdir(), 'streambed-redis-cluster-'))
  const ports = await freePorts(count * 2)
  const states: NodeState[] = []
  for (let i = 0; i < count; i++) {
    const port = ports[i]!
    const dir = join(root, String(port))
    await mkdir(dir)
    states.push({
      address: `127.0.0.1:${port}`,
      host: '127.0.0.1',
      port,
      proc: null,
      admin: null,
      // prettier-ignore
      args: [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-port', String(ports[count + i]!),
        '--cluster-config-file', 'nodes.conf',
        '--cluster-node-timeout', String(nodeTimeoutMs),
        // A replica that lost its master a while ago still takes over: tests kill nodes at will.
        '--cluster-replica-validity-factor', '0',
        '--dir', dir,
        '--save', '',
        '--appendonly', opts.aof ? 'yes' : 'no',
        '--appendfsync', opts.appendfsync ?? 'always',
        '--daemonize', 'no',
      ],
    })
  }
  const byAddress = new Map(states.map((n) => [n.address, n]))
  const clients = new Set<Cluster>()
  let closed = false

  const adminOf = (n: NodeState): Redis => {
    if (n.admin && n.admin.status !== 'end') return n.admin
    const admin = new Redis({
      host: n.host,
      port: n.port,
      lazyConnect: true,
      enableReadyCheck: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 5000,
      commandTimeout: 10_000,
    })
    // Refused connections while a node is down are expected; the failing command reports them.
    admin.on('error', () => {})
    n.admin = admin
    return admin
  }
  const call = async (n: NodeState, command: string, ...args: string[]): Promise<string> =>
    String(await adminOf(n).call(command, ...args))
  const running = () => states.filter((n) => n.proc !== null)
  const firstRunning = (): NodeState => {
    const n = running()[0]
    if (!n) throw new Error('no node of the cluster is running')
    return n
  }
  const resolveNode = (ref: ClusterNodeRef): NodeState => {
    const address = typeof ref === 'string' ? ref : ref.address
    const n = byAddress.get(address)
    if (!n) throw new Error(`${address} is not a node of this cluster (${nodeList})`)
    return n
  }
  const viewOf = async (n: NodeState) => parseNodes(await call(n, 'CLUSTER', 'NODES'))
  const runningView = async (): Promise<ParsedNode[]> => {
    const up = new Set(running().map((n) => n.address))
    return (await viewOf(firstRunning())).filter((v) => up.has(v.address))
  }

  const startNode = async (n: NodeState): Promise<void> => {
    const proc = startProcess('redis-server', n.args)
    n.proc = proc
    await pollUntil(`${n.address} answers PING`, waitTimeoutMs, async () => {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null)
        throw new GiveUp(
          `redis-server ${n.address} exited (${proc.child.exitCode ?? proc.child.signalCode}):\n` +
            proc.output.slice(-30).join('\n'),
        )
      return (await call(n, 'PING')) === 'PONG' ? null : 'no PONG'
    })
  }
  const stopNode = async (n: NodeState, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> => {
    const proc = n.proc
    n.proc = null
    n.admin?.disconnect()
    n.admin = null
    if (proc) await proc.kill(signal)
  }

  /** Why the cluster is not stable yet, or null once it is (see `waitForStable`). */
  const unstableReason = async (): Promise<string | null> => {
    const up = running()
    if (up.length === 0) return 'no node is running'
    const upAddresses = new Set(up.map((n) => n.address))
    let agreed: { from: string; map: string } | null = null
    for (const n of up) {
      const info = parseInfo(await call(n, 'CLUSTER', 'INFO'))
      if (info.cluster_state !== 'ok') return `${n.address}: cluster_state:${info.cluster_state}`
      if (info.cluster_slots_ok !== String(TOTAL_SLOTS))
        return `${n.address}: cluster_slots_ok:${info.cluster_slots_ok}`
      const view = await viewOf(n)
      for (const v of view) {
        if (v.openSlots.length > 0)
          return `${n.address} sees ${v.address} migrating/importing ${v.openSlots.join(' ')}`
        if (upAddresses.has(v.address)) {
          if (
            v.flags.some((f) => f === 'fail' || f === 'fail?' || f === 'handshake') ||
            !v.connected
          )
            return `${n.address} sees running ${v.address} as ${v.flags.join(',')}${v.connected ? '' : ' (disconnected)'}`
        } else if (v.slotCount > 0) {
          return `${n.address} sees stopped ${v.address} serving ${v.slotCount} slots`
        }
      }
      const missing = up.find((r) => !view.some((v) => v.address === r.address))
      if (missing) return `${n.address} does not know ${missing.address}`
      const idOf = new Map(view.map((v) => [v.id, v.address]))
      const map = view
        .filter((v) => upAddresses.has(v.address))
        .map((v) =>
          v.role === 'master'
            ? `${v.address} master ${v.slots.map(([a, b]) => `${a}-${b}`).join(',')}`
            : `${v.address} replica of ${v.masterId ? (idOf.get(v.masterId) ?? v.masterId) : '?'}`,
        )
        .sort()
        .join('; ')
      if (agreed === null) agreed = { from: n.address, map }
      else if (agreed.map !== map)
        return `${n.address} and ${agreed.from} disagree: [${map}] vs [${agreed.map}]`
      if (view.find((v) => v.myself)?.role === 'replica') {
        const link = parseInfo(await call(n, 'INFO', 'replication')).master_link_status
        if (link !== 'up') return `replica ${n.address}: master_link_status:${link}`
      }
    }
    return null
  }
  const waitForStable = async ({ timeoutMs = waitTimeoutMs } = {}) =>
    pollUntil('cluster stable', timeoutMs, unstableReason)

  const masterOf = async (key: string): Promise<ClusterNodeView> => {
    const slot = Number(await call(firstRunning(), 'CLUSTER', 'KEYSLOT', key))
    const view = await runningView()
    const master = view.find(
      (v) => v.role === 'master' && v.slots.some(([a, b]) => slot >= a && slot <= b),
    )
    if (!master) throw new Error(`no running master serves slot ${slot} (key ${key})`)
    return publicView(master)
  }

  const nodeList = states.map((n) => n.address).join(',')
  const close = async () => {
    if (closed) return
    closed = true
    for (const c of clients) c.disconnect()
    clients.clear()
    await Promise.all(states.map((n) => stopNode(n, 'SIGKILL')))
    await rm(root, { recursive: true, force: true })
  }

  try {
    // Settle every start before cleaning up, so no poll outlives the cluster.
    const starts = await Promise.allSettled(states.map(startNode))
    const failed = starts.find((r) => r.status === 'rejected')
    if (failed) throw failed.reason
    await redisCli(
      [
        '--cluster',
        'create',
        ...states.map((n) => n.address),
        '--cluster-replicas',
        String(REPLICAS_PER_MASTER),
        '--cluster-yes',
      ],
      waitTimeoutMs,
    )
    await waitForStable()
  } catch (err) {
    await close()
    throw err
  }

  return {
    nodes: states.map((n) => n.address),
    nodeList,
    seeds: states.map((n) => ({ host: n.host, port: n.port })),
    masters: async () => (await runningView()).filter((v) => v.role === 'master').map(publicView),
    replicas: async () => (await runningView()).filter((v) => v.role === 'replica').map(publicView),
    masterOf,
    killNode: async (ref, { signal = 'SIGKILL' } = {}) => {
      const n = resolveNode(ref)
      if (!n.proc) throw new Error(`${n.address} is not running`)
      await stopNode(n, signal)
      return n.address
    },
    killMaster: async (target, { signal = 'SIGKILL' } = {}) => {
      const isKey = typeof target === 'string' && !byAddress.has(target)
      const n = resolveNode(isKey ? await masterOf(target) : target)
      if (!n.proc) throw new Error(`${n.address} is not running`)
      const me = (await viewOf(n)).find((v) => v.myself)
      if (me?.role !== 'master' || me.slotCount === 0)
        throw new Error(`${n.address} is not a master serving slots (${me?.flags.join(',')})`)
      await stopNode(n, signal)
      return n.address
    },
    waitForFailover: ({ timeoutMs = waitTimeoutMs } = {}) =>
      pollUntil('failover complete', timeoutMs, unstableReason),
    waitForStable,
    restartNode: async (ref) => {
      const n = resolveNode(ref)
      if (n.proc) throw new Error(`${n.address} is running; kill it first`)
      await startNode(n)
      await waitForStable()
    },
    reshard: async (
      fromRef,
      toRef,
      slots,
      { timeoutMs = Math.max(waitTimeoutMs, 120_000) } = {},
    ) => {
      // redis-cli asks on stdin for a count outside 1..16384 (and waits forever).
      if (!Number.isInteger(slots) || slots < 1 || slots > TOTAL_SLOTS)
        throw new Error(`reshard: slots must be an integer from 1 to ${TOTAL_SLOTS}, got ${slots}`)
      const from = resolveNode(fromRef)
      const to = resolveNode(toRef)
      const [fromId, toId] = await Promise.all([
        call(from, 'CLUSTER', 'MYID'),
        call(to, 'CLUSTER', 'MYID'),
      ])
      await redisCli(
        [
          '--cluster',
          'reshard',
          from.address,
          '--cluster-from',
          fromId,
          '--cluster-to',
          toId,
          '--cluster-slots',
          String(slots),
          '--cluster-yes',
        ],
        timeoutMs,
      )
      await waitForStable()
    },
    client: (options = {}) => {
      if (closed) throw new Error('the cluster is closed')
      const client = new Cluster(
        states.map((n) => ({ host: n.host, port: n.port })),
        options,
      )
      // ioredis emits 'error' for node connections a failover breaks (and throws without a
      // listener, e.g. when a sharded subscriber cannot reconnect); commands still report theirs.
      client.on('error', () => {})
      clients.add(client)
      return client
    },
    flushAll: async () => {
      const masters = (await runningView()).filter((v) => v.role === 'master')
      await Promise.all(masters.map((m) => call(resolveNode(m), 'FLUSHALL')))
    },
    pid: (ref) => resolveNode(ref).proc?.child.pid ?? null,
    close,
    [Symbol.asyncDispose]: close,
  }
}

export interface RedisClusterFixture {
  /** The throwaway cluster (kills, restarts, reshards). */
  readonly cluster: RedisCluster
  /** A shared ioredis Cluster client for setup and assertions. */
  readonly client: Cluster
}

/**
 * A throwaway Redis Cluster for the whole test file: started in beforeAll, stopped in afterAll.
 * Fields are usable inside tests and hooks (not at module level).
 */
export const useRedisCluster = (opts: RedisClusterOptions = {}): RedisClusterFixture => {
  let cluster: RedisCluster | undefined
  let client: Cluster | undefined
  const started = () => {
    if (!cluster) throw new Error('useRedisCluster: used outside a test or hook')
    return cluster
  }
  // Starting waits for six processes, `--cluster create` and the cluster agreeing: three waits.
  beforeAll(
    async () => {
      cluster = await startRedisCluster(opts)
    },
    3 * (opts.waitTimeoutMs ?? 60_000),
  )
  afterAll(async () => {
    await cluster?.close()
  })
  return {
    get cluster() {
      return started()
    },
    get client() {
      return (client ??= started().client())
    },
  }
}
