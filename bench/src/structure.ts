/**
 * What the structure check (STRUCTURE_CHECK, decision 0014) costs a node: memory per document
 * written through it, and the time of the first write (the node reads the document into a Y.Doc).
 * For each kind of document, a fresh node with the check off and one with it on: the documents
 * are appended to Redis directly, one socket per document joins and writes one character, then a
 * full GC is forced over the inspector and RSS and V8 heap are read.
 */
import * as Y from 'yjs'
import type { BenchContext, Scenario } from './framework.js'
import {
  fetchMetrics,
  metricValue,
  mib,
  settledRss,
  textDocument,
  withProbedNode,
} from './memory-probe.js'
import { sleep } from './load.js'
import { Ledger, openPeers } from './peers.js'
import { fmt, table } from './stats.js'

interface Kind {
  readonly label: string
  readonly docs: number
  /** The document as one update, its text in the root type `content` (writers use `t`). */
  readonly update: Uint8Array
}

/** `strokes` one-character edits at random places, one in 8 a deletion: many items. */
const typedDocument = (strokes: number, seed: number): Uint8Array => {
  let s = seed
  const rnd = (n: number) => {
    s = (s * 16807) % 2147483647
    return s % n
  }
  const doc = new Y.Doc()
  const text = doc.getText('content')
  for (let i = 0; i < strokes; i++) {
    if (text.length > 0 && rnd(8) === 0) text.delete(rnd(text.length), 1)
    else text.insert(rnd(text.length + 1), String.fromCharCode(97 + rnd(26)))
  }
  return Y.encodeStateAsUpdate(doc)
}

interface Reading {
  rss: number
  heap: number
  held: number
  firstWriteMs: number
}

const measure = (kind: Kind, check: 'on' | 'off', ctx: BenchContext): Promise<Reading> =>
  withProbedNode({ STRUCTURE_CHECK: check }, async ({ node, pid, inspector, streams }) => {
    const docs = Array.from({ length: kind.docs }, (_, i) => `structure-${i}`)
    for (const doc of docs) await streams.append(doc, kind.update, 'bench/0')
    const pool = await openPeers([node.url], docs, 1, new Ledger())
    try {
      ctx.log(`structure: ${kind.docs} × ${kind.label}, STRUCTURE_CHECK=${check}`)
      const started = performance.now()
      for (const p of pool.peers) p.write(0)
      const deadline = Date.now() + 120_000
      for (;;) {
        const appended = metricValue(
          await fetchMetrics(node.httpUrl),
          'streambed_updates_appended_total',
        )
        if (appended >= kind.docs) break
        if (Date.now() > deadline)
          throw new Error(`structure: ${appended} of ${kind.docs} appended`)
        await sleep(20)
      }
      const firstWriteMs = (performance.now() - started) / kind.docs
      await sleep(300)
      const held = metricValue(await fetchMetrics(node.httpUrl), 'streambed_structure_docs')
      await inspector.collectGarbage()
      const rss = await settledRss(pid)
      const heap = (await inspector.heap()).heapUsedBytes
      return { rss, heap, held, firstWriteMs }
    } finally {
      pool.close()
      await sleep(200)
    }
  })

const run = async (ctx: BenchContext): Promise<string> => {
  const kinds: Kind[] = [
    { label: 'typed, 20 000 edits', docs: ctx.quick ? 5 : 50, update: typedDocument(20_000, 7) },
    { label: 'pasted, 1 MiB', docs: ctx.quick ? 2 : 20, update: textDocument(2 ** 20) },
  ]
  const rows = []
  for (const kind of kinds) {
    const off = await measure(kind, 'off', ctx)
    const on = await measure(kind, 'on', ctx)
    const perDoc = (on.rss - off.rss) / kind.docs
    rows.push({
      document: kind.label,
      'encoded KiB': fmt(kind.update.length / 1024, 1),
      documents: kind.docs,
      'held (on)': on.held,
      'RSS off MiB': mib(off.rss),
      'RSS on MiB': mib(on.rss),
      'RSS per document held KiB': fmt(perDoc / 1024, 0),
      '÷ encoded size': fmt(perDoc / kind.update.length, 1),
      'heap off / on MiB': `${mib(off.heap)} / ${mib(on.heap)}`,
      'first writes, ms per document (all at once), off / on': `${fmt(off.firstWriteMs, 1)} / ${fmt(on.firstWriteMs, 1)}`,
    })
  }
  const notes = [
    'One fresh node per column (check off, then on); one socket per document writes one character into another root type (its item sits between its neighbours, so no full comparison). RSS after two forced full GCs.',
    'The first write of a document through a node reads it (storage + stream) into a Y.Doc; later writes apply to that copy. Readers alone cost nothing; a copy goes with the document’s subscription.',
  ]
  return `${table(rows)}\n${notes.map((n) => `- ${n}`).join('\n')}\n`
}

const scenario: Scenario = {
  name: 'structure',
  title: 'Structure check: node memory per written document',
  run,
}
export default scenario
