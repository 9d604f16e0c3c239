import { CloseCode } from '@streambed/common'
import type { WebSocket } from 'uWebSockets.js'
import type { SocketLike } from './connection.js'

/** Messages above this many bytes are sent as fragments of this size. */
export const FRAGMENT_BYTES = 64 * 1024

export interface UwsSocketOptions {
  /** Bytes a socket may hold unsent (uWS buffer + messages waiting here) before it is closed. */
  maxBackpressureBytes: number
  /** A large message that makes no progress for this long marks the client as not reading. */
  maxStallMs: number
  /**
   * Messages of at least this many bytes (and at most FRAGMENT_BYTES: uWS does not compress
   * fragments) are sent compressed when the client negotiated permessage-deflate; null: none.
   */
  compressMinBytes?: number | null
}

/** What the socket needs of the uWS user data. */
export interface UwsSocketData {
  closed: boolean
  remoteAddress: string
}

/**
 * One uWS WebSocket as the runtime sees it. A message larger than FRAGMENT_BYTES (a sync step 2 of a
 * large document) is sent as WebSocket fragments, the next one only when uWS's buffer has drained
 * below a fragment: uWS keeps the capacity of a socket's send buffer after it drains, so writing a
 * 10 MB message at once would leave 10 MB allocated per socket for as long as it stays open.
 * Messages sent meanwhile wait here, in order: fragments of one message may not interleave with
 * other data frames (the client still receives one message per protocol message).
 */
export class UwsSocket<D extends UwsSocketData> implements SocketLike {
  readonly remoteAddress: string
  private streaming: { message: Uint8Array; offset: number } | null = null
  private waiting: Uint8Array[] = []
  private waitingBytes = 0
  private lastProgressAt = 0

  constructor(
    private readonly ws: WebSocket<D>,
    private readonly data: D,
    private readonly opts: UwsSocketOptions,
  ) {
    this.remoteAddress = data.remoteAddress
  }

  send(messages: readonly Uint8Array[]): boolean {
    if (this.data.closed) return true
    if (this.streaming) {
      this.wait(messages, 0)
      return (
        this.waitingBytes + this.ws.getBufferedAmount() <= this.opts.maxBackpressureBytes &&
        performance.now() - this.lastProgressAt < this.opts.maxStallMs
      )
    }
    let ok = true
    // Always corked, fragments included: uncorked sends from outside a uWS callback (here: promise
    // continuations) dropped a connection mid-message, 1 run in ~20, in the memory benchmark.
    // A fragment is larger than the cork buffer, so uWS writes it through and getBufferedAmount
    // still sees what the kernel did not take.
    this.ws.cork(() => {
      ok = this.write(messages)
    })
    return ok && this.ws.getBufferedAmount() <= this.opts.maxBackpressureBytes
  }

  end(code: number, reason: string): void {
    if (!this.data.closed) this.ws.end(code, reason)
  }

  /** uWS's drain event: continue a fragmented message. */
  drained(): void {
    if (this.data.closed || !this.streaming) return
    this.ws.cork(() => {
      if (!this.pump())
        this.ws.end(CloseCode.slowConsumer, 'send buffer full: client reads too slowly')
    })
  }

  /** Sends messages in order until a large one starts streaming; false if uWS dropped one. */
  private write(messages: readonly Uint8Array[]): boolean {
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i] as Uint8Array
      if (message.length > FRAGMENT_BYTES) {
        this.streaming = { message, offset: 0 }
        this.lastProgressAt = performance.now()
        this.wait(messages, i + 1)
        return this.pump()
      }
      const min = this.opts.compressMinBytes
      const compress = min !== null && min !== undefined && message.length >= min
      if (this.ws.send(message, true, compress) === 2) return false
    }
    return true
  }

  private wait(messages: readonly Uint8Array[], from: number): void {
    for (let i = from; i < messages.length; i++) {
      const message = messages[i] as Uint8Array
      this.waiting.push(message)
      this.waitingBytes += message.length
    }
  }

  /** Sends fragments while uWS's buffer is below one fragment; then what waited behind them. */
  private pump(): boolean {
    while (this.streaming && this.ws.getBufferedAmount() < FRAGMENT_BYTES) {
      const { message, offset } = this.streaming
      const end = Math.min(offset + FRAGMENT_BYTES, message.length)
      const chunk = message.subarray(offset, end)
      if (offset === 0) this.ws.sendFirstFragment(chunk, true, false)
      else if (end < message.length) this.ws.sendFragment(chunk, false)
      else this.ws.sendLastFragment(chunk, false)
      this.lastProgressAt = performance.now()
      this.streaming.offset = end
      if (end === message.length) {
        this.streaming = null
        const waiting = this.waiting
        this.waiting = []
        this.waitingBytes = 0
        if (!this.write(waiting)) return false
      }
    }
    return true
  }
}
