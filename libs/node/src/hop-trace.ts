import { appendFileSync } from 'node:fs'
import { appendFile } from 'node:fs/promises'
import type { Logger } from '@streambed/common'
import type { UpdateShape } from '@streambed/protocol'

/**
 * Hop timestamps of the cross-node path (TRACE_HOPS, for `npm run bench -- hops`): off, the
 * runtime holds null and each hop costs one null check. Times are wall-clock milliseconds with
 * sub-millisecond precision (`performance.timeOrigin + performance.now()`), comparable between
 * processes of one machine.
 *
 * One CSV line per update and node, buffered and appended to the file every `flushMs` (O_APPEND:
 * nodes of one machine may share the file; each line names its node):
 *   `w,<node>,<entry id>,<client>,<from>,<to>,<frame in>,<validated>,<appended>`
 *     the node that appended the update: its socket message callback (empty when the frame waited
 *     in the rate limiter), the append about to be sent to Redis, the append script's reply;
 *     `client` holds the clocks from..to-1 (the first client of the update)
 *   `d,<node>,<entry id>,<doorbell>,<read>,<sent>`
 *     a node that delivered the entry: doorbell received (empty when a catch-up read found it),
 *     entry in hand (inline in the doorbell, or read from the stream), handed to every socket
 */
export class HopTrace {
  /**
   * When the socket message being handled arrived; 0 outside a message callback. Set and cleared
   * by the WebSocket layer around the synchronous handling of one frame.
   */
  frameIn = 0
  private lines: string[] = []
  private readonly timer: NodeJS.Timeout
  private writing: Promise<void> = Promise.resolve()

  constructor(
    private readonly file: string,
    private readonly node: string,
    private readonly logger: Logger,
    flushMs = 250,
  ) {
    this.timer = setInterval(() => this.flush(), flushMs)
    this.timer.unref()
  }

  now(): number {
    return performance.timeOrigin + performance.now()
  }

  /** The update with `shape` was appended as `id`. */
  appended(id: string, shape: UpdateShape, frameIn: number, validated: number, at: number): void {
    const first = shape.clients.entries().next().value
    const client = first ? String(first[0]) : ''
    const runs = first?.[1]
    const from = runs?.[0]?.from ?? ''
    const to = runs?.[runs.length - 1]?.to ?? ''
    this.lines.push(
      `w,${this.node},${id},${client},${from},${to},${ms(frameIn)},${ms(validated)},${ms(at)}\n`,
    )
  }

  /** Entry `id` was handed to this node's sockets. */
  delivered(id: string, doorbell: number, read: number, sent: number): void {
    this.lines.push(`d,${this.node},${id},${ms(doorbell)},${ms(read)},${ms(sent)}\n`)
  }

  private flush(): void {
    if (this.lines.length === 0) return
    const text = this.lines.join('')
    this.lines = []
    // One write at a time, in order.
    this.writing = this.writing
      .then(() => appendFile(this.file, text))
      .catch((err: unknown) =>
        this.logger.warn({ err, file: this.file }, 'TRACE_HOPS write failed'),
      )
  }

  /** Writes what is buffered, synchronously (the process may exit right after). */
  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.writing
    if (this.lines.length === 0) return
    try {
      appendFileSync(this.file, this.lines.join(''))
    } catch (err) {
      this.logger.warn({ err, file: this.file }, 'TRACE_HOPS write failed')
    }
    this.lines = []
  }
}

/** Milliseconds with microseconds; empty when unknown (0). */
const ms = (t: number): string => (t > 0 ? t.toFixed(3) : '')
