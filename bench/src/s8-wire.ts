/**
 * Wire: what WS_COMPRESSION (off | shared | dedicated, issue 12 item 2) saves on the wire and
 * costs in node CPU and memory. One fresh node per setting on the same Redis and storage; every
 * client is a plain `ws` client that offers permessage-deflate (as browsers do). Wire bytes are
 * read off the client's TCP socket (`_socket.bytesRead`), message bytes from the decoded messages.
 * Three parts: cold joins (sync step 2) of stored documents, live updates from one writer to 20
 * readers, and the node RSS per idle socket.
 */
import { loadavg } from 'node:os'
import WebSocket from 'ws'
import * as Y from 'yjs'
import {
  decodeMessage,
  encodeSyncStep1,
  encodeSyncStep2,
  encodeSyncUpdate,
} from '@streambed/protocol'
import { createFsStorage } from '@streambed/storage'
import { snapshot } from '@streambed/worker'
import type { SpawnedProcessNode } from '@streambed/cli/testing'
import { spawnBuilt, startCluster, type Cluster } from './cluster.js'
import type { BenchContext, Scenario } from './framework.js'
import { pace, sleep } from './load.js'
import { connectInspector, inspectEnv, kib, settledRss, waitForIdleNode } from './memory-probe.js'
import { cpuSeconds, rssBytes } from './proc.js'
import { fmt, summary, table, type Row } from './stats.js'
import { paperLikeTrace } from './traces.js'

const MODES = ['off', 'shared', 'dedicated'] as const
type Mode = (typeof MODES)[number]

const READERS = 20
const IDLE_PER_DOC = 20
const IDLE_MS = 3000
const EMPTY_SV = Y.encodeStateVector(new Y.Doc())
const STEP1 = encodeSyncStep1(EMPTY_SV)
/** What a y-websocket client with nothing to add answers to the node's step 1. */
const EMPTY_STEP2 = encodeSyncStep2(Y.encodeStateAsUpdate(new Y.Doc()))

const WORDS = (
  'the of and to a in is that for it as was with be by on not he this are or his from at which ' +
  'but have an they you were her she there been one all we their has would when if so no will ' +
  'document editor change stream node server client history version paragraph section draft ' +
  'review comment author reader text line page figure table result method question answer time ' +
  'because between through during without before after under again further then once here why'
).split(' ')

/** About `bytes` of English-looking prose: words from a 100-word vocabulary, with punctuation. */
const prose = (bytes: number, seed: number): string => {
  let s = seed
  const rand = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  let out = ''
  while (out.length < bytes) {
    const word = WORDS[Math.floor(rand() * WORDS.length)] as string
    const r = rand()
    out += r < 0.06 ? `${word}. ` : r < 0.12 ? `${word}, ` : `${word} `
  }
  return out.slice(0, bytes)
}

const proseDoc = (bytes: number, seed: number): Uint8Array => {
  const doc = new Y.Doc()
  doc.getText('content').insert(0, prose(bytes, seed))
  return Y.encodeStateAsUpdate(doc)
}

/** A `ws` client with permessage-deflate offered (the library's default, as in browsers). */
interface WireClient {
  readonly ws: WebSocket
  /** The node accepted permessage-deflate. */
  readonly deflate: boolean
  /** Bytes read off the TCP socket so far (frames, compressed or not, plus the upgrade reply). */
  wireBytes(): number
  /** Bytes of the messages received so far, as the application sees them. */
  messageBytes: number
  /** Sends sync step 1 (empty state vector); resolves when step 2 is in. */
  join(): Promise<{ ms: number; messageBytes: number; wireBytes: number }>
  close(): void
}

