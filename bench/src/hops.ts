/**
 * Hops: the cross-node path of S1 timed hop by hop. One writer on node A, three readers on node B,
 * 100 updates/s. The nodes run with TRACE_HOPS (see libs/node hop-trace.ts) and write, per update,
 * wall-clock times at each hop; the clients stamp their sends and receives the same way
 * (`performance.timeOrigin + performance.now()`, comparable between processes of one machine), and
 * everything is joined by Yjs (client, clock) and stream entry id. The same load runs untraced
 * first: the difference is what tracing costs.
 *
 * With BENCH_CPU_PROF_DIR=<dir>, a third run profiles both nodes (node --cpu-prof, untraced) and
 * prints the functions with the most self time.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { spawnBuilt, startCluster } from './cluster.js'
import { PACED_RATE } from './floors.js'
import type { BenchContext, Scenario } from './framework.js'
import { pace, sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { fmt, percentile, summary, table, type Row } from './stats.js'

/** Per-socket message limit of the nodes: above the rate, as in S1. */
const RATE_LIMIT = 5000
const RATE = PACED_RATE
const READERS = 3

const now = () => performance.timeOrigin + performance.now()

/** S1's ledger, also keeping wall-clock send and receive times by `client:clock`. */
class HopLedger extends Ledger {
  readonly sends = new Map<string, number>()
  readonly receives: { key: string; at: number }[] = []

  override sent(update: Uint8Array, receivers: number): void {
    const at = now()
    for (const [client, clock] of Y.parseUpdateMeta(update).from)
      this.sends.set(`${client}:${clock}`, at)
    super.sent(update, receivers)
  }

  override received(update: Uint8Array): void {
    const at = now()
    const { from, to } = Y.parseUpdateMeta(update)
    for (const [client, start] of from) {
      for (let clock = start; clock < (to.get(client) ?? start); clock++)
        this.receives.push({ key: `${client}:${clock}`, at })
    }
    super.received(update)
  }

  override reset(): void {
    this.sends.clear()
    this.receives.length = 0
    super.reset()
  }
}

interface Load {
  ledger: HopLedger
  /** Node ids of the writer's node (A) and the readers' (B). */
  a: string
  b: string
}

/**
 * S1's load, readers on the other node: warm-up, then RATE updates/s for `seconds`. `nodeArgs`
 * (e.g. --cpu-prof) start the nodes outside startCluster, which has no such option.
 */
const runLoad = async (
  ctx: BenchContext,
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<Load> => {
  await using cluster = await startCluster({
    nodes: nodeArgs.length > 0 ? 0 : 2,
    env: { WS_MAX_MESSAGES_PER_SECOND: String(RATE_LIMIT), ...env },
  })
  const nodes =
    nodeArgs.length > 0
      ? await Promise.all([0, 1].map(() => spawnBuilt(cluster.env, { nodeArgs })))
      : cluster.nodes
  const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]]
  try {
    const ledger = new HopLedger()
    const writer = await openPeers([a.url], ['doc'], 1, ledger)
    const readers = await openPeers(Array(READERS).fill(b.url), ['doc'], READERS, ledger)
    const w = writer.peers[0]
    if (!w) throw new Error('writer did not connect')
    await pace(100, 2, () => w.write(READERS)) // warm-up
    await sleep(300)
    ledger.reset()
    await pace(RATE, ctx.quick ? 5 : 20, () => w.write(READERS))
    await sleep(500)
    writer.close()
    readers.close()
    // SIGTERM: the nodes write what their trace buffered, and --cpu-prof its profile.
    await Promise.all([a, b].map((n) => n.stop()))
    return { ledger, a: a.nodeId, b: b.nodeId }
  } finally {
    if (nodeArgs.length > 0) await Promise.all([a, b].map((n) => n.crash()))
  }
}

interface Written {
  id: string
  inAt: number
  validated: number
  appended: number
}
interface Delivered {
  doorbell: number
  read: number
  sent: number
}

