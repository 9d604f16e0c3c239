import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { repoPath } from './repo.js'

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary'

/** A series name as it appears in PromQL, and the metric family it belongs to. */
export interface SeriesInfo {
  readonly family: string
  readonly type: MetricType
  /** `_bucket`, `_sum`, `_count` of a histogram or summary; '' for the family itself. */
  readonly suffix: string
}

const CLASS_TYPES: Record<string, MetricType> = {
  Counter: 'counter',
  Gauge: 'gauge',
  Histogram: 'histogram',
  Summary: 'summary',
}

/**
 * The `streambed_*` metric families, read from `libs/<pkg>/src/metrics.ts` (the authoritative
 * definitions): `new Counter({ name: 'streambed_…'`.
 */
export const streambedMetricFamilies = (): Map<string, MetricType> => {
  const families = new Map<string, MetricType>()
  for (const lib of readdirSync(repoPath('libs'))) {
    const file = repoPath('libs', lib, 'src', 'metrics.ts')
    if (!existsSync(file)) continue
    const source = readFileSync(file, 'utf8')
    for (const m of source.matchAll(
      /new (Counter|Gauge|Histogram|Summary)\(\{\s*name: '([^']+)'/g,
    )) {
      families.set(m[2]!, CLASS_TYPES[m[1]!]!)
    }
  }
  return families
}

/** The process metrics every Streambed process exports (prom-client's default metrics). */
export const defaultMetricFamilies = async (): Promise<Map<string, MetricType>> => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const metrics = await registry.getMetricsAsJSON()
  registry.clear()
  return new Map(metrics.map((m) => [m.name, String(m.type) as MetricType]))
}

/** Every series name PromQL may use for these families (histograms: `_bucket`, `_sum`, `_count`). */
export const seriesNames = (families: ReadonlyMap<string, MetricType>): Map<string, SeriesInfo> => {
  const series = new Map<string, SeriesInfo>()
  for (const [family, type] of families) {
    series.set(family, { family, type, suffix: '' })
    const suffixes =
      type === 'histogram'
        ? ['_bucket', '_sum', '_count']
        : type === 'summary'
          ? ['_sum', '_count']
          : []
    for (const suffix of suffixes) series.set(family + suffix, { family, type, suffix })
  }
  return series
}

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
])

/**
 * The metric names a PromQL expression selects. Strings, label matchers `{…}`, ranges `[…]` and
 * grouping clauses `by (…)` are removed first; what remains that is an identifier and not a
 * function call or keyword is a metric name. Grafana variables (`$namespace`, `$__rate_interval`)
 * only occur inside the removed parts.
 */
export const metricsInPromQL = (expr: string): string[] => {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names = new Set<string>()
  for (const m of stripped.matchAll(/(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    const [, name, call] = m
    if (call !== undefined || KEYWORDS.has(name!.toLowerCase())) continue
    names.add(name!)
  }
  return [...names]
}

/** Series passed straight to `rate`, `irate`, `increase` or `resets`: these need counters. */
export const counterFunctionArguments = (expr: string): string[] =>
  [...expr.matchAll(/\b(?:rate|irate|increase|resets)\(\s*([A-Za-z_:][A-Za-z0-9_:]*)/g)].map(
    (m) => m[1]!,
  )