const openClient = async (
  url: string,
  opts: { onUpdate?: (update: Uint8Array) => void; localAddress?: string } = {},
): Promise<WireClient> => {
  const ws = new WebSocket(url, opts.localAddress ? { localAddress: opts.localAddress } : {})
  ws.binaryType = 'arraybuffer'
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  const socket = (ws as unknown as { _socket: { bytesRead: number } })._socket
  let onStep2: ((bytes: number) => void) | null = null
  const client: WireClient = {
    ws,
    deflate: ws.extensions.includes('permessage-deflate'),
    wireBytes: () => socket.bytesRead,
    messageBytes: 0,
    join: () => {
      const start = performance.now()
      const wire = socket.bytesRead
      return new Promise((resolve) => {
        onStep2 = (bytes) =>
          resolve({
            ms: performance.now() - start,
            messageBytes: bytes,
            wireBytes: socket.bytesRead - wire,
          })
        ws.send(STEP1)
      })
    },
    close: () => ws.close(),
  }
  ws.on('message', (data: ArrayBuffer) => {
    client.messageBytes += data.byteLength
    const msg = decodeMessage(new Uint8Array(data))
    if (msg.kind === 'sync-step2') {
      onStep2?.(data.byteLength)
      onStep2 = null
    } else if (msg.kind === 'sync-update') opts.onUpdate?.(msg.update)
  })
  return client
}

const startNode = (cluster: Cluster, mode: Mode, extra: Record<string, string> = {}) =>
  spawnBuilt({ ...cluster.env, WS_COMPRESSION: mode, DOC_LINGER_MS: '0', ...extra })

// ---- 1. joins ----

interface JoinCase {
  label: string
  doc: string
  state: Uint8Array
}

interface JoinResult {
  messageBytes: number
  wireBytes: number
  p50: number
  cpuMsPerJoin: number
  deflate: boolean
}

const measureJoins = async (
  node: SpawnedProcessNode,
  c: JoinCase,
  repeats: number,
): Promise<JoinResult> => {
  const pid = node.proc.child.pid ?? 0
  const times: number[] = []
  let last = { messageBytes: 0, wireBytes: 0 }
  let deflate = false
  let cpu = 0
  // One warm-up join: code paths compiled once are not what a join costs.
  for (let r = -1; r < repeats; r++) {
    const client = await openClient(`${node.url}/${c.doc}`)
    deflate = client.deflate
    const before = cpuSeconds(pid)
    const j = await client.join()
    if (r >= 0) {
      cpu += cpuSeconds(pid) - before
      times.push(j.ms)
    }
    last = j
    client.close()
    // DOC_LINGER_MS=0: the node drops the document once the socket is gone; the next join is cold.
    await sleep(100)
  }
  return { ...last, p50: summary(times).p50, cpuMsPerJoin: (cpu / repeats) * 1000, deflate }
}

// ---- 2. live updates ----

interface LiveResult {
  sent: number
  delivered: number
  messageBytesPerUpdate: number
  wireBytesPerUpdate: number
  p50: number
  p99: number
  cpuMsPerDelivered: number
}

/** Send times of the writer's updates by clock range, in send order (clocks only grow). */
class SendLog {
  private readonly sent: { clock: number; at: number }[] = []
  readonly latencies: number[] = []

  add(clock: number): void {
    this.sent.push({ clock, at: performance.now() })
  }

  /** Credits every sent update whose first clock lies in [start, end) (the node may merge). */
  received(start: number, end: number): void {
    const now = performance.now()
    let lo = 0
    let hi = this.sent.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((this.sent[mid] as { clock: number }).clock < start) lo = mid + 1
      else hi = mid
    }
    for (let i = lo; i < this.sent.length; i++) {
      const s = this.sent[i] as { clock: number; at: number }
      if (s.clock >= end) break
      this.latencies.push(now - s.at)
    }
  }
}

