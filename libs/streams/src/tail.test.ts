import { describe, it, expect } from 'vitest'
import { hasHoleAfter } from './tail.js'

describe('hasHoleAfter', () => {
  it('no hole when nothing was ever trimmed', () => {
    expect(hasHoleAfter('0-0', '0-0')).toBe(false)
    expect(hasHoleAfter('1000-5', '0-0')).toBe(false)
  })

  it('no hole when the trim marker is the entry right after the watermark', () => {
    // Entries below 1000-6 are gone, storage covers up to 1000-5: nothing is missing.
    expect(hasHoleAfter('1000-5', '1000-6')).toBe(false)
    expect(hasHoleAfter('0-0', '0-1')).toBe(false)
  })

  it('no hole when the trim marker is at or below the watermark', () => {
    expect(hasHoleAfter('1000-5', '1000-5')).toBe(false)
    expect(hasHoleAfter('1000-5', '1000-1')).toBe(false)
    expect(hasHoleAfter('1000-5', '999-99')).toBe(false)
  })

  it('a hole when the trim marker is above the entry after the watermark', () => {
    expect(hasHoleAfter('1000-5', '1000-7')).toBe(true)
    expect(hasHoleAfter('1000-5', '1001-0')).toBe(true)
    expect(hasHoleAfter('0-0', '0-2')).toBe(true)
  })

  it('compares numerically, not lexicographically', () => {
    expect(hasHoleAfter('9-0', '10-0')).toBe(true)
    expect(hasHoleAfter('10-0', '9-0')).toBe(false)
    expect(hasHoleAfter('5-9', '5-10')).toBe(false)
    expect(hasHoleAfter('5-9', '5-11')).toBe(true)
  })
})
