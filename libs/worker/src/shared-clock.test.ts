import { describe, expect, it } from 'vitest'
import { sharedPerTurn } from './shared-clock.js'

const turn = () => new Promise<void>((r) => setImmediate(r))

describe('sharedPerTurn', () => {
  it('asks once for the calls of one turn, again in the next turn', async () => {
    let asked = 0
    const now = sharedPerTurn(async () => ++asked * 1000)
    expect(await Promise.all([now(), now(), now()])).toEqual([1000, 1000, 1000])
    await turn()
    expect(await now()).toBe(2000)
    expect(asked).toBe(2)
  })

  it('asks again after a failed request, within the same turn', async () => {
    let asked = 0
    const now = sharedPerTurn(async () => {
      if (++asked === 1) throw new Error('redis down')
      return 7
    })
    await expect(now()).rejects.toThrow('redis down')
    expect(await now()).toBe(7)
    expect(asked).toBe(2)
  })
})
