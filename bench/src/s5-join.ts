/**
 * S5: join time of a 300 KB document (paper-like editing trace, compacted in storage) plus 0 / 1 k /
 * 10 k / 100 k stream entries, and of a "typing tail" (10 k one-character updates typed at the end,
 * nothing stored yet), against the same work done in-process (storage read + XRANGE + merge +
 * diff); bytes against `Y.encodeStateAsUpdate` of the same document and node CPU per join. Then
 * head-of-line blocking: delivery latency on a small document while 4 clients join a 5 MB
 * document on the same node.
 */
import * as Y from 'yjs'
import { Redis } from 'ioredis'
import { mergeAll } from '@streambed/protocol'
import { createFsStorage } from '@streambed/storage'
import { createDocStreams, createKeys } from '@streambed/streams'
import { startCluster } from './cluster.js'
import type { Scenario } from './framework.js'
import { joinOnce } from './join.js'
import { pace, sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { fmt, summary, table, type Row } from './stats.js'
import { paperLikeTrace } from './traces.js'
import { snapshot } from '@streambed/worker'
import { cpuSeconds } from './proc.js'

/** `n` further single-character edits by a new client on top of `state`. */
const tailEdits = (state: Uint8Array, n: number): Uint8Array[] => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, state)
  const out: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => out.push(u))
  const text = doc.getText('content')
  for (let i = 0; i < n; i++) text.insert((i * 7919) % (text.length + 1), 'y')
  return out
}

/** `n` one-character updates typed at the end of a new document, a typo fixed every 40. */
const typedAtEnd = (n: number): Uint8Array[] => {
  const doc = new Y.Doc()
  const out: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => out.push(u))
  const text = doc.getText('content')
  for (let i = 0; i < n; i++) {
    if (i % 40 === 39) text.delete(text.length - 1, 1)
    else text.insert(text.length, 'the quick brown fox jumps over the lazy dog '[i % 44] as string)
  }
  return out
}

/** Bytes of the document as one Y.Doc encodes it (the size a join answer is held to). */
const docBytes = (stored: Uint8Array | null, edits: readonly Uint8Array[]): number => {
  const doc = new Y.Doc()
  if (stored) Y.applyUpdate(doc, stored)
  for (const u of edits) Y.applyUpdate(doc, u)
  return Y.encodeStateAsUpdate(doc).length
}

