import { describe, expect, it, vi } from 'vitest'
import { Inbox, KeyedBuckets, TokenBucket } from './rate-limit.js'

const clock = () => {
  let t = 0
  return { now: () => t, advance: (ms: number) => (t += ms) }
}

describe('TokenBucket', () => {
  it('allows a burst, then asks to wait for the refill of the debt', () => {
    const c = clock()
    const bucket = new TokenBucket(10, 5, c.now)
    for (let i = 0; i < 5; i++) expect(bucket.take(1)).toBe(0)
    // One token in debt at 10 tokens/s: 100 ms.
    expect(bucket.take(1)).toBe(100)
    c.advance(100)
    expect(bucket.take(1)).toBe(100)
    c.advance(1000)
    expect(bucket.take(5)).toBe(0)
  })

  it('lets one large spend through and makes the next wait for it', () => {
    const c = clock()
    const bucket = new TokenBucket(1000, 1000, c.now)
    expect(bucket.take(1000)).toBe(0)
    expect(bucket.take(4000)).toBe(4000)
  })

  it('never refills above the burst', () => {
    const c = clock()
    const bucket = new TokenBucket(10, 2, c.now)
    c.advance(60_000)
    expect(bucket.take(2)).toBe(0)
    expect(bucket.take(1)).toBe(100)
  })
})

describe('KeyedBuckets', () => {
  it('keeps one budget per key', () => {
    const c = clock()
    const buckets = new KeyedBuckets(1, 1, 60_000, c.now)
    expect(buckets.take('a')).toBe(0)
    expect(buckets.take('a')).toBe(1000)
    expect(buckets.take('b')).toBe(0)
    expect(buckets.size).toBe(2)
    // A refused request spends nothing: after the wait it told, the client gets through.
    expect(buckets.take('a')).toBe(1000)
    c.advance(1000)
    expect(buckets.take('a')).toBe(0)
    buckets.close()
  })
})

describe('Inbox', () => {
  const inbox = (maxHeldSeconds = 2) => {
    const c = clock()
    const delivered: number[] = []
    const box = new Inbox({
      messagesPerSecond: 10,
      bytesPerSecond: 1000,
      burstMessages: 2,
      burstBytes: 1000,
      maxHeldSeconds,
      deliver: (frame) => delivered.push(frame[0] ?? -1),
      now: c.now,
    })
    return { box, delivered, c }
  }

  it('delivers within the budget at once, holds the rest in order, overflows past the limit', () => {
    const { box, delivered } = inbox()
    for (let i = 0; i < 5; i++) expect(box.push(new Uint8Array([i]))).toBe(true)
    expect(delivered).toEqual([0, 1])
    expect(box.waiting).toBe(3)
    // 10/s, 2 s of backlog allowed: the 22nd message (index 21) waits 2.0 s, the 23rd too long.
    for (let i = 5; i < 22; i++) expect(box.push(new Uint8Array([i]))).toBe(true)
    expect(box.push(new Uint8Array([99]))).toBe(false)
    expect(box.push(new Uint8Array([99]))).toBe(false)
    // On close, what waits is delivered all the same, in order.
    box.flush()
    expect(delivered).toEqual(Array.from({ length: 22 }, (_, i) => i))
    expect(box.waiting).toBe(0)
  })

  it('delivers held frames as the budget refills', async () => {
    const delivered: number[] = []
    const box = new Inbox({
      messagesPerSecond: 100,
      bytesPerSecond: 1_000_000,
      burstMessages: 1,
      burstBytes: 1_000_000,
      maxHeldSeconds: 5,
      deliver: (frame) => delivered.push(frame[0] ?? -1),
    })
    for (let i = 0; i < 4; i++) box.push(new Uint8Array([i]))
    expect(delivered).toEqual([0])
    await vi.waitFor(() => expect(delivered).toEqual([0, 1, 2, 3]))
  })
})
