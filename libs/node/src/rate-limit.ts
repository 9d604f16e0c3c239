/**
 * Token buckets: `ratePerSecond` tokens refill continuously up to `burst`. `take(n)` spends `n`
 * tokens (going into debt if needed) and says how long the caller should wait before the debt is
 * paid: 0 while within the budget. Time is read from `now` (tests pass their own clock).
 */
export class TokenBucket {
  private tokens: number
  private last: number

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst
    this.last = now()
  }

  /** Spends `n` tokens; returns the ms until the bucket is out of debt again (0: none). */
  take(n: number): number {
    const now = this.now()
    this.tokens = Math.min(
      this.burst,
      this.tokens + ((now - this.last) * this.ratePerSecond) / 1000,
    )
    this.last = now
    this.tokens -= n
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.ratePerSecond)
  }
}

/**
 * One bucket per key (a client address), created on first use and forgotten once full and unused
 * for `idleMs`, so the map holds only recently active clients.
 */
export class KeyedBuckets {
  private readonly buckets = new Map<string, { bucket: TokenBucket; usedAt: number }>()
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    idleMs = 60_000,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.timer = setInterval(() => {
      const cutoff = this.now() - idleMs
      for (const [key, b] of this.buckets) if (b.usedAt < cutoff) this.buckets.delete(key)
    }, idleMs)
    this.timer.unref()
  }

  /**
   * Spends one token of `key`'s bucket if it has one: 0 (allowed now); else the ms until it has,
   * spending nothing (a refused request costs no budget, so a client that waits gets through).
   */
  take(key: string): number {
    let entry = this.buckets.get(key)
    if (!entry) {
      entry = { bucket: new TokenBucket(this.ratePerSecond, this.burst, this.now), usedAt: 0 }
      this.buckets.set(key, entry)
    }
    entry.usedAt = this.now()
    const waitMs = entry.bucket.take(1)
    if (waitMs > 0) entry.bucket.take(-1)
    return waitMs
  }

  get size(): number {
    return this.buckets.size
  }

  close(): void {
    clearInterval(this.timer)
  }
}

export interface InboxOptions {
  messagesPerSecond: number
  bytesPerSecond: number
  /** Messages and bytes that pass at once before the rates apply. */
  burstMessages: number
  burstBytes: number
  /** A socket with more than this many seconds' worth of messages held overflows. */
  maxHeldSeconds: number
  deliver: (frame: Uint8Array) => void
  now?: () => number
}

/**
 * Frames of one socket, handled at most at the configured rates: within the budget each is
 * delivered at once; past it, frames wait here, in order, and are delivered as the budget
 * refills. More than `maxHeldSeconds` of backlog is an overflow (the caller closes the socket).
 */
export class Inbox {
  private readonly messages: TokenBucket
  private readonly bytes: TokenBucket
  private readonly held: { frame: Uint8Array; dueAt: number }[] = []
  private timer: NodeJS.Timeout | undefined
  private readonly now: () => number

  constructor(private readonly opts: InboxOptions) {
    this.now = opts.now ?? (() => performance.now())
    this.messages = new TokenBucket(opts.messagesPerSecond, opts.burstMessages, this.now)
    this.bytes = new TokenBucket(opts.bytesPerSecond, opts.burstBytes, this.now)
  }

  /** How many frames wait. */
  get waiting(): number {
    return this.held.length
  }

  /** Takes a frame; false when the backlog overflowed (nothing was queued). */
  push(frame: Uint8Array): boolean {
    const waitMs = Math.max(this.messages.take(1), this.bytes.take(frame.length))
    if (waitMs === 0 && this.held.length === 0) {
      this.opts.deliver(frame)
      return true
    }
    if (waitMs > this.opts.maxHeldSeconds * 1000) {
      // Refused: the budget is not spent.
      this.messages.take(-1)
      this.bytes.take(-frame.length)
      return false
    }
    this.held.push({ frame, dueAt: this.now() + waitMs })
    this.schedule()
    return true
  }

  private schedule(): void {
    const next = this.held[0]
    if (this.timer || !next) return
    this.timer = setTimeout(
      () => {
        this.timer = undefined
        const now = this.now()
        while (this.held[0] && this.held[0].dueAt <= now) {
          this.opts.deliver((this.held.shift() as { frame: Uint8Array }).frame)
        }
        this.schedule()
      },
      Math.max(0, next.dueAt - this.now()),
    )
    this.timer.unref()
  }

  /** Delivers everything waiting, now (the socket closed: what it sent is handled all the same). */
  flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    for (const { frame } of this.held.splice(0)) this.opts.deliver(frame)
  }
}