/** The nodes' TRACE_HOPS lines: appends of node `a` by `client:clock`, deliveries of `b` by id. */
const parseTrace = (text: string, load: Load) => {
  const written = new Map<string, Written>()
  const delivered = new Map<string, Delivered>()
  const t = (s: string | undefined) => (s ? Number(s) : NaN)
  for (const line of text.split('\n')) {
    const f = line.split(',')
    if (f[0] === 'w' && f[1] === load.a) {
      const rec = { id: f[2] as string, inAt: t(f[6]), validated: t(f[7]), appended: t(f[8]) }
      for (let clock = Number(f[4]); clock < Number(f[5]); clock++)
        written.set(`${f[3]}:${clock}`, rec)
    } else if (f[0] === 'd' && f[1] === load.b) {
      delivered.set(f[2] as string, { doorbell: t(f[3]), read: t(f[4]), sent: t(f[5]) })
    }
  }
  return { written, delivered }
}

/** Per hop, the durations (ms) of every update (node hops) or every receive (client hops). */
const hopTimes = (load: Load, trace: ReturnType<typeof parseTrace>) => {
  const hops = new Map<string, number[]>()
  const add = (name: string, v: number) => {
    if (!Number.isFinite(v)) return
    let list = hops.get(name)
    if (!list) hops.set(name, (list = []))
    list.push(v)
  }
  const { sends, receives } = load.ledger
  for (const [key, sent] of sends) {
    const w = trace.written.get(key)
    const d = w && trace.delivered.get(w.id)
    if (!w || !d) continue
    add('1. client send → A frame in', w.inAt - sent)
    add('2. A: frame in → validated', w.validated - w.inAt)
    add('3. A: validated → appended (script reply)', w.appended - w.validated)
    add('4. A appended → B doorbell', d.doorbell - w.appended)
    add('3+4. A validated → B doorbell (Redis)', d.doorbell - w.validated)
    add('5. B: doorbell → read done', d.read - d.doorbell)
    add('6. B: read done → frame out', d.sent - d.read)
  }
  for (const { key, at } of receives) {
    const sent = sends.get(key)
    const w = trace.written.get(key)
    const d = w && trace.delivered.get(w.id)
    if (sent === undefined || !w || !d) continue
    add('7. B frame out → client receive', at - d.sent)
    add('end to end', at - sent)
    add('sockets (1 + 7)', w.inAt - sent + (at - d.sent))
    add('node code (2 + 5 + 6)', w.validated - w.inAt + (d.sent - d.doorbell))
  }
  return hops
}

