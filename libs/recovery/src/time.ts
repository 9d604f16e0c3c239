/**
 * Points in time as operators type them (`--at`, `--since`): an ISO 8601 time or date, epoch
 * milliseconds, or a time relative to now. Stream entry ids carry Redis time in milliseconds, so
 * every form resolves to epoch milliseconds.
 */
import { AppError } from '@streambed/common'

const EXPECTED =
  'expected an ISO 8601 time (2026-11-27T10:00:00Z, 2026-11-27T11:00:00+01:00; without an ' +
  'offset it is UTC) or date (2026-11-27, midnight UTC), epoch milliseconds (1795773600000), ' +
  'a time before now (-90s, -30m, -2h, -7d) or now'

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }

const RELATIVE = /^-\s*(\d+(?:\.\d+)?)\s*([smhd])$/
const EPOCH_MS = /^\d+$/
const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?)?$/

const bad = (raw: string, why?: string): AppError =>
  new AppError(
    'BAD_MESSAGE',
    `not a time: ${JSON.stringify(raw)}${why === undefined ? '' : ` (${why})`}; ${EXPECTED}`,
  )

/** Minutes east of UTC of an ISO offset (`Z`, `+01`, `+0130`, `-05:00`). */
const offsetMinutes = (zone: string | undefined): number => {
  if (zone === undefined || zone === 'Z' || zone === 'z') return 0
  const digits = zone.slice(1).replace(':', '')
  const minutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0')
  return zone.startsWith('-') ? -minutes : minutes
}

const parseIso = (raw: string, m: RegExpExecArray): number => {
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', zone] = m
  const parts = [y, mo, d, h, mi, s].map(Number) as [number, number, number, number, number, number]
  const [year, month, day, hour, minute, second] = parts
  const ms = Number(frac.padEnd(3, '0').slice(0, 3))
  const local = Date.UTC(year, month - 1, day, hour, minute, second, ms)
  const back = new Date(local)
  // Date.UTC rolls over (February 30 becomes March 2): a time that does not round-trip is invalid.
  if (
    back.getUTCFullYear() !== year ||
    back.getUTCMonth() !== month - 1 ||
    back.getUTCDate() !== day ||
    back.getUTCHours() !== hour ||
    back.getUTCMinutes() !== minute ||
    back.getUTCSeconds() !== second
  )
    throw bad(raw, 'no such date or time of day')
  const offset = offsetMinutes(zone)
  if (Math.abs(offset) >= 24 * 60) throw bad(raw, 'offset out of range')
  return local - offset * 60_000
}

/**
 * The epoch milliseconds `raw` names; relative forms count back from `nowMs`. Throws
 * `AppError('BAD_MESSAGE')` naming the accepted forms for anything else (and for impossible
 * dates such as 2026-02-30).
 */
export const parseTime = (raw: string, nowMs: number): number => {
  const text = raw.trim()
  if (text.toLowerCase() === 'now') return nowMs
  const relative = RELATIVE.exec(text)
  if (relative) {
    const [, amount, unit] = relative as unknown as [string, string, string]
    return nowMs - Math.round(Number(amount) * (UNIT_MS[unit] as number))
  }
  if (EPOCH_MS.test(text)) {
    const ms = Number(text)
    if (!Number.isSafeInteger(ms)) throw bad(raw, 'too large')
    return ms
  }
  const iso = ISO.exec(text)
  if (iso) return parseIso(raw, iso)
  throw bad(raw)
}

/** `ms` as an ISO 8601 UTC time, for messages and listings. */
export const formatTime = (ms: number): string => {
  const date = new Date(ms)
  return Number.isNaN(date.getTime()) ? `${ms} ms` : date.toISOString()
}
