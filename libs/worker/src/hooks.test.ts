import { describe, expect, it } from 'vitest'
import { noHooks, parseHooks } from './hooks.js'

describe('parseHooks', () => {
  it('is a no-op without a spec', () => {
    expect(parseHooks(undefined)).toBe(noHooks)
    expect(parseHooks('')).toBe(noHooks)
  })

  it('delays at the named point only', async () => {
    const hooks = parseHooks('delay:after-load:80')
    let start = performance.now()
    await hooks('after-load', 'doc')
    expect(performance.now() - start).toBeGreaterThanOrEqual(75)
    start = performance.now()
    await hooks('after-persist', 'doc')
    expect(performance.now() - start).toBeLessThan(20)
  })

  it('rejects unknown points and malformed rules with the expected form', () => {
    expect(() => parseHooks('crash:after-lunch')).toThrow(
      /cannot parse "crash:after-lunch"; expected crash:<point>\[@n\] or delay:<point>:<ms>/,
    )
    expect(() => parseHooks('delay:after-load')).toThrow(/cannot parse/)
    expect(() => parseHooks('crash:before-ack@2,delay:after-trim:5')).not.toThrow()
  })
})
