import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  chartsFromMarkdown,
  formatValue,
  lastSections,
  leadingNumber,
  parseSections,
  renderChart,
  writeBenchCharts,
  type Chart,
  type LinePanel,
  type BarPanel,
} from './charts.js'
import { repoRoot } from './stats.js'

const fixture = `# Benchmarks

| not | a result |
| --- | --- |
| 1 | 2 |

## Results

### S1 — Fan-out latency: 1 writer, 3 readers, 2 nodes

2026-01-01T00:00:00.000Z · commit aaaaaaa · 2 × CPU · 8 GiB · Node v20.0.0

Command: \`npm run bench\`

| updates/s | delivered | p50 ms | p99 ms |
| --- | --- | --- | --- |
| 10 | 1/1 | 99.00 | 99.00 |

Redis floor: p50 9.000 ms, p99 9.000 ms. Goal: p99 ≤ 3 × floor p99.

### S1 — Fan-out latency: 1 writer, 3 readers, 2 nodes

2026-02-02T00:00:00.000Z · commit bbbbbbb · 2 × CPU · 8 GiB · Node v20.0.0

Command: \`npm run bench -- s1 --record\`

| updates/s | delivered | p50 ms | p99 ms | CPU s |
| --- | --- | --- | --- | --- |
| 20 | 600/600 | 1.77 | 6.97 | redis 0.1 s |
| 1000 | 30000/30000 | 2.34 | 4.41 | redis 0.6 s |

Redis floor: p50 0.357 ms, p99 1.590 ms. Goal: p99 ≤ 3 × floor p99.

### S3 — Idle sockets: node memory per connection

2026-02-02T00:01:00.000Z · commit bbbbbbb · 2 × CPU · 8 GiB · Node v20.0.0

Command: \`npm run bench\`

| sockets | RSS / socket KiB | bare uWS KiB | above bare KiB (goal ≤ 2) | after full GC: RSS / socket KiB |
| --- | --- | --- | --- | --- |
| 10000 | 6.87 | 0.57 | 6.30 ✗ | 2.34 |
| 19000 (50000 not reachable: open-file limit) | 5.49 | 0.57 | 4.92 ✗ | 2.05 |

- The bare uWS floor is the echo server of the floors table.

### S4 — Throughput ceiling: 50 documents × (1 writer + 2 readers), 2 nodes

2026-02-02T00:02:00.000Z · commit bbbbbbb · 2 × CPU · 8 GiB · Node v20.0.0

Command: \`npm run bench\`

| offered updates/s | achieved updates/s | p50 ms | p99 ms | result |
| --- | --- | --- | --- | --- |
| 500 | 499 | 2.05 | 9.57 | pass |
| 8000 | 7925 | 56.87 | 323.87 | p99 > 50 ms |

Ceiling: **7966 delivered updates/s** before p99 > 50 ms or a missing delivery.

### S5 — Join time and head-of-line blocking

2026-02-02T00:03:00.000Z · commit ccccccc · 2 × CPU · 8 GiB · Node v20.0.0

Command: \`npm run bench -- s5 --record\`

| document | sync step 2 bytes | merged, not compacted (before) | Y.Doc bytes | join p50 ms | in-process floor p50 ms |
| --- | --- | --- | --- | --- | --- |
| 315 KiB stored + 0 stream entries | 102400 | 102400 | 102400 | 14.06 | 19.40 |
| 315 KiB stored + 1000 stream entries | 204800 | 307200 | 204800 | 48.43 | 50.96 |
| typing tail: nothing stored + 10000 one-character entries | 10240 | 512000 | 10240 | 22.50 | 30.00 |

| small-document probe (50 updates/s) | p50 ms | p99 ms |
| --- | --- | --- |
| quiet node | 1.80 | 4.67 |

### S6 — Compaction throughput, snapshot size, time to durable

2026-02-02T00:04:00.000Z · commit ccccccc · 2 × CPU · 8 GiB · Node v20.0.0

Command: \`npm run bench\`

Worker settings: defaults; fs storage on the local disk.

**Throughput**: time from the resume until every stream key is gone.

| workload | workers | s to drain | docs/s | docs/s per worker | floor docs/s (merge + store) | floor docs/s (+ archive) |
| --- | --- | --- | --- | --- | --- | --- |
| 1000 small docs | 1 | 3.55 | 282 | 282 | 394 | 228 |
| 10 large docs (5 MiB) | 1 | 1.51 | 7 | 6.64 | 15 | 12 |
| 1000 small docs | 2 | 3.97 | 252 | 126 | 394 | 228 |

**CPU seconds per process** during the drain.

| workload | workers | wall s |
| --- | --- | --- |
| 1000 small docs | 1 | 3.55 |
`

const charts = chartsFromMarkdown(fixture)
const chart = (name: string): Chart => {
  const found = charts.find((c) => c.name === name)
  if (!found) throw new Error(`no chart ${name}`)
  return found
}
const line = (name: string, i = 0) => chart(name).panels[i] as LinePanel
const xy = (p: LinePanel, series: string) =>
  p.series.find((s) => s.name === series)?.points.map((q) => [q.x, q.y])

