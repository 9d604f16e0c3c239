/**
 * Charts of the recorded benchmark numbers (issue 12, item 4). Reads docs/benchmarks.md, takes
 * the last recorded section of each charted scenario and draws docs/images/bench-<name>.svg from
 * its tables and notes, so a chart cannot drift from the table it shows.
 *
 * The SVG is written by hand (a line chart and a bar chart, no dependency, no fonts or scripts)
 * and is deterministic: the same markdown gives the same bytes. Only `writeBenchCharts` does I/O.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { repoRoot } from './stats.js'

// ---------------------------------------------------------------------------------------------
// Parsing docs/benchmarks.md

export interface MdTable {
  /** The nearest text line above the table (e.g. "**Throughput**: …"), or ''. */
  caption: string
  columns: string[]
  rows: string[][]
}

export interface Section {
  /** "S1" in "### S1 — Fan-out latency: …". */
  name: string
  /** The whole heading after "### ". */
  heading: string
  /** "2026-11-23T13:15:37.546Z · commit 33c2e00 · …", as `record()` writes it. */
  meta: string
  command: string
  tables: MdTable[]
  /** Every other text line of the section, list markers removed. */
  notes: string[]
}

const cells = (line: string): string[] =>
  line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((c) => c.trim())

/** Every `### ` section under "## Results" (the whole file if there is no such heading). */
export const parseSections = (markdown: string): Section[] => {
  const lines = markdown.split('\n')
  const results = lines.findIndex((l) => /^##\s+Results\s*$/.test(l))
  const sections: Section[] = []
  let current: Section | undefined
  let tableLines: string[] = []
  let caption = ''
  const flush = () => {
    if (current && tableLines.length >= 2) {
      const [head = '', , ...body] = tableLines
      current.tables.push({ caption, columns: cells(head), rows: body.map(cells) })
      caption = ''
    }
    tableLines = []
  }
  for (const line of lines.slice(results >= 0 ? results + 1 : 0)) {
    const heading = /^###\s+(.+?)\s*$/.exec(line)
    if (heading) {
      flush()
      const text = heading[1] as string
      const name = (text.split(' — ')[0] as string).trim()
      current = { name, heading: text, meta: '', command: '', tables: [], notes: [] }
      sections.push(current)
      caption = ''
      continue
    }
    if (/^##?\s/.test(line)) {
      flush()
      current = undefined
      continue
    }
    if (!current) continue
    if (line.trimStart().startsWith('|')) {
      tableLines.push(line)
      continue
    }
    flush()
    const text = line.trim()
    if (!text) continue
    const command = /^Command: `(.*)`$/.exec(text)
    if (!current.meta && text.includes(' · commit ')) current.meta = text
    else if (command && !current.command) current.command = command[1] as string
    else {
      current.notes.push(text.replace(/^[-*]\s+/, ''))
      caption = text
    }
  }
  flush()
  return sections
}

/** The last section recorded for each scenario name (upper case: "S1", "CORE", …). */
export const lastSections = (sections: readonly Section[]): Map<string, Section> => {
  const out = new Map<string, Section>()
  for (const s of sections) out.set(s.name.toUpperCase(), s)
  return out
}

/** The leading number of a cell ("9000/9000" → 9000, "6.30 ✗" → 6.3, "—" → NaN). */
export const leadingNumber = (cell: string | undefined): number => {
  const m = /^\s*(-?\d+(?:\.\d+)?)/.exec(cell ?? '')
  return m ? Number(m[1]) : NaN
}

const columnIndex = (t: MdTable, name: string): number =>
  t.columns.findIndex((c) => c.toLowerCase() === name.toLowerCase())

/** The first table of `s` that has every one of `columns`. */
const findTable = (s: Section, columns: readonly string[]): MdTable | undefined =>
  s.tables.find((t) => columns.every((c) => columnIndex(t, c) >= 0))

/** The cells of column `name` (undefined when the table lacks it). */
const column = (t: MdTable, name: string): string[] | undefined => {
  const i = columnIndex(t, name)
  return i < 0 ? undefined : t.rows.map((r) => r[i] ?? '')
}

const numbers = (t: MdTable, name: string): number[] | undefined =>
  column(t, name)?.map(leadingNumber)

// ---------------------------------------------------------------------------------------------
// Chart model

export interface Point {
  x: number
  y: number
  /** Drawn hollow and not joined to the series line (S5's typing tail). */
  detached?: boolean
}

export interface Series {
  name: string
  color: string
  points: Point[]
  /** Where each point's value is printed. */
  labels: 'above' | 'below' | 'none'
}

export interface RefLine {
  name: string
  y: number
  color: string
  dash: string
}

export interface LinePanel {
  kind: 'line'
  heading?: string
  xLabel: string
  yLabel: string
  /** 'category': point x is an index into `categories`. */
  xScale: 'log' | 'linear' | 'category'
  categories?: string[]
  yScale: 'linear' | 'log'
  series: Series[]
  refs: RefLine[]
  /** Legend text for hollow (detached) points, when there are any. */
  detachedNote?: string
  height: number
}

export interface BarSeries {
  name: string
  color: string
  /** One value per group; NaN: no bar. */
  values: number[]
}

export interface BarPanel {
  kind: 'bar'
  heading?: string
  xLabel: string
  yLabel: string
  groups: string[]
  series: BarSeries[]
  refs: RefLine[]
  height: number
}

export type Panel = LinePanel | BarPanel

export interface Chart {
  /** File name part: bench-<name>.svg. */
  name: string
  title: string
  panels: Panel[]
  /** Small print at the bottom: where the numbers come from. */
  footer: string[]
}

const colors = {
  blue: '#1c5fb8',
  orange: '#d9480f',
  green: '#2b8a3e',
  purple: '#7048e8',
  grey: '#495057',
  red: '#c92a2a',
}
const refDash = '7 4'
const goalDash = '2 3'

const footerOf = (s: Section): string[] => [
  `Data: docs/benchmarks.md, last “${s.name}” section${s.command ? ` (\`${s.command}\`)` : ''}`,
  s.meta,
]

const points = (xs: readonly number[], ys: readonly number[] | undefined): Point[] =>
  ys
    ? xs
        .map((x, i) => ({ x, y: ys[i] ?? NaN }))
        .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
    : []

// ---------------------------------------------------------------------------------------------
// The charts, one per scenario

/** The p99 and p50 delivery latency of a latency-by-rate table (S1, S4) against `xs`. */
const latencySeries = (t: MdTable, xs: number[]): Series[] => [
  { name: 'p99', color: colors.orange, points: points(xs, numbers(t, 'p99 ms')), labels: 'above' },
  { name: 'p50', color: colors.blue, points: points(xs, numbers(t, 'p50 ms')), labels: 'below' },
]

/** S1: delivery latency against offered rate, with the Redis floor (and goal) as lines. */
export const s1Chart = (s: Section): Chart | undefined => {
  const t = findTable(s, ['updates/s', 'p50 ms', 'p99 ms'])
  if (!t) return undefined
  const xs = numbers(t, 'updates/s') ?? []
  const refs: RefLine[] = []
  const notes = s.notes.join('\n')
  const floor = /Redis floor: p50 ([\d.]+) ms, p99 ([\d.]+) ms/.exec(notes)
  if (floor) {
    const [p50, p99] = [Number(floor[1]), Number(floor[2])]
    const goal = /p99 ≤ ([\d.]+) × floor p99/.exec(notes)
    if (goal) {
      const k = Number(goal[1])
      refs.push({
        name: `goal: p99 ≤ ${k} × floor p99 (${formatValue(k * p99)} ms)`,
        y: k * p99,
        color: colors.red,
        dash: goalDash,
      })
    }
    refs.push({ name: `Redis floor p99 ${p99} ms`, y: p99, color: colors.orange, dash: refDash })
    refs.push({ name: `Redis floor p50 ${p50} ms`, y: p50, color: colors.blue, dash: refDash })
  }
  return {
    name: 's1',
    title: s.heading,
    footer: footerOf(s),
    panels: [
      {
        kind: 'line',
        xLabel: 'offered updates/s (log scale)',
        yLabel: 'delivery latency, ms',
        xScale: 'log',
        yScale: 'linear',
        series: latencySeries(t, xs),
        refs,
        height: 280,
      },
    ],
  }
}

/** S4: latency against offered rate up to the ceiling, with the p99 limit. */
export const s4Chart = (s: Section): Chart | undefined => {
  const t = findTable(s, ['offered updates/s', 'p50 ms', 'p99 ms'])
  if (!t) return undefined
  const xs = numbers(t, 'offered updates/s') ?? []
  const limit = /p99 > ([\d.]+) ms/.exec(s.notes.join('\n'))
  const limitMs = limit ? Number(limit[1]) : 50
  return {
    name: 's4',
    title: s.heading,
    footer: footerOf(s),
    panels: [
      {
        kind: 'line',
        xLabel: 'offered updates/s (log scale)',
        yLabel: 'delivery latency, ms (log scale)',
        xScale: 'log',
        yScale: 'log',
        series: latencySeries(t, xs),
        refs: [{ name: `limit: p99 ${limitMs} ms`, y: limitMs, color: colors.red, dash: goalDash }],
        height: 280,
      },
    ],
  }
}

/** S3: node RSS per idle socket against socket count, with the bare uWebSockets.js floor. */
export const s3Chart = (s: Section): Chart | undefined => {
  const t = findTable(s, ['sockets', 'RSS / socket KiB'])
  if (!t) return undefined
  const xs = numbers(t, 'sockets') ?? []
  const bare = (numbers(t, 'bare uWS KiB') ?? []).find(Number.isFinite)
  const refs: RefLine[] = []
  if (bare !== undefined) {
    const goalColumn = t.columns.find((c) => /goal ≤ [\d.]+/.test(c)) ?? ''
    const goal = /goal ≤ ([\d.]+)/.exec(goalColumn)
    if (goal) {
      const above = Number(goal[1])
      refs.push({
        name: `goal: bare + ${above} KiB (${formatValue(bare + above)} KiB)`,
        y: bare + above,
        color: colors.red,
        dash: goalDash,
      })
    }
    refs.push({
      name: `bare uWebSockets.js ${bare} KiB`,
      y: bare,
      color: colors.grey,
      dash: refDash,
    })
  }
  return {
    name: 's3',
    title: s.heading,
    footer: footerOf(s),
    panels: [
      {
        kind: 'line',
        xLabel: 'idle sockets on one node',
        yLabel: 'node RSS per socket, KiB',
        xScale: 'linear',
        yScale: 'linear',
        series: [
          {
            name: 'RSS / socket, 3 s after the joins',
            color: colors.orange,
            points: points(xs, numbers(t, 'RSS / socket KiB')),
            labels: 'above',
          },
          {
            name: 'after a full GC',
            color: colors.blue,
            points: points(xs, numbers(t, 'after full GC: RSS / socket KiB')),
            labels: 'above',
          },
        ],
        refs,
        height: 260,
      },
    ],
  }
}

const withData = (series: Series[]): Series[] => series.filter((s) => s.points.length > 0)

const compactCount = (n: number): string =>
  n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n)

/** S5: join time and answer size against the stream tail on top of a stored document. */
export const s5Chart = (s: Section): Chart | undefined => {
  const t = findTable(s, ['document', 'join p50 ms'])
  if (!t) return undefined
  const docs = column(t, 'document') ?? []
  // Tail rows in table order, then typing-tail rows at the right, off the line.
  const order = docs
    .map((label, row) => ({ label, row, typing: /typing/i.test(label) }))
    .sort((a, b) => Number(a.typing) - Number(b.typing))
  const categories = order.map(({ label, typing }) => {
    const tail = /(\d+)\s+[\w-]*\s*entries/.exec(label)
    const n = tail ? compactCount(Number(tail[1])) : label
    return typing ? `typing tail (${n})` : n
  })
  const seriesOf = (col: string, scale = 1): Point[] => {
    const values = numbers(t, col)
    if (!values) return []
    return order
      .map(({ row, typing }, x) => ({ x, y: (values[row] ?? NaN) * scale, detached: typing }))
      .filter((p) => Number.isFinite(p.y))
  }
  const typing = order.some((o) => o.typing)
  const stored = /(\d+ KiB) stored/.exec(docs[0] ?? '')
  const xLabel = `stream tail, entries${stored ? ` (on top of ${stored[1]} stored)` : ''}`
  const detachedNote = typing ? 'hollow: typing tail, nothing stored' : undefined
  const kib = 1 / 1024
  const bytes = withData([
    {
      name: 'sync step 2 (sent)',
      color: colors.blue,
      points: seriesOf('sync step 2 bytes', kib),
      labels: 'above',
    },
    {
      name: 'Y.Doc (encodeStateAsUpdate)',
      color: colors.green,
      points: seriesOf('Y.Doc bytes', kib),
      labels: 'none',
    },
    {
      name: 'merged, not compacted (before)',
      color: colors.orange,
      points: seriesOf('merged, not compacted (before)', kib),
      labels: 'none',
    },
  ])
  const panels: Panel[] = [
    {
      kind: 'line',
      heading: 'Join time',
      xLabel,
      yLabel: 'ms',
      xScale: 'category',
      categories,
      yScale: 'linear',
      series: withData([
        {
          name: 'join p50',
          color: colors.orange,
          points: seriesOf('join p50 ms'),
          labels: 'above',
        },
        {
          name: 'in-process floor p50',
          color: colors.grey,
          points: seriesOf('in-process floor p50 ms'),
          labels: 'none',
        },
      ]),
      refs: [],
      detachedNote,
      height: 220,
    },
  ]
  if (bytes.length > 0)
    panels.push({
      kind: 'line',
      heading: 'Bytes of the join answer',
      xLabel,
      yLabel: 'KiB',
      xScale: 'category',
      categories,
      yScale: 'linear',
      series: bytes,
      refs: [],
      detachedNote,
      height: 220,
    })
  return { name: 's5', title: s.heading, footer: footerOf(s), panels }
}

/** S6: compaction documents/s, one panel per workload, one bar group per backend and workers. */
export const s6Chart = (s: Section): Chart | undefined => {
  const t = findTable(s, ['workload', 'workers', 'docs/s'])
  if (!t) return undefined
  const workloads = column(t, 'workload') ?? []
  const workers = column(t, 'workers') ?? []
  const backends = column(t, 'backend') ?? column(t, 'storage')
  const fsNote = /(\w+) storage on the local disk/.exec(s.notes.join('\n'))
  const bars: [string, string, string][] = [
    ['docs/s', 'docs/s, all workers', colors.blue],
    ['docs/s per worker', 'docs/s per worker', colors.green],
    ['floor docs/s (merge + store)', 'in-process floor: merge + store', colors.grey],
    ['floor docs/s (+ archive)', 'in-process floor + archive', '#adb5bd'],
  ]
  const panels: BarPanel[] = []
  for (const workload of [...new Set(workloads)]) {
    const rows = workloads.flatMap((w, i) => (w === workload ? [i] : []))
    const groups = rows.map((i) => {
      const w = leadingNumber(workers[i])
      const backend = backends?.[i] ?? fsNote?.[1] ?? ''
      return `${backend ? `${backend} · ` : ''}${w} worker${w === 1 ? '' : 's'}`
    })
    panels.push({
      kind: 'bar',
      heading: workload,
      xLabel: 'backend · workers',
      yLabel: 'documents/s',
      groups,
      series: bars.flatMap(([col, name, color]) => {
        const values = numbers(t, col)
        return values ? [{ name, color, values: rows.map((i) => values[i] ?? NaN) }] : []
      }),
      refs: [],
      height: 200,
    })
  }
  const perBackend = findTable(s, ['storage', 'settings', 'docs/s per worker'])
  if (perBackend) {
    const storages = column(perBackend, 'storage') ?? []
    const settings = column(perBackend, 'settings') ?? []
    const rate = numbers(perBackend, 'docs/s per worker') ?? []
    const groups = [...new Set(storages)]
    const palette = [colors.grey, colors.green, colors.blue, colors.orange]
    panels.push({
      kind: 'bar',
      heading: 'group commit per backend: small docs, 1 worker',
      xLabel: 'backend',
      yLabel: 'documents/s per worker',
      groups,
      series: [...new Set(settings)].map((setting, k) => ({
        name: setting,
        color: palette[k % palette.length] ?? colors.grey,
        values: groups.map((g) => {
          const i = storages.findIndex((st, j) => st === g && settings[j] === setting)
          return i < 0 ? NaN : (rate[i] ?? NaN)
        }),
      })),
      refs: [],
      height: 200,
    })
  }
  if (panels.length === 0) return undefined
  return { name: 's6', title: s.heading, footer: footerOf(s), panels }
}

const builders: Record<string, (s: Section) => Chart | undefined> = {
  S1: s1Chart,
  S3: s3Chart,
  S4: s4Chart,
  S5: s5Chart,
  S6: s6Chart,
}

/** The charts the markdown has data for, in scenario order. */
export const chartsFromMarkdown = (markdown: string): Chart[] => {
  const last = lastSections(parseSections(markdown))
  return Object.entries(builders).flatMap(([name, build]) => {
    const section = last.get(name)
    const chart = section && build(section)
    return chart && chart.panels.some(hasData) ? [chart] : []
  })
}

const hasData = (p: Panel): boolean =>
  p.kind === 'line'
    ? p.series.some((s) => s.points.length > 0)
    : p.series.some((s) => s.values.some(Number.isFinite))

// ---------------------------------------------------------------------------------------------
// SVG rendering

const WIDTH = 720
const LEFT = 76
const RIGHT = 28
const PLOT_W = WIDTH - LEFT - RIGHT
const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"

/** Coordinates to one decimal, so the output does not depend on float noise. */
const c = (n: number): string => String(Math.round(n * 10) / 10)

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** Rough width of `s` in the sans-serif font at `size` px (no font metrics without a browser). */
const textWidth = (s: string, size: number): number => s.length * size * 0.56

const wrap = (s: string, size: number, width: number): string[] => {
  const lines: string[] = []
  let line = ''
  for (const word of s.split(' ')) {
    const next = line ? `${line} ${word}` : word
    if (line && textWidth(next, size) > width) {
      lines.push(line)
      line = word
    } else line = next
  }
  if (line) lines.push(line)
  return lines
}

const text = (
  x: number,
  y: number,
  s: string,
  attrs: {
    size?: number
    anchor?: 'start' | 'middle' | 'end'
    weight?: string
    fill?: string
  } = {},
): string =>
  `<text x="${c(x)}" y="${c(y)}" font-size="${attrs.size ?? 12}"` +
  `${attrs.anchor && attrs.anchor !== 'start' ? ` text-anchor="${attrs.anchor}"` : ''}` +
  `${attrs.weight ? ` font-weight="${attrs.weight}"` : ''}` +
  ` fill="${attrs.fill ?? '#212529'}">${esc(s)}</text>`

/** A value as printed on a chart: as the tables print it (2 decimals, 3 below 1), whole from 100 up. */
export const formatValue = (v: number): string => {
  const a = Math.abs(v)
  const fixed = v.toFixed(a >= 100 ? 0 : a >= 1 ? 2 : 3)
  const trimmed = fixed.includes('.') ? fixed.replace(/0+$/, '').replace(/\.$/, '') : fixed
  return trimmed.replace(/\B(?=(\d{3})+(?!\d))/g, ' ')
}

const formatTick = (v: number, step: number): string => {
  let digits = 0
  while (digits < 6 && Math.abs(step * 10 ** digits - Math.round(step * 10 ** digits)) > 1e-9)
    digits++
  return v.toFixed(digits)
}

const niceStep = (raw: number): number => {
  const p = 10 ** Math.floor(Math.log10(raw))
  const f = raw / p
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p
}

interface Axis {
  at: (v: number) => number
  ticks: { v: number; label: string }[]
}

/** A value axis from `from` (pixel of the lowest value) to `to`, holding every value given. */
const valueAxis = (kind: 'linear' | 'log', values: number[], from: number, to: number): Axis => {
  if (kind === 'log') {
    const positive = values.filter((v) => v > 0)
    if (positive.length === 0) positive.push(1)
    const e0 = Math.floor(Math.log10(Math.min(...positive) * 0.95))
    const decades = Math.ceil(Math.log10(Math.max(...positive) * 1.4)) - e0
    const [lo, hi] = [10 ** e0, 10 ** (e0 + decades)]
    const ticks: { v: number; label: string }[] = []
    for (let d = 0; d <= decades; d++)
      for (const m of decades <= 4 ? [1, 2, 5] : [1]) {
        // toPrecision: 2 × 0.1 is 0.2, not 0.20000000000000004.
        const v = Number((m * 10 ** (e0 + d)).toPrecision(12))
        if (v <= hi * 1.0001) ticks.push({ v, label: formatTick(v, v) })
      }
    const span = Math.log10(hi / lo)
    return { at: (v) => from + ((Math.log10(v / lo) / span) * (to - from) || 0), ticks }
  }
  const max = Math.max(...values, 0) * 1.15 || 1
  const step = niceStep(max / 5)
  const top = Math.ceil(max / step - 1e-9) * step
  const ticks: { v: number; label: string }[] = []
  for (let i = 0; i * step <= top + step / 1e6; i++)
    ticks.push({ v: i * step, label: formatTick(i * step, step) })
  return { at: (v) => from + (v / top) * (to - from), ticks }
}

/** The x axis of a line panel: ticks at the measured values (or categories). */
const xAxis = (p: LinePanel, left: number, right: number): Axis => {
  const xs = [...new Set(p.series.flatMap((s) => s.points.map((q) => q.x)))].sort((a, b) => a - b)
  if (p.xScale === 'category') {
    const n = Math.max(1, p.categories?.length ?? 0)
    const w = (right - left) / n
    return {
      at: (i) => left + (i + 0.5) * w,
      ticks: (p.categories ?? []).map((label, v) => ({ v, label })),
    }
  }
  const ticks = xs.map((v) => ({ v, label: formatValue(v) }))
  if (p.xScale === 'log' && xs.length > 0 && (xs[0] as number) > 0) {
    const lo = Math.log10(xs[0] as number)
    const hi = Math.log10(xs[xs.length - 1] as number)
    const pad = (hi - lo) * 0.07 || 0.5
    const [a, b] = [lo - pad, hi + pad]
    return { at: (v) => left + ((Math.log10(v) - a) / (b - a)) * (right - left), ticks }
  }
  const max = (xs[xs.length - 1] ?? 1) * 1.08 || 1
  return { at: (v) => left + (v / max) * (right - left), ticks: [{ v: 0, label: '0' }, ...ticks] }
}

type Marker = 'circle' | 'square' | 'triangle'
const markers: Marker[] = ['circle', 'square', 'triangle']

const marker = (shape: Marker, x: number, y: number, color: string, hollow = false): string => {
  const paint = hollow
    ? `fill="#ffffff" stroke="${color}" stroke-width="2"`
    : `fill="${color}" stroke="#ffffff" stroke-width="1"`
  if (shape === 'square')
    return `<rect x="${c(x - 4)}" y="${c(y - 4)}" width="8" height="8" ${paint}/>`
  if (shape === 'triangle')
    return `<path d="M${c(x)} ${c(y - 5)}L${c(x + 5)} ${c(y + 4)}L${c(x - 5)} ${c(y + 4)}Z" ${paint}/>`
  return `<circle cx="${c(x)}" cy="${c(y)}" r="4.5" ${paint}/>`
}

interface LegendItem {
  label: string
  draw: (x: number, y: number) => string
}

/** Legend rows from `top`; returns the markup and the height used. */
const legend = (items: readonly LegendItem[], top: number): { svg: string[]; height: number } => {
  const svg: string[] = []
  let x = LEFT
  let y = top + 12
  for (const item of items) {
    const w = 30 + textWidth(item.label, 12) + 18
    if (x > LEFT && x + w > WIDTH - RIGHT) {
      x = LEFT
      y += 18
    }
    svg.push(item.draw(x, y - 4), text(x + 30, y, item.label))
    x += w
  }
  return { svg, height: items.length > 0 ? y - top + 8 : 0 }
}

const refItem = (r: RefLine): LegendItem => ({
  label: r.name,
  draw: (x, y) =>
    `<line x1="${c(x)}" y1="${c(y)}" x2="${c(x + 24)}" y2="${c(y)}" stroke="${r.color}" stroke-width="1.5" stroke-dasharray="${r.dash}"/>`,
})

const yGrid = (axis: Axis, plotTop: number, plotBottom: number): string[] =>
  axis.ticks
    .filter((t) => axis.at(t.v) >= plotTop - 0.5 && axis.at(t.v) <= plotBottom + 0.5)
    .flatMap((t) => [
      `<line x1="${LEFT}" y1="${c(axis.at(t.v))}" x2="${WIDTH - RIGHT}" y2="${c(axis.at(t.v))}" stroke="#e9ecef" stroke-width="1"/>`,
      text(LEFT - 8, axis.at(t.v) + 4, t.label, { size: 11, anchor: 'end', fill: '#495057' }),
    ])

const refLines = (refs: readonly RefLine[], axis: Axis): string[] =>
  refs.map(
    (r) =>
      `<line x1="${LEFT}" y1="${c(axis.at(r.y))}" x2="${WIDTH - RIGHT}" y2="${c(axis.at(r.y))}" stroke="${r.color}" stroke-width="1.5" stroke-dasharray="${r.dash}"><title>${esc(r.name)}</title></line>`,
  )

const frame = (p: Panel, plotTop: number, plotBottom: number): string[] => [
  `<line x1="${LEFT}" y1="${c(plotTop)}" x2="${LEFT}" y2="${c(plotBottom)}" stroke="#868e96" stroke-width="1"/>`,
  `<line x1="${LEFT}" y1="${c(plotBottom)}" x2="${WIDTH - RIGHT}" y2="${c(plotBottom)}" stroke="#868e96" stroke-width="1"/>`,
  text(LEFT + PLOT_W / 2, plotBottom + 38, p.xLabel, { anchor: 'middle', fill: '#343a40' }),
  `<text transform="translate(18 ${c((plotTop + plotBottom) / 2)}) rotate(-90)" font-size="12" text-anchor="middle" fill="#343a40">${esc(p.yLabel)}</text>`,
]

/** A panel's heading and legend; returns the markup and the top of the plot area. */
const panelHead = (
  p: Panel,
  top: number,
  items: LegendItem[],
): { svg: string[]; plotTop: number } => {
  const svg: string[] = []
  let y = top
  if (p.heading) {
    svg.push(text(LEFT, y + 14, p.heading, { size: 13, weight: 'bold' }))
    y += 22
  }
  const l = legend(items, y)
  svg.push(...l.svg)
  return { svg, plotTop: y + l.height + 14 }
}

const renderLine = (p: LinePanel, top: number): { svg: string[]; bottom: number } => {
  const items: LegendItem[] = p.series.map((s, i) => ({
    label: s.name,
    draw: (x, y) =>
      `<line x1="${c(x)}" y1="${c(y)}" x2="${c(x + 24)}" y2="${c(y)}" stroke="${s.color}" stroke-width="2"/>` +
      marker(markers[i % markers.length] as Marker, x + 12, y, s.color),
  }))
  items.push(...p.refs.map(refItem))
  const detached = p.series.some((s) => s.points.some((q) => q.detached))
  if (detached && p.detachedNote)
    items.push({
      label: p.detachedNote,
      draw: (x, y) => marker('circle', x + 12, y, colors.grey, true),
    })
  const head = panelHead(p, top, items)
  const { plotTop } = head
  const plotBottom = plotTop + p.height
  const values = [...p.series.flatMap((s) => s.points.map((q) => q.y)), ...p.refs.map((r) => r.y)]
  const y = valueAxis(p.yScale, values, plotBottom, plotTop)
  const x = xAxis(p, LEFT, WIDTH - RIGHT)
  const svg = [...head.svg, ...yGrid(y, plotTop, plotBottom)]
  for (const t of x.ticks)
    svg.push(
      `<line x1="${c(x.at(t.v))}" y1="${c(plotBottom)}" x2="${c(x.at(t.v))}" y2="${c(plotBottom + 4)}" stroke="#868e96" stroke-width="1"/>`,
      text(x.at(t.v), plotBottom + 18, t.label, { size: 11, anchor: 'middle', fill: '#495057' }),
    )
  svg.push(...refLines(p.refs, y), ...frame(p, plotTop, plotBottom))
  p.series.forEach((s, i) => {
    const joined = s.points.filter((q) => !q.detached)
    if (joined.length > 1)
      svg.push(
        `<polyline points="${joined.map((q) => `${c(x.at(q.x))},${c(y.at(q.y))}`).join(' ')}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"/>`,
      )
    for (const q of s.points) {
      const [px, py] = [x.at(q.x), y.at(q.y)]
      svg.push(marker(markers[i % markers.length] as Marker, px, py, s.color, q.detached))
      if (s.labels !== 'none')
        svg.push(
          text(px, s.labels === 'above' ? py - 9 : py + 18, formatValue(q.y), {
            size: 11,
            anchor: 'middle',
            fill: s.color,
          }),
        )
    }
  })
  return { svg, bottom: plotBottom + 48 }
}

const renderBar = (p: BarPanel, top: number): { svg: string[]; bottom: number } => {
  const items: LegendItem[] = p.series.map((s) => ({
    label: s.name,
    draw: (x, y) =>
      `<rect x="${c(x + 4)}" y="${c(y - 6)}" width="16" height="12" fill="${s.color}"/>`,
  }))
  items.push(...p.refs.map(refItem))
  const head = panelHead(p, top, items)
  const { plotTop } = head
  const plotBottom = plotTop + p.height
  const values = [
    ...p.series.flatMap((s) => s.values.filter(Number.isFinite)),
    ...p.refs.map((r) => r.y),
  ]
  const y = valueAxis('linear', values, plotBottom, plotTop)
  const svg = [...head.svg, ...yGrid(y, plotTop, plotBottom)]
  const groupW = PLOT_W / Math.max(1, p.groups.length)
  const barW = Math.min(56, (groupW * 0.8) / Math.max(1, p.series.length))
  p.groups.forEach((g, gi) => {
    const center = LEFT + (gi + 0.5) * groupW
    const start = center - (barW * p.series.length) / 2
    p.series.forEach((s, si) => {
      const v = s.values[gi] ?? NaN
      if (!Number.isFinite(v)) return
      const bx = start + si * barW
      const by = y.at(v)
      svg.push(
        `<rect x="${c(bx + 2)}" y="${c(by)}" width="${c(barW - 4)}" height="${c(plotBottom - by)}" fill="${s.color}"><title>${esc(`${g}: ${s.name} ${formatValue(v)}`)}</title></rect>`,
        text(bx + barW / 2, by - 5, formatValue(v), {
          size: 11,
          anchor: 'middle',
          fill: '#343a40',
        }),
      )
    })
    svg.push(text(center, plotBottom + 18, g, { size: 11, anchor: 'middle', fill: '#495057' }))
  })
  svg.push(...refLines(p.refs, y), ...frame(p, plotTop, plotBottom))
  return { svg, bottom: plotBottom + 48 }
}

/** The chart as a standalone SVG document (720 px wide). */
export const renderChart = (chart: Chart): string => {
  const body: string[] = []
  let y = 10
  for (const line of wrap(chart.title, 16, WIDTH - 32)) {
    y += 22
    body.push(text(16, y, line, { size: 16, weight: 'bold' }))
  }
  y += 12
  for (const panel of chart.panels) {
    const r = panel.kind === 'line' ? renderLine(panel, y) : renderBar(panel, y)
    body.push(...r.svg)
    y = r.bottom + 8
  }
  for (const line of chart.footer.flatMap((f) => wrap(f, 11, WIDTH - 32))) {
    y += 15
    body.push(text(16, y, line, { size: 11, fill: '#6c757d' }))
  }
  const height = Math.ceil(y + 14)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="${FONT}" role="img" aria-label="${esc(chart.title)}">`,
    `<title>${esc(chart.title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n')
}

/**
 * Reads the recorded results and writes one SVG per charted scenario into `outDir`.
 * Defaults: docs/benchmarks.md → docs/images/.
 */
export const writeBenchCharts = (
  opts: { markdownPath?: string; outDir?: string } = {},
): { written: string[] } => {
  const markdown = readFileSync(opts.markdownPath ?? join(repoRoot, 'docs/benchmarks.md'), 'utf8')
  const outDir = opts.outDir ?? join(repoRoot, 'docs/images')
  mkdirSync(outDir, { recursive: true })
  const written = chartsFromMarkdown(markdown).map((chart) => {
    const file = join(outDir, `bench-${chart.name}.svg`)
    writeFileSync(file, renderChart(chart))
    return file
  })
  return { written }
}
