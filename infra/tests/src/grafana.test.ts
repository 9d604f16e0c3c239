import { beforeAll, describe, expect, it } from 'vitest'
import {
  type SeriesInfo,
  counterFunctionArguments,
  defaultMetricFamilies,
  metricsInPromQL,
  seriesNames,
  streambedMetricFamilies,
} from './metric-names.js'
import { readRepoFile } from './repo.js'

const DASHBOARD = 'infra/grafana/streambed.json'

interface Target {
  refId: string
  expr: string
  datasource?: { type?: string; uid?: string }
}
interface Panel {
  id: number
  type: string
  title: string
  datasource?: { type?: string; uid?: string }
  gridPos: { h: number; w: number; x: number; y: number }
  targets?: Target[]
  panels?: Panel[]
}
interface Variable {
  name: string
  type: string
  query: unknown
  datasource?: { uid?: string }
}
interface Dashboard {
  title: string
  uid: string
  panels: Panel[]
  templating: { list: Variable[] }
}

const DATASOURCE_UID = '${datasource}'

describe('infra/grafana/streambed.json', () => {
  const text = readRepoFile(DASHBOARD)
  let dashboard: Dashboard
  let panels: Panel[]
  let known: Map<string, SeriesInfo>
  let families: Map<string, string>

  beforeAll(async () => {
    dashboard = JSON.parse(text) as Dashboard
    panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])])
    const streambed = streambedMetricFamilies()
    families = streambed
    known = seriesNames(new Map([...streambed, ...(await defaultMetricFamilies())]))
  })

  it('is a dashboard with a Prometheus data source variable', () => {
    expect(dashboard.uid).toBe('streambed')
    const ds = dashboard.templating.list.find((v) => v.name === 'datasource')
    expect(ds?.type).toBe('datasource')
    expect(ds?.query).toBe('prometheus')
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      expect(v.datasource?.uid, v.name).toBe(DATASOURCE_UID)
      const q = typeof v.query === 'string' ? v.query : (v.query as { query: string }).query
      const metric = /^label_values\(([a-z_:][a-z0-9_:]*),/.exec(q)?.[1]
      expect(metric && known.has(metric), `${v.name}: ${q}`).toBe(true)
    }
  })

  it('has unique panel ids and panels that do not overlap', () => {
    const ids = panels.map((p) => p.id)
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true)
    expect(new Set(ids).size).toBe(ids.length)
    const top = dashboard.panels
    for (const [i, a] of top.entries()) {
      expect(a.gridPos.x + a.gridPos.w, a.title).toBeLessThanOrEqual(24)
      for (const b of top.slice(i + 1)) {
        const apart =
          a.gridPos.x + a.gridPos.w <= b.gridPos.x ||
          b.gridPos.x + b.gridPos.w <= a.gridPos.x ||
          a.gridPos.y + a.gridPos.h <= b.gridPos.y ||
          b.gridPos.y + b.gridPos.h <= a.gridPos.y
        expect(apart, `${a.title} overlaps ${b.title}`).toBe(true)
      }
    }
  })

  it('queries the chosen data source with metrics the processes export', () => {
    for (const p of panels.filter((x) => x.type !== 'row')) {
      expect(p.datasource?.uid, p.title).toBe(DATASOURCE_UID)
      expect(p.targets?.length, p.title).toBeGreaterThan(0)
      for (const t of p.targets ?? []) {
        expect(t.datasource?.uid ?? DATASOURCE_UID, p.title).toBe(DATASOURCE_UID)
        const used = metricsInPromQL(t.expr)
        expect(used.length, `${p.title} ${t.refId}`).toBeGreaterThan(0)
        for (const name of used) expect(known.has(name), `${p.title}: ${name}`).toBe(true)
        for (const name of counterFunctionArguments(t.expr)) {
          const info = known.get(name)
          const counting = info?.type === 'counter' || (info?.suffix ?? '') !== ''
          expect(counting, `${p.title}: rate of ${name} (${info?.type})`).toBe(true)
        }
      }
    }
  })

  it('shows every streambed_* metric', () => {
    const shown = new Set(
      panels
        .flatMap((p) => p.targets ?? [])
        .flatMap((t) => metricsInPromQL(t.expr))
        .map((name) => known.get(name)?.family),
    )
    const missing = [...families.keys()].filter((f) => !shown.has(f))
    expect(missing, 'metrics without a panel').toEqual([])
  })
})