describe('parsing docs/benchmarks.md', () => {
  it('reads sections under "## Results" with their meta line, command, tables and notes', () => {
    const sections = parseSections(fixture)
    expect(sections.map((s) => s.name)).toEqual(['S1', 'S1', 'S3', 'S4', 'S5', 'S6'])
    const s6 = sections[5]!
    expect(s6.meta).toMatch(/^2026-02-02T00:04:00.000Z · commit ccccccc/)
    expect(s6.command).toBe('npm run bench')
    expect(s6.tables.map((t) => t.caption)).toEqual([
      '**Throughput**: time from the resume until every stream key is gone.',
      '**CPU seconds per process** during the drain.',
    ])
    expect(s6.tables[0]!.rows[1]).toEqual([
      '10 large docs (5 MiB)',
      '1',
      '1.51',
      '7',
      '6.64',
      '15',
      '12',
    ])
  })

  it('keeps the last section of each scenario', () => {
    const s1 = lastSections(parseSections(fixture)).get('S1')!
    expect(s1.meta).toContain('commit bbbbbbb')
    expect(s1.notes).toEqual([
      'Redis floor: p50 0.357 ms, p99 1.590 ms. Goal: p99 ≤ 3 × floor p99.',
    ])
  })

  it('reads the leading number of a cell', () => {
    expect(leadingNumber('9000/9000')).toBe(9000)
    expect(leadingNumber('6.30 ✗')).toBe(6.3)
    expect(leadingNumber('19000 (50000 not reachable)')).toBe(19000)
    expect(leadingNumber('—')).toBeNaN()
  })
})

describe('chart data', () => {
  it('has one chart per charted scenario', () => {
    expect(charts.map((c) => c.name)).toEqual(['s1', 's3', 's4', 's5', 's6'])
  })

  it('S1: p50 and p99 against the rate, Redis floor and goal as lines', () => {
    const p = line('s1')
    expect(p.xScale).toBe('log')
    expect(xy(p, 'p50')).toEqual([
      [20, 1.77],
      [1000, 2.34],
    ])
    expect(xy(p, 'p99')).toEqual([
      [20, 6.97],
      [1000, 4.41],
    ])
    expect(p.refs.map((r) => [r.name, r.y])).toEqual([
      ['goal: p99 ≤ 3 × floor p99 (4.77 ms)', 3 * 1.59],
      ['Redis floor p99 1.59 ms', 1.59],
      ['Redis floor p50 0.357 ms', 0.357],
    ])
    expect(chart('s1').footer[1]).toMatch(/commit bbbbbbb/)
  })

  it('S4: the p99 limit from the notes', () => {
    const p = line('s4')
    expect(xy(p, 'p99')).toEqual([
      [500, 9.57],
      [8000, 323.87],
    ])
    expect(p.refs.map((r) => r.y)).toEqual([50])
  })

  it('S3: RSS per socket before and after GC, bare uWS floor and goal', () => {
    const p = line('s3')
    expect(xy(p, 'RSS / socket, 3 s after the joins')).toEqual([
      [10000, 6.87],
      [19000, 5.49],
    ])
    expect(xy(p, 'after a full GC')).toEqual([
      [10000, 2.34],
      [19000, 2.05],
    ])
    expect(p.refs.map((r) => [r.name, r.y])).toEqual([
      ['goal: bare + 2 KiB (2.57 KiB)', 0.57 + 2],
      ['bare uWebSockets.js 0.57 KiB', 0.57],
    ])
  })

  it('S5: tail lengths as categories, the typing tail detached at the right', () => {
    const [time, bytes] = [line('s5', 0), line('s5', 1)]
    expect(time.categories).toEqual(['0', '1k', 'typing tail (10k)'])
    expect(time.series.find((s) => s.name === 'join p50')?.points).toEqual([
      { x: 0, y: 14.06, detached: false },
      { x: 1, y: 48.43, detached: false },
      { x: 2, y: 22.5, detached: true },
    ])
    expect(xy(bytes, 'sync step 2 (sent)')).toEqual([
      [0, 100],
      [1, 200],
      [2, 10],
    ])
    expect(xy(bytes, 'merged, not compacted (before)')).toEqual([
      [0, 100],
      [1, 300],
      [2, 500],
    ])
    expect(bytes.series.map((s) => s.name)).toContain('Y.Doc (encodeStateAsUpdate)')
  })

  it('S5: an older section without the byte columns still gives the join time', () => {
    const old = fixture.replace(
      /\| document \|[^]*?\n\n/,
      [
        '| document | join p50 ms | join p99 ms |',
        '| --- | --- | --- |',
        '| 315 KiB stored + 0 stream entries | 14.06 | 215.73 |',
        '| 315 KiB stored + 10000 stream entries | 138.75 | 258.35 |',
        '',
        '',
      ].join('\n'),
    )
    const s5 = chartsFromMarkdown(old).find((c) => c.name === 's5')!
    expect(s5.panels).toHaveLength(1)
    const p = s5.panels[0] as LinePanel
    expect(p.categories).toEqual(['0', '10k'])
    expect(xy(p, 'join p50')).toEqual([
      [0, 14.06],
      [1, 138.75],
    ])
    expect(p.series.map((s) => s.name)).toEqual(['join p50'])
  })

  it('S6: documents/s per backend and worker count, one panel per workload', () => {
    const panels = chart('s6').panels as BarPanel[]
    expect(panels.map((p) => p.heading)).toEqual(['1000 small docs', '10 large docs (5 MiB)'])
    expect(panels[0]!.groups).toEqual(['fs · 1 worker', 'fs · 2 workers'])
    expect(panels[0]!.series.map((s) => [s.name, s.values])).toEqual([
      ['docs/s, all workers', [282, 252]],
      ['docs/s per worker', [282, 126]],
      ['in-process floor: merge + store', [394, 394]],
      ['in-process floor + archive', [228, 228]],
    ])
    expect(panels[1]!.groups).toEqual(['fs · 1 worker'])
  })

  it('S6: a panel of docs/s per worker by backend and worker settings (group commit)', () => {
    const withBackends = `${fixture}
**Group commit per backend** (1000 small docs, 1 worker).

| storage | settings | docs/s per worker | durable p95 ms |
| --- | --- | --- | --- |
| fs | before | 220 | 650 |
| fs | defaults | 900 | 640 |
| Postgres | before | 388 | 677 |
| Postgres | defaults | 1100 | 646 |
`
    const s6 = chartsFromMarkdown(withBackends).find((c) => c.name === 's6')
    const panel = s6?.panels.at(-1) as BarPanel
    expect(panel.heading).toBe('group commit per backend: small docs, 1 worker')
    expect(panel.groups).toEqual(['fs', 'Postgres'])
    expect(panel.series.map((x) => [x.name, x.values])).toEqual([
      ['before', [220, 388]],
      ['defaults', [900, 1100]],
    ])
  })

  it('skips scenarios without a section or without the columns it needs', () => {
    const names = chartsFromMarkdown(fixture.replaceAll('| updates/s |', '| rate |')).map(
      (c) => c.name,
    )
    expect(names).toEqual(['s3', 's4', 's5', 's6'])
    expect(chartsFromMarkdown('# nothing here\n')).toEqual([])
  })
})

