import { existsSync } from 'node:fs'
import { beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import {
  type SeriesInfo,
  counterFunctionArguments,
  defaultMetricFamilies,
  metricsInPromQL,
  seriesNames,
  streambedMetricFamilies,
} from './metric-names.js'
import { headingAnchors } from './markdown.js'
import { ensurePromtool, runPromtool } from './promtool.js'
import { readRepoFile, repoPath } from './repo.js'

const RULES = 'infra/prometheus/alerts.yml'
const RULE_TESTS = 'infra/prometheus/alerts.test.yml'

/** Sections of docs/runbook.md the alerts link to (`docs/runbook.md#<anchor>`). */
const RUNBOOK_ANCHORS = new Set([
  'lost-redis',
  'lost-storage',
  'corrupted-document',
  'undo-an-edit',
  'queue-lag',
  'compaction-failing',
  'node-restarts',
  'slow-clients',
  'awareness-spoofing',
])

interface AlertRule {
  alert: string
  expr: string
  for?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

interface RuleTest {
  alert_rule_test?: { alertname: string; eval_time: string; exp_alerts?: unknown[] }[]
}

const rulesFile = parse(readRepoFile(RULES)) as { groups: { name: string; rules: AlertRule[] }[] }
const rules = rulesFile.groups.flatMap((g) => g.rules)
const ruleTests = parse(readRepoFile(RULE_TESTS)) as { rule_files: string[]; tests: RuleTest[] }

describe('infra/prometheus/alerts.yml', () => {
  let known: Map<string, SeriesInfo>
  beforeAll(async () => {
    known = seriesNames(new Map([...streambedMetricFamilies(), ...(await defaultMetricFamilies())]))
  })

  it('has alerts with unique names', () => {
    expect(rules.length).toBeGreaterThan(0)
    const names = rules.map((r) => r.alert)
    expect(names.every((n) => typeof n === 'string' && /^Streambed[A-Za-z]+$/.test(n))).toBe(true)
    expect(new Set(names).size).toBe(names.length)
  })

  it('gives every alert a for:, a severity, a summary, a description and a runbook link', () => {
    for (const r of rules) {
      expect(r.for, r.alert).toMatch(/^\d+[smh]$/)
      expect(['critical', 'warning'], r.alert).toContain(r.labels?.severity)
      expect(r.annotations?.summary, r.alert).toBeTruthy()
      expect(r.annotations?.description, r.alert).toBeTruthy()
      const link = /^docs\/runbook\.md#([a-z0-9-]+)$/.exec(r.annotations?.runbook_url ?? '')
      expect(link, `${r.alert} runbook_url`).not.toBeNull()
      expect(RUNBOOK_ANCHORS.has(link![1]!), `${r.alert}: #${link![1]}`).toBe(true)
    }
  })

  it.skipIf(!existsSync(repoPath('docs/runbook.md')))('links to sections the runbook has', () => {
    const anchors = headingAnchors(readRepoFile('docs/runbook.md'))
    for (const r of rules) {
      const anchor = r.annotations!.runbook_url!.split('#')[1]!
      expect(anchors.has(anchor), `${r.alert}: docs/runbook.md has no #${anchor}`).toBe(true)
    }
  })

  it('uses only metrics the processes export, and rate() only on counters', () => {
    for (const r of rules) {
      const used = metricsInPromQL(r.expr)
      expect(used.length, r.alert).toBeGreaterThan(0)
      for (const name of used) expect(known.has(name), `${r.alert}: ${name}`).toBe(true)
      for (const name of counterFunctionArguments(r.expr)) {
        const info = known.get(name)
        const counting = info?.type === 'counter' || (info?.suffix ?? '') !== ''
        expect(counting, `${r.alert}: rate/increase of ${name} (${info?.type})`).toBe(true)
      }
    }
  })

  it('has unit tests in which every alert fires, and does not fire', () => {
    expect(ruleTests.rule_files).toEqual(['alerts.yml'])
    const cases = ruleTests.tests.flatMap((t) => t.alert_rule_test ?? [])
    for (const r of rules) {
      const mine = cases.filter((c) => c.alertname === r.alert)
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${r.alert} never fires`,
      ).toBe(true)
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${r.alert} never stays quiet`,
      ).toBe(true)
    }
  })

  describe('promtool', () => {
    let promtool: string
    beforeAll(() => {
      promtool = ensurePromtool()
    }, 300_000)

    it('checks the rules', () => {
      const r = runPromtool(promtool, ['check', 'rules', RULES])
      expect(r.output).toContain(`SUCCESS: ${rules.length} rules found`)
      expect(r.status, r.output).toBe(0)
    })

    it('passes the unit tests', () => {
      const r = runPromtool(promtool, ['test', 'rules', RULE_TESTS])
      expect(r.status, r.output).toBe(0)
      expect(r.output).toContain('SUCCESS')
    })
  })
})

describe('metricsInPromQL', () => {
  it('finds the metrics of an expression and nothing else', () => {
    expect(
      metricsInPromQL(
        'histogram_quantile(0.99, sum by (namespace, le) (rate(streambed_append_seconds_bucket{code=~"a|b", namespace=~"$namespace"}[$__rate_interval]))) > 0.05',
      ),
    ).toEqual(['streambed_append_seconds_bucket'])
    expect(
      metricsInPromQL(
        'changes(process_start_time_seconds[30m]) >= 2 and on (instance, job) (streambed_connections or streambed_worker_active_tasks) offset 5m',
      ).sort(),
    ).toEqual([
      'process_start_time_seconds',
      'streambed_connections',
      'streambed_worker_active_tasks',
    ])
    expect(counterFunctionArguments('sum(rate(a_total[5m])) / increase(b_count[1h])')).toEqual([
      'a_total',
      'b_count',
    ])
  })
})

describe('headingAnchors', () => {
  it('gives the anchors GitHub links to', () => {
    const anchors = headingAnchors(
      '# Runbook\n\n## Lost Redis\ntext ## not a heading\n### Queue lag (workers behind)\n' +
        '## `undo-an-edit`: one edit back\n<a id="lost-storage"></a>\n',
    )
    expect([...anchors].sort()).toEqual([
      'lost-redis',
      'lost-storage',
      'queue-lag-workers-behind',
      'runbook',
      'undo-an-edit-one-edit-back',
    ])
  })
})