const measureLive = async (
  node: SpawnedProcessNode,
  doc: string,
  ctx: BenchContext,
): Promise<{ small: LiveResult; medium: LiveResult }> => {
  const pid = node.proc.child.pid ?? 0
  const ydoc = new Y.Doc()
  const text = ydoc.getText('content')
  let log = new SendLog()
  const onUpdate = (update: Uint8Array) => {
    const { from, to } = Y.parseUpdateMeta(update)
    const start = from.get(ydoc.clientID)
    if (start !== undefined) log.received(start, to.get(ydoc.clientID) ?? start)
  }
  const readers = await Promise.all(
    Array.from({ length: READERS }, () => openClient(`${node.url}/${doc}`, { onUpdate })),
  )
  await Promise.all(readers.map((r) => r.join()))
  const writer = await openClient(`${node.url}/${doc}`)
  await writer.join()
  let last: Uint8Array = new Uint8Array()
  ydoc.on('update', (u: Uint8Array) => (last = u))
  const send = (edit: () => void) => {
    const clock = Y.getState(ydoc.store, ydoc.clientID)
    edit()
    log.add(clock)
    writer.ws.send(encodeSyncUpdate(last))
  }
  const phase = async (count: number, perSecond: number, edit: (i: number) => void) => {
    log = new SendLog()
    const wire = readers.reduce((n, r) => n + r.wireBytes(), 0)
    const messages = readers.reduce((n, r) => n + r.messageBytes, 0)
    const cpu = cpuSeconds(pid)
    await pace(perSecond, count / perSecond, (i) => send(() => edit(i)))
    const deadline = Date.now() + 10_000
    while (log.latencies.length < count * READERS && Date.now() < deadline) await sleep(20)
    const delivered = log.latencies.length
    const l = summary(log.latencies)
    return {
      sent: count,
      delivered,
      messageBytesPerUpdate:
        (readers.reduce((n, r) => n + r.messageBytes, 0) - messages) / delivered,
      wireBytesPerUpdate: (readers.reduce((n, r) => n + r.wireBytes(), 0) - wire) / delivered,
      p50: l.p50,
      p99: l.p99,
      cpuMsPerDelivered: ((cpuSeconds(pid) - cpu) / delivered) * 1000,
    }
  }
  // Typing: one character at a time at the end; a typo fixed every 40 characters.
  const typing = 'the quick brown fox jumps over the lazy dog '
  const small = await phase(ctx.quick ? 200 : 1000, 50, (i) => {
    if (i % 40 === 39) text.delete(text.length - 1, 1)
    else text.insert(text.length, typing[i % typing.length] as string)
  })
  // Pastes: ~2 KB of prose somewhere in the text.
  const medium = await phase(ctx.quick ? 40 : 200, 10, (i) => {
    text.insert(Math.floor(text.length / 2), prose(2000, 1000 + i))
  })
  for (const r of readers) r.close()
  writer.close()
  ydoc.destroy()
  return { small, medium }
}

// ---- 3. idle sockets ----

interface IdleResult {
  sockets: number
  deflate: number
  rssBefore: number
  rssAfter: number
  rssAfterGc: number
}

const measureIdle = async (
  cluster: Cluster,
  mode: Mode,
  docs: readonly string[],
): Promise<IdleResult> => {
  const node = await startNode(cluster, mode, inspectEnv)
  const pid = node.proc.child.pid ?? 0
  const inspector = await connectInspector(node.proc)
  try {
    const open = async (names: readonly string[]) => {
      const clients: WireClient[] = []
      const targets = names.flatMap((d) => Array.from({ length: IDLE_PER_DOC }, () => d))
      for (let i = 0; i < targets.length; i += 250) {
        const batch = await Promise.all(
          targets
            .slice(i, i + 250)
            .map((d, j) =>
              openClient(`${node.url}/${d}`, { localAddress: `127.0.0.${1 + ((i + j) % 8)}` }),
            ),
        )
        await Promise.all(batch.map((c) => c.join()))
        for (const c of batch) c.ws.send(EMPTY_STEP2)
        clients.push(...batch)
      }
      return clients
    }
    // Warm-up: code compiled and pools allocated once are not per-socket costs.
    const warm = await open(docs.slice(0, 10))
    for (const c of warm) c.close()
    await waitForIdleNode(node.httpUrl)
    await inspector.collectGarbage()
    const rssBefore = await settledRss(pid)
    const clients = await open(docs)
    await sleep(IDLE_MS)
    const rssAfter = rssBytes(pid)
    await inspector.collectGarbage()
    const rssAfterGc = await settledRss(pid)
    const result = {
      sockets: clients.length,
      deflate: clients.filter((c) => c.deflate).length,
      rssBefore,
      rssAfter,
      rssAfterGc,
    }
    for (const c of clients) c.close()
    return result
  } finally {
    inspector.close()
    await node.crash()
  }
}