describe('SVG', () => {
  it('prints the title, legend, axis labels, source line and every point', () => {
    const svg = renderChart(chart('s1'))
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="720"')).toBe(true)
    expect(svg).toContain('>S1 — Fan-out latency: 1 writer, 3 readers, 2 nodes</text>')
    for (const label of [
      '>p50<',
      '>p99<',
      '>Redis floor p99 1.59 ms<',
      '>offered updates/s (log scale)<',
    ])
      expect(svg).toContain(label)
    expect(svg).toContain('delivery latency, ms</text>')
    expect(svg).toContain('commit bbbbbbb')
    for (const value of ['1.77', '2.34', '6.97', '4.41']) expect(svg).toContain(`>${value}</text>`)
    // One marker per point (2 series × 2 points) and two per series in the legend.
    expect(svg.match(/<circle /g)).toHaveLength(2 + 1)
    expect(svg.match(/<polyline /g)).toHaveLength(2)
    expect(svg).not.toMatch(/<script|@import|url\(/)
  })

  it('draws the S5 typing tail as a hollow point off the line', () => {
    const svg = renderChart(chart('s5'))
    expect(svg).toContain('>typing tail (10k)</text>')
    expect(svg).toContain('>hollow: typing tail, nothing stored</text>')
    expect(svg).toMatch(/<circle [^>]*fill="#ffffff" stroke=/)
  })

  it('draws one bar per value with its number', () => {
    const svg = renderChart(chart('s6'))
    expect(
      svg.match(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="[^"]+"><title>/g),
    ).toHaveLength(4 * 3)
    expect(svg).toContain('>6.64</text>')
    expect(svg).toContain('<title>fs · 2 workers: docs/s per worker 126</title>')
  })

  it('is deterministic', () => {
    expect(chartsFromMarkdown(fixture).map(renderChart)).toEqual(charts.map(renderChart))
  })

  it('formats values as the tables do', () => {
    expect([0.357, 1.5, 4.77, 10.97, 323.87, 7, 485593].map(formatValue)).toEqual([
      '0.357',
      '1.5',
      '4.77',
      '10.97',
      '324',
      '7',
      '485 593',
    ])
  })
})

describe('writeBenchCharts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-charts-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('draws the charts of the real docs/benchmarks.md', () => {
    const { written } = writeBenchCharts({
      markdownPath: join(repoRoot, 'docs/benchmarks.md'),
      outDir: dir,
    })
    expect(written.map((f) => basename(f))).toEqual([
      'bench-s1.svg',
      'bench-s3.svg',
      'bench-s4.svg',
      'bench-s5.svg',
      'bench-s6.svg',
    ])
    for (const file of written) {
      const svg = readFileSync(file, 'utf8')
      expect(svg).toMatch(/^<svg [^>]*width="720"/)
      expect(svg).toMatch(/ · commit \w+/)
      expect(svg).not.toContain('NaN')
    }
  })
})
