/**
 * Which checkpoints history maintenance keeps, by age: every one of today and yesterday (UTC), the
 * newest of each UTC day up to `max(retention, 31 days)` back, the newest of each week (Monday to
 * Sunday, UTC) for a year beyond that, and the newest of each 4-week block after; and the oldest,
 * where the document's history starts (a time before the first week's newest still finds a state,
 * and the chain's whole state stays the small early one). So a document edited every day for years
 * keeps about 2 days + 31 + 52 + 13 a year of checkpoints, not one per day without end.
 *
 * The periods nest (a day lies in one week, a week in one 4-week block; calendar months or 30-day
 * blocks would not), so what is dropped at one time is dropped at every later time: the set kept
 * only shrinks as time passes. Two maintenance runs with different clocks then never disagree the
 * way that matters to the chain (one keeping a checkpoint the other merges away) — see
 * checkpoint-chain.ts.
 */
import { idTimeMs, type StreamId } from '@streambed/common'

export const DAY_MS = 86_400_000
/** 1970-01-01 was a Thursday: day + 3 counts from a Monday. */
const MONDAY_OFFSET = 3
const WEEK_DAYS = 7
const BLOCK_DAYS = 28
/** Days of one checkpoint a day at least (more when the retention is longer). */
const MIN_DAILY_DAYS = 31
const WEEKLY_DAYS = 365

export interface SpacingOptions {
  /** Now (epoch ms). */
  readonly nowMs: number
  /** The history retention: one checkpoint a day is kept at least this far back. */
  readonly retentionMs: number
}

/** The UTC day (days since 1970-01-01) of epoch milliseconds `ms`. */
export const utcDay = (ms: number): number => Math.floor(ms / DAY_MS)

/**
 * The period that a checkpoint made on UTC day `day` belongs to, at the granularity of `ageDays`
 * (days before today): null for today and yesterday, where every checkpoint stays.
 */
const periodOf = (ageDays: number, day: number, dailyDays: number): string | null => {
  if (ageDays <= 1) return null
  if (ageDays <= dailyDays) return `d${day}`
  if (ageDays <= dailyDays + WEEKLY_DAYS) return `w${Math.floor((day + MONDAY_OFFSET) / WEEK_DAYS)}`
  return `b${Math.floor((day + MONDAY_OFFSET) / BLOCK_DAYS)}`
}

/**
 * The checkpoints of ascending `checkpoints` that the spacing drops: each that is not the newest of
 * its period (its period by its own age; a newer checkpoint falls in the same period or a later
 * one). The oldest and the newest of all are always kept, and so is every one in `keep`.
 */
export const checkpointsToDrop = (
  checkpoints: readonly StreamId[],
  opts: SpacingOptions & { readonly keep?: readonly StreamId[] },
): StreamId[] => {
  const today = utcDay(opts.nowMs)
  const dailyDays = Math.ceil(Math.max(opts.retentionMs, MIN_DAILY_DAYS * DAY_MS) / DAY_MS)
  const keep = new Set(opts.keep ?? [])
  const dropped: StreamId[] = []
  for (let i = 1; i + 1 < checkpoints.length; i++) {
    const c = checkpoints[i] as StreamId
    if (keep.has(c)) continue
    const day = utcDay(idTimeMs(c))
    const period = periodOf(today - day, day, dailyDays)
    // Periods are runs of days: a newer checkpoint in c's period means the next one is in it.
    const nextDay = utcDay(idTimeMs(checkpoints[i + 1] as StreamId))
    if (period !== null && periodOf(today - day, nextDay, dailyDays) === period) dropped.push(c)
  }
  return dropped
}