/** CPU profile → the functions with the most self time, as a share of the sampled time. */
const topSelf = (profile: CpuProfile, n: number): Row[] => {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map<string, number>()
  const deltas = profile.timeDeltas
  let total = 0
  profile.samples.forEach((id, i) => {
    const node = byId.get(id)
    const dt = deltas[i] ?? 0
    total += dt
    if (!node) return
    const f = node.callFrame
    const file = f.url.replace(/^.*\/(apps|libs|node_modules)\//, '$1/')
    const name = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`
    self.set(name, (self.get(name) ?? 0) + dt)
  })
  return [...self]
    .sort((x, y) => y[1] - x[1])
    .slice(0, n)
    .map(([name, us]) => ({ function: name, 'self %': fmt((100 * us) / total, 1) }))
}

interface CpuProfile {
  nodes: {
    id: number
    callFrame: { functionName: string; url: string; lineNumber: number }
  }[]
  samples: number[]
  timeDeltas: number[]
}

const profileSection = async (ctx: BenchContext, dir: string): Promise<string> => {
  await mkdir(dir, { recursive: true })
  const before = new Set(await readdir(dir))
  ctx.log(`hops: profiling both nodes (--cpu-prof) into ${dir}`)
  await runLoad(ctx, {}, ['--cpu-prof', `--cpu-prof-dir=${dir}`])
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile') && !before.has(f))
  let out = ''
  for (const f of files.sort()) {
    const profile = JSON.parse(await readFile(join(dir, f), 'utf8')) as CpuProfile
    out += `\nProfile ${f} (whole process life, start-up included):\n\n${table(topSelf(profile, 15))}`
  }
  return out || '\n(no profiles written)\n'
}

const scenario: Scenario = {
  name: 'hops',
  title: 'Cross-node path, hop by hop: 1 writer on node A, 3 readers on node B, 100 updates/s',
  run: async (ctx) => {
    const echo = { p50: ctx.floors.socket.pacedRttP50Ms, p99: ctx.floors.socket.pacedRttP99Ms }
    ctx.log('hops: untraced')
    const plain = await runLoad(ctx, {})
    const dir = await mkdtemp(join(tmpdir(), 'streambed-hops-'))
    const file = join(dir, 'hops.csv')
    ctx.log('hops: traced (TRACE_HOPS)')
    const traced = await runLoad(ctx, { TRACE_HOPS: file })
    const text = await readFile(file, 'utf8').catch(() => '')
    await rm(dir, { recursive: true, force: true })
    const trace = parseTrace(text, traced)
    const hops = hopTimes(traced, trace)
    const { socket, redis } = ctx.floors
    const floorOf: Record<string, string> = {
      'sockets (1 + 7)': `echo RTT ${fmt(socket.rttP50Ms, 3)} / ${fmt(socket.rttP99Ms, 3)}; at ${RATE}/s ${fmt(echo.p50, 3)} / ${fmt(echo.p99, 3)}`,
      '3+4. A validated → B doorbell (Redis)': `XADD→XREAD ${fmt(redis.rttP50Ms, 3)} / ${fmt(redis.rttP99Ms, 3)}`,
      'end to end': `sum ${fmt(socket.rttP50Ms + redis.rttP50Ms, 3)} / ${fmt(socket.rttP99Ms + redis.rttP99Ms, 3)}; at ${RATE}/s ${fmt(echo.p50 + redis.rttP50Ms, 3)} / ${fmt(echo.p99 + redis.rttP99Ms, 3)}`,
    }
    const rows: Row[] = [...hops].map(([hop, values]) => ({
      hop,
      n: values.length,
      'p50 ms': fmt(percentile(values, 50), 3),
      'p99 ms': fmt(percentile(values, 99), 3),
      'floor p50 / p99 ms': floorOf[hop] ?? '',
    }))
    const endToEnd = (run: string, ledger: HopLedger): Row => {
      const l = summary(ledger.latencies)
      return {
        run,
        delivered: `${ledger.delivered}/${ledger.expected}`,
        'p50 ms': fmt(l.p50, 3),
        'p99 ms': fmt(l.p99, 3),
        'p50 ÷ floor sum': fmt(l.p50 / (echo.p50 + redis.rttP50Ms)),
        'p99 ÷ floor sum': fmt(l.p99 / (echo.p99 + redis.rttP99Ms)),
      }
    }
    const cost = table([endToEnd('untraced', plain.ledger), endToEnd('traced', traced.ledger)])
    const profDir = process.env.BENCH_CPU_PROF_DIR
    const profile = profDir ? await profileSection(ctx, profDir) : ''
    return (
      `${table(rows)}\nHops 1-6 once per update, 7 and the sums once per receive (${READERS} readers); ` +
      `percentiles of each line are taken on their own, so they do not add up. Hop 4 can be ` +
      `negative: Redis rings the doorbell before it answers the script. Floors: this run's ` +
      `(the socket floor is a full round trip; hops 1 + 7 are two one-way trips); "at ${RATE}/s": ` +
      `the echo round trip paced like the load (the floors table's "${RATE}/s" row).\n\n` +
      `End to end without and with TRACE_HOPS (the cost of tracing); floor sum: the echo round ` +
      `trip at ${RATE}/s plus XADD→XREAD, as in S1:\n\n${cost}${profile}`
    )
  },
}
export default scenario
