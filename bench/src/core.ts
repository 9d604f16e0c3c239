/**
 * The numbers the core and worker issues quote, as one scenario: join time of a document whose
 * history is all in the stream (1 k / 10 k entries), cross-node delivery latency at 100 updates/s,
 * compaction throughput of 1 k small documents with 1 and 2 workers, snapshot size against
 * encodeStateAsUpdate, and the join time of a 10 k-update document before and after compaction.
 */
import { runCompaction, runJoinAfterCompaction, runSnapshotSizes } from './compaction.js'
import type { Scenario } from './framework.js'
import { runJoin } from './join.js'
import { runLatency } from './latency.js'

const scenario: Scenario = {
  name: 'core',
  title: 'Core numbers: join, cross-node latency, compaction, snapshot size',
  run: async (ctx) => {
    const parts: [string, () => Promise<string>][] = [
      [
        'Join time, stream tail only',
        () =>
          runJoin({ entries: ctx.quick ? [1000] : [1000, 10_000], repeats: ctx.quick ? 5 : 20 }),
      ],
      [
        'Compaction throughput (small dirty documents, worker processes, fs storage)',
        () => runCompaction({ docs: ctx.quick ? 200 : 1000, workers: ctx.quick ? [1] : [1, 2] }),
      ],
      ['Snapshot size', () => runSnapshotSizes({ largeTrace: !ctx.quick })],
      [
        'Join time before and after compaction',
        () =>
          runJoinAfterCompaction({
            entries: ctx.quick ? 2000 : 10_000,
            repeats: ctx.quick ? 5 : 20,
          }),
      ],
    ]
    // Cross-node latency at 100/s in full runs only: S1 covers it in --quick runs.
    if (!ctx.quick)
      parts.splice(1, 0, [
        'Cross-node delivery latency (writer on node A, readers on node B)',
        () => runLatency({ rate: 100, seconds: 30, readers: 3 }),
      ])
    const out: string[] = []
    for (const [title, run] of parts) {
      const started = performance.now()
      ctx.log(`core: ${title}`)
      out.push(`**${title}**\n\n${await run()}`)
      ctx.log(`core: ${title}: ${((performance.now() - started) / 1000).toFixed(1)} s`)
    }
    return out.join('\n')
  },
}

export default scenario
