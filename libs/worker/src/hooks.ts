import { sleep } from '@streambed/common'

/**
 * Points in a compaction where tests stop or slow a worker (STREAMBED_TEST_HOOKS). Production runs
 * never set them.
 */
export const hookPoints = [
  'after-load',
  'after-archive',
  'after-persist',
  'before-finish',
  'after-trim',
  'before-ack',
] as const
export type HookPoint = (typeof hookPoints)[number]

export type Hooks = (point: HookPoint, doc: string) => Promise<void>

export const noHooks: Hooks = () => Promise.resolve()

/**
 * Parses `crash:<point>[@n]` (SIGKILL this process the n-th time, default 1st, it reaches the
 * point) and `delay:<point>:<ms>` rules, separated by commas.
 */
export const parseHooks = (spec: string | undefined): Hooks => {
  if (!spec) return noHooks
  const rules = spec.split(',').map((rule) => {
    const crash = /^crash:([a-z-]+)(?:@(\d+))?$/.exec(rule.trim())
    const delay = /^delay:([a-z-]+):(\d+)$/.exec(rule.trim())
    const point = (crash?.[1] ?? delay?.[1]) as HookPoint | undefined
    if (!point || !hookPoints.includes(point)) {
      throw new TypeError(
        `STREAMBED_TEST_HOOKS: cannot parse "${rule}"; expected crash:<point>[@n] or delay:<point>:<ms>, points ${hookPoints.join(' ')}`,
      )
    }
    return crash
      ? { point, kind: 'crash' as const, nth: Number(crash[2] ?? 1), seen: 0 }
      : { point, kind: 'delay' as const, ms: Number(delay?.[2]) }
  })
  return async (point) => {
    for (const rule of rules) {
      if (rule.point !== point) continue
      if (rule.kind === 'delay') await sleep(rule.ms)
      else if (++rule.seen === rule.nth) process.kill(process.pid, 'SIGKILL')
    }
  }
}
