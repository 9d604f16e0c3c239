import { describe, expect, it } from 'vitest'
import type { StreamId } from '@streambed/common'
import { checkpointsToDrop } from './checkpoint-spacing.js'

const DAY = 86_400_000
const H = 3_600_000
/** A Monday, UTC midnight. */
const MONDAY = Date.UTC(2026, 0, 5)
const id = (ms: number): StreamId => `${ms}-0`
const NOW = MONDAY + 800 * DAY + 12 * H

/** Checkpoints at 09:00 and 17:00 of every day from `days` days before NOW's day to NOW's. */
const twiceDaily = (days: number): StreamId[] => {
  const out: StreamId[] = []
  const today = Math.floor(NOW / DAY) * DAY
  for (let d = days; d >= 0; d--) for (const h of [9, 17]) out.push(id(today - d * DAY + h * H))
  return out.filter((c) => Number(c.split('-')[0]) <= NOW)
}

describe('checkpoint spacing', () => {
  it('keeps today and yesterday whole, then a day, a week, 4 weeks each', () => {
    const all = twiceDaily(800)
    const dropped = new Set(checkpointsToDrop(all, { nowMs: NOW, retentionMs: 7 * DAY }))
    const kept = all.filter((c) => !dropped.has(c))
    const today = Math.floor(NOW / DAY)
    const ageOf = (c: StreamId) => today - Math.floor(Number(c.split('-')[0]) / DAY)
    const byAge = (lo: number, hi: number) => kept.filter((c) => ageOf(c) >= lo && ageOf(c) <= hi)
    // Today: 09:00 only (17:00 is after now); yesterday: both.
    expect(byAge(0, 1)).toHaveLength(3)
    // Days 2..31: the last of each day (17:00).
    const daily = byAge(2, 31)
    expect(daily).toHaveLength(30)
    for (const c of daily) expect(new Date(Number(c.split('-')[0])).getUTCHours()).toBe(17)
    // A year beyond: one a week, each a Sunday (the last day of a Monday-to-Sunday week), except
    // where the week is cut by the tier's edge.
    const weekly = byAge(32, 31 + 365)
    expect(weekly.length).toBeGreaterThanOrEqual(52)
    expect(weekly.length).toBeLessThanOrEqual(54)
    const sundays = weekly.filter((c) => new Date(Number(c.split('-')[0])).getUTCDay() === 0)
    expect(sundays.length).toBeGreaterThanOrEqual(weekly.length - 1)
    // Older: one per 4 weeks.
    const blocks = byAge(31 + 366, 800)
    expect(blocks.length).toBeGreaterThanOrEqual(Math.floor((800 - 31 - 366) / 28))
    expect(blocks.length).toBeLessThanOrEqual(Math.ceil((800 - 31 - 366) / 28) + 1)
    // In all: proportionate, not one per day.
    expect(kept.length).toBeLessThan(3 + 30 + 54 + 16)
  })

  it('keeps one a day as far back as the retention when that is longer than 31 days', () => {
    const all = twiceDaily(100)
    const dropped = new Set(checkpointsToDrop(all, { nowMs: NOW, retentionMs: 60 * DAY }))
    const today = Math.floor(NOW / DAY)
    const ages = all
      .filter((c) => !dropped.has(c))
      .map((c) => today - Math.floor(Number(c.split('-')[0]) / DAY))
    expect(ages.filter((a) => a >= 2 && a <= 60)).toHaveLength(59)
    // Days 61..100: one a week (40 days touch 6 or 7 weeks; a week that reaches into the daily
    // days has its newest there).
    const weekly = ages.filter((a) => a > 60).length
    expect(weekly).toBeGreaterThanOrEqual(5)
    expect(weekly).toBeLessThanOrEqual(7)
  })

  it('always keeps the oldest, the newest and those it is told to', () => {
    const sameDay = [9, 10, 11, 12].map((h) => id(MONDAY + h * H))
    const nowMs = MONDAY + 10 * DAY
    expect(checkpointsToDrop(sameDay, { nowMs, retentionMs: DAY })).toEqual(sameDay.slice(1, 3))
    expect(
      checkpointsToDrop(sameDay, { nowMs, retentionMs: DAY, keep: [sameDay[1] as StreamId] }),
    ).toEqual([sameDay[2]])
    expect(checkpointsToDrop(sameDay.slice(0, 2), { nowMs, retentionMs: DAY })).toEqual([])
  })

  it('only drops more as time passes (the periods nest)', () => {
    // Irregular checkpoints over three years, seen from every day of a year after.
    const all: StreamId[] = []
    let t = MONDAY
    for (let i = 0; t < MONDAY + 3 * 365 * DAY; i++) {
      all.push(id(t))
      t += (((i * 7919) % 61) + 1) * 3 * H
    }
    let before = new Set<StreamId>()
    const keptAgain: string[] = []
    for (let now = MONDAY + 3 * 365 * DAY; now < MONDAY + 4 * 365 * DAY; now += DAY / 3) {
      const dropped = new Set(checkpointsToDrop(all, { nowMs: now, retentionMs: 30 * DAY }))
      for (const c of before) if (!dropped.has(c)) keptAgain.push(`${c} at ${now}`)
      before = dropped
    }
    expect(keptAgain).toEqual([])
    expect(before.size).toBeGreaterThan(all.length / 2)
  })
})
