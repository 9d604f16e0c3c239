import { CloseCode, type Logger } from '@streambed/common'
import { encodeSyncUpdate, keepaliveMessage, type SyncBaseline } from '@streambed/protocol'
import { type StreamEntry, type StreamId, ZERO_ID, compareIds } from '@streambed/streams'
import type { Grant } from './auth.js'

/** What the runtime needs from a WebSocket; uWebSockets.js in production, anything in tests. */
export interface SocketLike {
  /** Sends one binary message per element (corked together); returns false if any was dropped. */
  send(messages: readonly Uint8Array[]): boolean
  end(code: number, reason: string): void
  readonly remoteAddress: string
}

/**
 * idle:    connected, no sync step 1 received yet; receives awareness only
 * syncing: reading storage + stream for the client's step 1; live entries are buffered
 * live:    receives every entry of the document except its own
 * closed:  gone; every method is a no-op
 */
export type ConnectionState = 'idle' | 'syncing' | 'live' | 'closed'

export interface ConnectionOptions {
  id: number
  /** `<nodeId>~<process token>`; the origin is `<originPrefix>/<id>`. */
  originPrefix: string
  doc: string
  grant: Grant
  socket: SocketLike
  logger: Logger
  /** Close the connection when this many live entries wait for a sync to finish. */
  maxBufferedEntries: number
  /** ... or when they amount to this many bytes. */
  maxBufferedBytes: number
  onServerClose: (code: number) => void
}

export class Connection {
  readonly id: number
  /** Written into every stream entry this connection appends; used to avoid echoing it back. */
  readonly origin: string
  readonly doc: string
  readonly grant: Grant
  readonly logger: Logger
  state: ConnectionState = 'idle'
  /** Live entries that arrived while a sync read was in progress. */
  private buffer: StreamEntry[] = []
  private bufferedBytes = 0
  /** Awareness client ids this connection announced, with their last clock. */
  readonly awarenessClients = new Map<number, number>()
  /** The highest stream id this connection's sync read covered; appends go above it. */
  syncedUpTo: StreamId = ZERO_ID
  /** Kept from our sync reply until the client's step 2 arrives (see `addsNothing`). */
  baseline: SyncBaseline | null = null
  baselineTimer: NodeJS.Timeout | undefined
  /** Appends not yet acknowledged by Redis. */
  inFlight = 0
  /** Updates waiting for an append slot (see NodeRuntime.write). */
  queued: Uint8Array[] = []
  queuedBytes = 0
  lastSentAt = Date.now()
  /** A sync read is running for this connection. */
  syncing = false
  /** The newest state vector of a step 1 that arrived while a sync was running (coalesced). */
  nextStateVector: Uint8Array | null = null
  deniedWriteNotified = false
  private readonly socket: SocketLike
  private readonly maxBufferedEntries: number
  private readonly maxBufferedBytes: number
  private readonly onServerClose: (code: number) => void

  constructor(opts: ConnectionOptions) {
    this.id = opts.id
    this.origin = `${opts.originPrefix}/${opts.id}`
    this.doc = opts.doc
    this.grant = opts.grant
    this.socket = opts.socket
    this.logger = opts.logger
    this.maxBufferedEntries = opts.maxBufferedEntries
    this.maxBufferedBytes = opts.maxBufferedBytes
    this.onServerClose = opts.onServerClose
  }

  get closed(): boolean {
    return this.state === 'closed'
  }

  send(messages: readonly Uint8Array[]): void {
    if (this.closed || messages.length === 0) return
    this.lastSentAt = Date.now()
    if (!this.socket.send(messages)) {
      this.close(CloseCode.slowConsumer, 'send buffer full: client reads too slowly')
    }
  }

  sendKeepaliveIfQuiet(now: number, quietMs: number): void {
    if (now - this.lastSentAt >= quietMs) this.send([keepaliveMessage])
  }

  /** Starts buffering live entries; called before the sync read begins. */
  beginSync(): void {
    if (this.state === 'idle') {
      this.state = 'syncing'
      this.buffer = []
    }
  }

  /**
   * Ends a sync whose read covered every entry up to `upTo`: sends the buffered entries after it
   * and switches to live delivery.
   */
  finishSync(upTo: StreamId, isAfter: (id: StreamId, ref: StreamId) => boolean): void {
    if (this.state !== 'syncing') return
    const pending = this.buffer.filter((e) => isAfter(e.id, upTo) && e.origin !== this.origin)
    this.buffer = []
    this.bufferedBytes = 0
    this.state = 'live'
    this.send(pending.map((e) => encodeSyncUpdate(e.update)))
  }

  /** Delivers entries from the document's stream; `encoded[i]` is the message for `entries[i]`. */
  deliver(entries: readonly StreamEntry[], encoded: readonly Uint8Array[]): void {
    if (this.state === 'syncing') {
      this.buffer.push(...entries)
      for (const e of entries) this.bufferedBytes += e.update.length
      if (
        this.buffer.length > this.maxBufferedEntries ||
        this.bufferedBytes > this.maxBufferedBytes
      ) {
        this.close(CloseCode.slowConsumer, 'too many updates while syncing')
      }
    } else if (this.state === 'live') {
      const out: Uint8Array[] = []
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i] as StreamEntry
        // Skip our own, and what the sync reply already carried (delivery may lag the read).
        if (e.origin !== this.origin && compareIds(e.id, this.syncedUpTo) > 0)
          out.push(encoded[i] as Uint8Array)
      }
      this.send(out)
    }
  }

  setBaseline(baseline: SyncBaseline, keepMs: number): void {
    this.clearBaseline()
    this.baseline = baseline
    this.baselineTimer = setTimeout(() => this.clearBaseline(), keepMs)
    this.baselineTimer.unref()
  }

  clearBaseline(): void {
    if (this.baselineTimer) clearTimeout(this.baselineTimer)
    this.baselineTimer = undefined
    this.baseline = null
  }

  /** Closes from the server side; the socket's close event then runs `markClosed`. */
  close(code: number, reason: string): void {
    if (this.closed) return
    this.logger.debug({ conn: this.id, doc: this.doc, code, reason }, 'closing connection')
    this.onServerClose(code)
    // WebSocket close reasons are limited to 123 bytes.
    this.socket.end(code, Buffer.from(reason).subarray(0, 123).toString())
  }

  markClosed(): void {
    this.state = 'closed'
    this.buffer = []
    this.bufferedBytes = 0
    this.nextStateVector = null
    this.clearBaseline()
  }
}
