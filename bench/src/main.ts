/**
 * `npm run bench -- [scenario ...] [--quick] [--record | --no-record]`
 *
 * Measures the floors (Redis, bare uWebSockets.js, Yjs) first, then runs the scenarios (default:
 * all but the opt-in ones, see optIn) and prints their tables. Full runs append the results to
 * docs/benchmarks.md; --quick runs (about a minute, a smoke test) only when --record is given.
 * Recording runs then redraw the charts (docs/images/bench-*.svg) from docs/benchmarks.md;
 * `npm run bench -- charts` only redraws them (no Redis, no compiled CLI needed).
 */
import { existsSync } from 'node:fs'
import { join, relative } from 'node:path'
import { startRedisServer } from '@streambed/testing'
import { writeBenchCharts } from './charts.js'
import type { BenchContext, Scenario } from './framework.js'
import { floorsTable, measureFloors } from './floors.js'
import { record, repoRoot } from './stats.js'

/** Scenario name → module (each default-exports a Scenario), in run order. */
const modules: Record<string, string> = {
  core: './core.js',
  s1: './s1-fanout.js',
  s2: './s2-many-docs.js',
  s3: './s3-idle-sockets.js',
  s4: './s4-ceiling.js',
  s5: './s5-join.js',
  s6: './s6-compaction.js',
  s7: './s7-reconnect.js',
  memory: './memory.js',
  wire: './s8-wire.js',
  recovery: './recovery.js',
  history: './history.js',
  hops: './hops.js',
  cluster: './redis-cluster.js',
  structure: './structure.js',
}
/**
 * Scenarios run only when named: `wire` adds about 3 minutes (six fresh nodes), `recovery` several
 * (backups and restores of 10 000 documents), `history` (update-log bytes per day of history, per
 * backend), `hops` (the cross-node path timed hop by hop), `cluster` (a 6-process Redis Cluster
 * against one Redis, about 6 minutes) and `structure` (node memory of the structure check).
 */
const optIn = new Set(['wire', 'recovery', 'history', 'hops', 'cluster', 'structure'])
const defaults = Object.keys(modules).filter((name) => !optIn.has(name))

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const save = args.includes('--record') || (!quick && !args.includes('--no-record'))
const names = args.filter((a) => !a.startsWith('--'))
// `charts` is a pseudo-scenario: redraw the charts from the recorded results.
const charts = names.includes('charts')
const chosen = names.filter((name) => name !== 'charts')
for (const name of chosen) {
  if (!modules[name]) {
    process.stderr.write(
      `unknown scenario "${name}"; known: ${Object.keys(modules).join(' ')} charts\n`,
    )
    process.exit(64)
  }
}
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`)
const drawCharts = () => {
  const { written } = writeBenchCharts()
  log(`charts: ${written.map((f) => relative(repoRoot, f)).join(' ')}`)
}
if (charts && chosen.length === 0) {
  drawCharts()
  process.exit(0)
}
if (!existsSync(join(repoRoot, 'apps/cli/dist/main.js'))) {
  process.stderr.write(
    'the benchmarks run the compiled CLI: run `npm run build` first (`npm run bench` at the root does)\n',
  )
  process.exit(1)
}
const command = args.length > 0 ? `npm run bench -- ${args.join(' ')}` : 'npm run bench'
const started = performance.now()

log('measuring floors')
const floors = await (async () => {
  await using redis = await startRedisServer()
  return await measureFloors(redis, quick)
})()
const floorText = floorsTable(floors)
process.stdout.write(`\n## Floors\n\n${floorText}`)
if (save) record('Floors', command, floorText)

const ctx: BenchContext = { quick, floors, log, shared: new Map() }
for (const name of chosen.length > 0 ? chosen : defaults) {
  const scenario = ((await import(modules[name] as string)) as { default: Scenario }).default
  log(`${scenario.name}: ${scenario.title}`)
  const t = performance.now()
  const result = await scenario.run(ctx)
  const seconds = ((performance.now() - t) / 1000).toFixed(0)
  process.stdout.write(
    `\n## ${scenario.name.toUpperCase()} — ${scenario.title} (${seconds} s)\n\n${result}`,
  )
  if (save) record(`${scenario.name.toUpperCase()} — ${scenario.title}`, command, result)
}
if (save || charts) drawCharts()
log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`)