// ---- the scenario ----

const ratio = (value: number, off: number): string => fmt(value / off)

const run = async (ctx: BenchContext): Promise<string> => {
  const loadBefore = loadavg()
  const cluster = await startCluster({ nodes: 0 })
  let storage: Awaited<ReturnType<typeof createFsStorage>> | null = null
  try {
    storage = await createFsStorage({ dir: cluster.storageDir })
    const trace = paperLikeTrace(300 * 1024)
    // The first 6600 edits of the same trace encode to about 40 KB.
    const paper40 = snapshot(null, trace.slice(0, 6600))
    const paper300 = snapshot(null, trace)
    const cases: JoinCase[] = [
      { label: 'paper-like trace', doc: 'paper-40k', state: paper40 },
      { label: 'prose, pasted', doc: 'prose-40k', state: proseDoc(40 * 1024, 1) },
      { label: 'paper-like trace', doc: 'paper-300k', state: paper300 },
    ]
    const idleDocs = Array.from(
      { length: (ctx.quick ? 500 : 2000) / IDLE_PER_DOC },
      (_, i) => `idle-${i}`,
    )
    for (const c of cases)
      await storage.compareAndSet(c.doc, null, { state: c.state, watermark: '1-0' })
    for (const [i, doc] of idleDocs.entries())
      await storage.compareAndSet(doc, null, { state: proseDoc(3000, 100 + i), watermark: '1-0' })

    const repeats = ctx.quick ? 3 : 15
    const joins = new Map<string, JoinResult>()
    const live = new Map<Mode, { small: LiveResult; medium: LiveResult }>()
    const idle = new Map<Mode, IdleResult>()
    for (const mode of MODES) {
      ctx.log(`wire: ${mode}: joins and live updates`)
      const node = await startNode(cluster, mode)
      try {
        for (const c of cases) joins.set(`${mode}/${c.doc}`, await measureJoins(node, c, repeats))
        live.set(mode, await measureLive(node, `live-${mode}`, ctx))
      } finally {
        await node.crash()
      }
    }
    for (const mode of MODES) {
      ctx.log(`wire: ${mode}: ${idleDocs.length * IDLE_PER_DOC} idle sockets`)
      idle.set(mode, await measureIdle(cluster, mode, idleDocs))
    }
    const loadAfter = loadavg()

    const joinRows: Row[] = cases.flatMap((c) =>
      MODES.map((mode) => {
        const j = joins.get(`${mode}/${c.doc}`) as JoinResult
        const off = joins.get(`off/${c.doc}`) as JoinResult
        return {
          document: `${c.label}, ${fmt(c.state.length / 1024, 0)} KiB stored`,
          WS_COMPRESSION: mode,
          'deflate negotiated': j.deflate ? 'yes' : 'no',
          'step 2 message bytes': j.messageBytes,
          'wire bytes': j.wireBytes,
          'wire ÷ message': fmt(j.wireBytes / j.messageBytes),
          'wire ÷ off': ratio(j.wireBytes, off.wireBytes),
          'join p50 ms': fmt(j.p50),
          'p50 ÷ off': ratio(j.p50, off.p50),
          'node CPU ms / join': fmt(j.cpuMsPerJoin, 1),
        }
      }),
    )
    const liveRows: Row[] = (['small', 'medium'] as const).flatMap((kind) =>
      MODES.map((mode) => {
        const r = (live.get(mode) as { small: LiveResult; medium: LiveResult })[kind]
        const off = (live.get('off') as { small: LiveResult; medium: LiveResult })[kind]
        return {
          updates:
            kind === 'small'
              ? `${r.sent} typed characters (50/s)`
              : `${r.sent} pastes of ~2 KB (10/s)`,
          WS_COMPRESSION: mode,
          'delivered / expected': `${r.delivered} / ${r.sent * READERS}`,
          'message bytes / update': fmt(r.messageBytesPerUpdate, 1),
          'wire bytes / update': fmt(r.wireBytesPerUpdate, 1),
          'wire ÷ off': ratio(r.wireBytesPerUpdate, off.wireBytesPerUpdate),
          'latency p50 ms': fmt(r.p50),
          'p99 ms': fmt(r.p99),
          'p99 ÷ off': ratio(r.p99, off.p99),
          'node CPU µs / delivered': fmt(r.cpuMsPerDelivered * 1000, 1),
          'CPU ÷ off': ratio(r.cpuMsPerDelivered, off.cpuMsPerDelivered),
        }
      }),
    )
    const perSocket = (r: IdleResult) => (r.rssAfter - r.rssBefore) / r.sockets
    const perSocketGc = (r: IdleResult) => (r.rssAfterGc - r.rssBefore) / r.sockets
    const idleOff = idle.get('off') as IdleResult
    const idleRows: Row[] = MODES.map((mode) => {
      const r = idle.get(mode) as IdleResult
      return {
        WS_COMPRESSION: mode,
        'sockets (deflate negotiated)': `${r.sockets} (${r.deflate})`,
        'node RSS before → after MiB': `${fmt(r.rssBefore / 2 ** 20, 1)} → ${fmt(r.rssAfter / 2 ** 20, 1)}`,
        'RSS / socket KiB': kib(perSocket(r)),
        '÷ off': ratio(perSocket(r), perSocket(idleOff)),
        'above off KiB': kib(perSocket(r) - perSocket(idleOff)),
        'after full GC: RSS / socket KiB': kib(perSocketGc(r)),
        'after GC: above off KiB': kib(perSocketGc(r) - perSocketGc(idleOff)),
      }
    })

    const load = (l: number[]) => l.map((v) => fmt(v)).join(' / ')
    const notes = [
      `One fresh node per setting (DOC_LINGER_MS=0, so every join reads the stored document again) on one Redis and one storage directory; WS_COMPRESS_MIN_BYTES at its default (1024). Clients are \`ws\` clients offering permessage-deflate; wire bytes are read off their TCP sockets (frame headers included).`,
      `Joins: ${repeats} per row after one warm-up; the 300 KiB answer is larger than a 64 KiB fragment and goes out as uncompressed fragments (uWS cannot compress fragments).`,
      `Live: one writer and ${READERS} readers on one document; wire and message bytes are the readers' (per delivered update), latency from the writer's send to each reader's receipt, node CPU from /proc (10 ms ticks) over the phase.`,
      `Idle: a separate fresh node per setting (inspector attached), warmed up with 200 sockets; ${IDLE_PER_DOC} sockets per ~3 KB prose document, each joined (answer compressed where negotiated), answered the node's step 1 and stayed idle ${IDLE_MS / 1000} s.`,
      `Load average (1 / 5 / 15 min) before: ${load(loadBefore)}; after: ${load(loadAfter)} (2 cores, shared with other work).`,
    ]
    return `#### Cold join (sync step 2)\n\n${table(joinRows)}\n#### Live updates\n\n${table(liveRows)}\n#### Idle sockets\n\n${table(idleRows)}\n${notes.map((n) => `- ${n}`).join('\n')}\n\n${recommend(joins, live, idle, perSocketGc)}\n`
  } finally {
    await storage?.close()
    await cluster.stop()
  }
}

