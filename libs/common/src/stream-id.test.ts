import { describe, it, expect } from 'vitest'
import {
  compareIds,
  idTimeMs,
  isStreamId,
  maxId,
  nextId,
  parseStreamId,
  ZERO_ID,
} from './stream-id.js'

describe('parseStreamId', () => {
  it('splits milliseconds and sequence', () => {
    expect(parseStreamId('1718000000123-7')).toEqual({ ms: 1718000000123, seq: 7 })
    expect(parseStreamId(ZERO_ID)).toEqual({ ms: 0, seq: 0 })
  })

  it.each(['', '1', '1-', '-1', '1-2-3', 'a-1', '1-b', ' 1-2', '1-2 ', '1.5-2', '-1-2', '+', '$'])(
    'rejects %j with a TypeError quoting the input',
    (bad) => {
      expect(() => parseStreamId(bad)).toThrow(TypeError)
      expect(() => parseStreamId(bad)).toThrow(`not a stream id: ${JSON.stringify(bad)}`)
    },
  )
})

describe('isStreamId', () => {
  it('is true for <ms>-<seq> and false otherwise', () => {
    expect(isStreamId('0-0')).toBe(true)
    expect(isStreamId('1718000000123-42')).toBe(true)
    expect(isStreamId('1718000000123')).toBe(false)
    expect(isStreamId('*')).toBe(false)
    expect(isStreamId('1-x')).toBe(false)
  })
})

describe('compareIds', () => {
  it('orders by milliseconds first', () => {
    expect(compareIds('1-5', '2-0')).toBeLessThan(0)
    expect(compareIds('2-0', '1-5')).toBeGreaterThan(0)
  })

  it('orders by sequence within the same millisecond', () => {
    expect(compareIds('5-1', '5-2')).toBeLessThan(0)
    expect(compareIds('5-2', '5-1')).toBeGreaterThan(0)
  })

  it('is zero for equal ids', () => {
    expect(compareIds('5-3', '5-3')).toBe(0)
    expect(compareIds(ZERO_ID, '0-0')).toBe(0)
  })

  it('compares numerically, not lexicographically', () => {
    expect(compareIds('9-0', '10-0')).toBeLessThan(0)
    expect(compareIds('10-0', '9-0')).toBeGreaterThan(0)
    expect(compareIds('7-9', '7-10')).toBeLessThan(0)
    expect(compareIds('1718000000999-0', '1718000001000-0')).toBeLessThan(0)
  })

  it('sorts a list of ids in stream order', () => {
    const ids = ['10-0', '9-10', '9-9', '0-1', '100-0', '9-0', '0-0']
    expect([...ids].sort(compareIds)).toEqual(['0-0', '0-1', '9-0', '9-9', '9-10', '10-0', '100-0'])
  })

  it('throws on a malformed id', () => {
    expect(() => compareIds('1-0', 'nope')).toThrow(TypeError)
    expect(() => compareIds('nope', '1-0')).toThrow(TypeError)
    for (const bad of ['', '-', '1-', '-1', '1-2-3', '1--2', ' 1-2', '1-2 ', '1.5-0', '+1-0', '1-x'])
      expect(() => compareIds(bad, '1-0'), JSON.stringify(bad)).toThrow(TypeError)
  })

  it('ignores leading zeros, as Redis does', () => {
    expect(compareIds('007-01', '7-1')).toBe(0)
    expect(compareIds('00-0', '0-0')).toBe(0)
    expect(compareIds('010-0', '9-0')).toBeGreaterThan(0)
  })

  // Redis sequence numbers are 64-bit; Number() would lose precision above 2^53.
  it('keeps 64-bit sequence numbers apart', () => {
    expect(compareIds('1-9007199254740993', '1-9007199254740992')).toBeGreaterThan(0)
  })
})

describe('maxId', () => {
  it('returns the larger id, numerically', () => {
    expect(maxId('9-0', '10-0')).toBe('10-0')
    expect(maxId('10-0', '9-0')).toBe('10-0')
    expect(maxId('3-10', '3-9')).toBe('3-10')
    expect(maxId(ZERO_ID, '0-1')).toBe('0-1')
  })

  it('returns an equal id unchanged', () => {
    expect(maxId('4-4', '4-4')).toBe('4-4')
  })
})

describe('nextId', () => {
  it('increments the sequence', () => {
    expect(nextId('0-0')).toBe('0-1')
    expect(nextId('1718000000123-9')).toBe('1718000000123-10')
  })

  it('is the smallest id greater than its input', () => {
    for (const id of ['0-0', '9-9', '10-99']) {
      const next = nextId(id)
      expect(compareIds(next, id)).toBeGreaterThan(0)
      // Nothing fits in between: the same millisecond, one more sequence number.
      expect(parseStreamId(next)).toEqual({ ...parseStreamId(id), seq: parseStreamId(id).seq + 1 })
    }
  })

  it('throws on a malformed id', () => {
    expect(() => nextId('12')).toThrow(TypeError)
  })
})

describe('idTimeMs', () => {
  it('is the millisecond part', () => {
    expect(idTimeMs('1718000000123-4')).toBe(1718000000123)
    expect(idTimeMs(ZERO_ID)).toBe(0)
  })
})
