import { describe, expect, it } from 'vitest'
import { appErrorOf } from '@streambed/testing'
import { formatTime, parseTime } from './time.js'

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0)

describe('parseTime', () => {
  it.each([
    ['2026-11-27T10:00:00Z', Date.UTC(2026, 10, 27, 10)],
    ['2026-11-27T10:00:00.250Z', Date.UTC(2026, 10, 27, 10, 0, 0, 250)],
    ['2026-11-27T10:00:00.123456789Z', Date.UTC(2026, 10, 27, 10, 0, 0, 123)],
    ['2026-11-27t10:00:00z', Date.UTC(2026, 10, 27, 10)],
    ['2026-11-27 10:00', Date.UTC(2026, 10, 27, 10)],
    ['2026-11-27T10:00:00', Date.UTC(2026, 10, 27, 10)],
    ['2026-11-27T11:30:00+01:30', Date.UTC(2026, 10, 27, 10)],
    ['2026-11-27T05:00:00-0500', Date.UTC(2026, 10, 27, 10)],
    ['2026-11-27T12:00:00+02', Date.UTC(2026, 10, 27, 10)],
    ['2026-11-27', Date.UTC(2026, 10, 27)],
    ['2024-02-29', Date.UTC(2024, 1, 29)],
  ])('reads ISO 8601 %s', (raw, ms) => {
    expect(parseTime(raw, NOW)).toBe(ms)
  })

  it('reads epoch milliseconds', () => {
    expect(parseTime('1795773600000', NOW)).toBe(1795773600000)
    expect(parseTime('0', NOW)).toBe(0)
  })

  it.each([
    ['-90s', 90_000],
    ['-30m', 1_800_000],
    ['-2h', 7_200_000],
    ['-7d', 604_800_000],
    ['-1.5h', 5_400_000],
    ['- 5 m', 300_000],
    ['now', 0],
    [' NOW ', 0],
  ])('reads %j relative to now', (raw, before) => {
    expect(parseTime(raw, NOW)).toBe(NOW - before)
  })

  it.each([
    '',
    'yesterday',
    '90s',
    '+2h',
    '-2y',
    '-h',
    '2026-13-01',
    '2026-02-30',
    '2026-11-27T24:00:00Z',
    '2026-11-27T10:60Z',
    '2026-11-27T10:00:00+25:00',
    '27/11/2026',
    '1795773600000-0',
    '99999999999999999999',
  ])('refuses %j with BAD_MESSAGE naming the accepted forms', (raw) => {
    const err = appErrorOf(() => parseTime(raw, NOW))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(err.message).toContain(JSON.stringify(raw))
    for (const form of ['ISO 8601', '2026-11-27T10:00:00Z', 'epoch milliseconds', '-30m', 'now'])
      expect(err.message).toContain(form)
  })
})

describe('formatTime', () => {
  it('writes ISO 8601 UTC, which parseTime reads back', () => {
    expect(formatTime(Date.UTC(2026, 10, 27, 10, 0, 0, 5))).toBe('2026-11-27T10:00:00.005Z')
    expect(parseTime(formatTime(1795773600123), NOW)).toBe(1795773600123)
  })
})