const scenario: Scenario = {
  name: 's5',
  title: 'Join time and head-of-line blocking',
  run: async (ctx) => {
    await using cluster = await startCluster({ nodes: 1 })
    const node = cluster.nodes[0] as (typeof cluster.nodes)[0]
    const admin = new Redis(cluster.redis.url)
    const keys = createKeys(cluster.prefix)
    const streams = createDocStreams({ redis: admin, keys, queueShards: 8 })
    const storage = await createFsStorage({ dir: cluster.storageDir })
    const repeats = ctx.quick ? 5 : 20

    ctx.log('s5: generating a 300 KB paper-like trace (cached after the first run)')
    const base = snapshot(null, paperLikeTrace(300 * 1024))
    const rows: Row[] = []
    const nodePid = node.proc.child.pid
    const baseKiB = Math.round(base.length / 1024)
    const cases = [
      ...(ctx.quick ? [0, 1000] : [0, 1000, 10_000, 100_000]).map((tail) => ({
        label: `${baseKiB} KiB stored + ${tail} stream entries`,
        doc: `join-${tail}`,
        stored: base,
        edits: () => tailEdits(base, tail),
      })),
      {
        label: 'typing tail: nothing stored + 10000 one-character entries',
        doc: 'join-typing',
        stored: null,
        edits: () => typedAtEnd(10_000),
      },
    ]
    for (const c of cases) {
      const { doc } = c
      if (c.stored) await storage.compareAndSet(doc, null, { state: c.stored, watermark: '1-0' })
      const edits = c.edits()
      const documentBytes = docBytes(c.stored, edits)
      for (let i = 0; i < edits.length; i += 500)
        await Promise.all(edits.slice(i, i + 500).map((u) => streams.append(doc, u, 'bench/0')))
      // Fewer repeats where one join is long: the 100 k tail.
      const times = edits.length > 20_000 ? Math.max(3, Math.round(repeats / 4)) : repeats
      const joins: number[] = []
      const floor: number[] = []
      let bytes = 0
      let mergedBytes = 0
      let nodeCpu = 0
      for (let r = 0; r < times; r++) {
        const start = performance.now()
        const stored = await storage.load(doc)
        const entries = (await admin.xrangeBuffer(keys.stream(doc), '-', '+')) as unknown as [
          Buffer,
          Buffer[],
        ][]
        const merged = mergeAll([
          stored?.state ?? new Uint8Array([0, 0]),
          ...entries.map(([, f]) => f[1] as Buffer),
        ])
        mergedBytes = Y.diffUpdate(merged, Y.encodeStateVector(new Y.Doc())).length
        floor.push(performance.now() - start)
        const cpuBefore = nodePid ? cpuSeconds(nodePid) : NaN
        const j = await joinOnce(node.url, doc)
        nodeCpu += (nodePid ? cpuSeconds(nodePid) : NaN) - cpuBefore
        joins.push(j.ms)
        bytes = j.bytes
      }
      const j = summary(joins)
      const f = summary(floor)
      rows.push({
        document: c.label,
        'sync step 2 bytes': bytes,
        'merged, not compacted (before)': mergedBytes,
        'Y.Doc bytes': documentBytes,
        'bytes ÷ Y.Doc': fmt(bytes / documentBytes),
        'join p50 ms': fmt(j.p50),
        'join p99 ms': fmt(j.p99),
        'node CPU ms / join': fmt((nodeCpu / times) * 1000),
        'in-process floor p50 ms': fmt(f.p50),
        'join ÷ floor (p50)': fmt(j.p50 / f.p50),
      })
    }

    // Head-of-line blocking: a small document's live updates while big joins run on the node.
    ctx.log('s5: head-of-line probe')
    const bigBytes = (ctx.quick ? 2 : 5) * 1024 * 1024
    const big = snapshot(null, paperLikeTrace(bigBytes))
    await storage.compareAndSet('big', null, { state: big, watermark: '1-0' })
    const ledger = new Ledger()
    const writer = await openPeers([node.url], ['small'], 1, ledger)
    const reader = await openPeers([node.url], ['small'], 1, ledger)
    const w = writer.peers[0]
    if (!w) throw new Error('probe writer did not connect')
    const probe = async (during: () => Promise<unknown>) => {
      ledger.reset()
      await Promise.all([pace(50, 3, () => w.write(1)), during()])
      await sleep(300)
      return summary(ledger.latencies)
    }
    const quiet = await probe(() => sleep(0))
    let joinMs: number[] = []
    const busy = await probe(async () => {
      await sleep(500)
      const started = performance.now()
      joinMs = (await Promise.all(Array.from({ length: 4 }, () => joinOnce(node.url, 'big')))).map(
        () => performance.now() - started,
      )
    })
    writer.close()
    reader.close()
    admin.disconnect()
    await storage.close()
    const hol = table([
      {
        'small-document probe (50 updates/s)': 'quiet node',
        'p50 ms': fmt(quiet.p50),
        'p99 ms': fmt(quiet.p99),
        'max ms': fmt(quiet.max),
      },
      {
        'small-document probe (50 updates/s)': `while 4 clients join a ${Math.round(big.length / 1024 / 1024)} MiB document (all joined after ${fmt(Math.max(...joinMs), 0)} ms)`,
        'p50 ms': fmt(busy.p50),
        'p99 ms': fmt(busy.p99),
        'max ms': fmt(busy.max),
      },
    ])
    return `${table(rows)}\nThe trace is synthetic (paper-like: single-character edits, 30 % deletions, a wandering cursor); real traces are not reachable from this machine. Goals: join ≤ 2 × floor; bytes ≤ 1.2 × Y.Doc (the document as \`Y.encodeStateAsUpdate\` encodes it). The floor merges without compacting, as joins did before issue 12. Node CPU is from /proc at 10 ms granularity, summed over the joins.\n\n${hol}`
  },
}
export default scenario