/**
 * The recommendation, from this run's numbers. `shared` is proposed as the default when it saves
 * at least 30 % of the bytes of a 40 KB prose join and of a 2 KB paste, costs under 2 KiB of RSS
 * per idle socket (after GC) and under twice the node CPU per delivered paste.
 */
const recommend = (
  joins: Map<string, JoinResult>,
  live: Map<Mode, { small: LiveResult; medium: LiveResult }>,
  idle: Map<Mode, IdleResult>,
  perSocket: (r: IdleResult) => number,
): string => {
  const j = (mode: Mode, doc: string) => joins.get(`${mode}/${doc}`) as JoinResult
  const l = (mode: Mode) => live.get(mode) as { small: LiveResult; medium: LiveResult }
  const saved = (mode: Mode, doc: string) => 1 - j(mode, doc).wireBytes / j('off', doc).wireBytes
  const pct = (x: number) => `${fmt(x * 100, 0)} %`
  const pasteSaved = (mode: Mode) =>
    1 - l(mode).medium.wireBytesPerUpdate / l('off').medium.wireBytesPerUpdate
  const pasteCpu = (mode: Mode) =>
    l(mode).medium.cpuMsPerDelivered / l('off').medium.cpuMsPerDelivered
  const extraKiB = (mode: Mode) =>
    (perSocket(idle.get(mode) as IdleResult) - perSocket(idle.get('off') as IdleResult)) / 1024
  const sharedWorth =
    saved('shared', 'prose-40k') >= 0.3 &&
    pasteSaved('shared') >= 0.3 &&
    extraKiB('shared') < 2 &&
    pasteCpu('shared') < 2
  const dedicatedGain = pasteSaved('dedicated') - pasteSaved('shared')
  return [
    `**Recommendation.** \`shared\` cut the wire bytes of a 40 KB join by ${pct(saved('shared', 'prose-40k'))} (prose) and ${pct(saved('shared', 'paper-40k'))} (paper-like trace) and of a 2 KB paste by ${pct(pasteSaved('shared'))}, for ${fmt(pasteCpu('shared'))} × the node CPU per delivered paste, ${fmt(extraKiB('shared'), 1)} KiB RSS per idle socket above \`off\` (after GC) and a 40 KB join p50 of ${fmt(j('shared', 'prose-40k').p50, 1)} ms against ${fmt(j('off', 'prose-40k').p50, 1)} ms; typed characters (below WS_COMPRESS_MIN_BYTES) and the 300 KB join (fragments) went out unchanged (wire ÷ off ${fmt(l('shared').small.wireBytesPerUpdate / l('off').small.wireBytesPerUpdate)} and ${fmt(1 - saved('shared', 'paper-300k'))}).`,
    sharedWorth
      ? `So \`shared\` is the better default: no memory per socket, CPU only on messages of 1 KiB and more (joins, pastes), the most frequent messages (keystrokes) untouched; set \`off\` where the node is CPU-bound and bandwidth is free (a LAN, or a proxy in front that compresses anyway).`
      : `Its savings do not clearly pay for its cost here (the bar: ≥ 30 % fewer bytes on joins and pastes, < 2 KiB per socket, < 2 × CPU per paste), so the default stays \`off\`; choose \`shared\` where clients pay for bandwidth (mobile, metered egress) more than the node pays for CPU.`,
    `\`dedicated\` saved ${pct(pasteSaved('dedicated'))} on pastes (${dedicatedGain >= 0 ? `${pct(dedicatedGain)} more` : `${pct(-dedicatedGain)} less`} than \`shared\`) and ${pct(saved('dedicated', 'prose-40k'))} on the prose join, for ${fmt(extraKiB('dedicated'), 1)} KiB per socket (${fmt((extraKiB('dedicated') * 10_000) / 1024, 0)} MiB per 10 000 sockets): ${dedicatedGain > 0.1 ? 'choose it only for a few long-lived sockets that send many similar medium-sized messages' : 'it buys nothing over `shared` here, so choose it only if measurements on real traffic show a gain'}, never for a node holding many idle editors.`,
  ].join(' ')
}

const scenario: Scenario = {
  name: 'wire',
  title: 'WebSocket compression (WS_COMPRESSION): wire bytes, latency, CPU, memory',
  run,
}
export default scenario
