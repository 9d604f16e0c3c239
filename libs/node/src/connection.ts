import { CloseCode, type Logger } from '@streambed/common'
import {
  encodePermissionDenied,
  encodeSyncUpdate,
  keepaliveMessage,
  type SyncBaseline,
  type UpdateShape,
} from '@streambed/protocol'
import {
  type StreamEntry,
  type StreamId,
  ZERO_ID,
  compareIds,
  maxId,
  subjectTag,
} from '@streambed/streams'
import type { Grant } from './auth.js'

/** What a connection needs from a WebSocket; uWebSockets.js in production, a fake in unit tests. */
export interface SocketLike {
  /** Sends one binary message per element (corked together); returns false if any was dropped. */
  send(messages: readonly Uint8Array[]): boolean
  end(code: number, reason: string): void
  readonly remoteAddress: string
  /**
   * Hocuspocus sockets only: `updates` client updates were stored (or added nothing), or were
   * not stored (`stored` false: read-only). y-websocket has no acknowledgement.
   */
  acknowledge?(updates: number, stored: boolean): void
  /** Hocuspocus sockets only: a stateless message (UTF-8 bytes); false if it was dropped. */
  sendStateless?(payload: Uint8Array): boolean
}

/**
 * joining: no sync answered yet; live entries are buffered from the moment its first sync read
 *          starts (`beginJoin`) until the answer is sent (`synced`)
 * live:    receives every entry of the document except its own and those its sync covered
 * closed:  gone; every method is a no-op
 */
export type ConnectionState = 'joining' | 'live' | 'closed'

export interface ConnectionLimits {
  /** Close (4508) when this many live entries wait for the first sync to finish. */
  maxBufferedEntries: number
  /** ... or when they amount to this many bytes. */
  maxBufferedBytes: number
}

export interface ConnectionOptions extends ConnectionLimits {
  id: number
  /** `<nodeId>~<process token>`; the origin is `<originPrefix>/<id>`. */
  originPrefix: string
  doc: string
  grant: Grant
  socket: SocketLike
  logger: Logger
  /** Called for every close the server initiates, with its code (metrics). */
  onServerClose: (code: number) => void
}

/**
 * Step 1s of one connection: at most one sync read runs; step 1s arriving meanwhile are
 * coalesced to the newest, answered when the running one ends. A client cannot queue up reads.
 */
class SyncRequests {
  private running = false
  private next: Uint8Array | null = null

  /** True when the caller should run a sync for `stateVector` now; else it waits as the next. */
  offer(stateVector: Uint8Array): boolean {
    if (this.running) {
      this.next = stateVector
      return false
    }
    this.running = true
    return true
  }

  /** The running sync ended: the state vector to run next (now running), or null (idle). */
  done(): Uint8Array | null {
    const next = this.next
    this.next = null
    this.running = next !== null
    return next
  }

  clear(): void {
    this.next = null
  }
}

/** A validated update and its shape (see inspectUpdate). */
export interface QueuedUpdate {
  readonly update: Uint8Array
  readonly shape: UpdateShape
}

/**
 * Appends of one connection: up to `max` in flight; beyond that, updates wait here and go out
 * merged as one entry when a slot frees (see WritePath).
 */
class WriteSlots {
  private inFlight = 0
  private queue: QueuedUpdate[] = []
  private bytes = 0

  get queuedBytes(): number {
    return this.bytes
  }

  /** Takes an append slot if fewer than `max` appends are in flight. */
  tryAcquire(max: number): boolean {
    if (this.inFlight >= max) return false
    this.inFlight++
    return true
  }

  /** Takes a slot whatever the limit (the queue's own flush). */
  acquire(): void {
    this.inFlight++
  }

  release(): void {
    this.inFlight--
  }

  /** Queues an update until a slot frees; returns the bytes now queued. */
  enqueue(item: QueuedUpdate): number {
    this.queue.push(item)
    this.bytes += item.update.length
    return this.bytes
  }

  /** Removes and returns everything queued. */
  takeQueued(): QueuedUpdate[] {
    const queued = this.queue
    this.queue = []
    this.bytes = 0
    return queued
  }
}

const MAX_TIMER_MS = 2 ** 31 - 1

/** One client socket on one document: its delivery state, sync requests and write slots. */
export class Connection {
  readonly id: number
  /** Written into every stream entry this connection appends; used to avoid echoing it back. */
  readonly origin: string
  readonly doc: string
  readonly grant: Grant
  /** Tag of the token's subject in awareness records (same user, same tag; `-`: anonymous). */
  readonly subjectTag: string
  readonly logger: Logger
  readonly syncRequests = new SyncRequests()
  readonly writes = new WriteSlots()
  /** Awareness client ids this connection set, with their last clock. */
  readonly awarenessClients = new Map<number, number>()
  private stateValue: ConnectionState = 'joining'
  private buffering = false
  /** Live entries that arrived while the first sync read was in progress. */
  private buffer: StreamEntry[] = []
  private bufferedBytes = 0
  /** The highest stream id a sync answer covered; appends go above it, deliveries skip below. */
  private syncedUpToValue: StreamId = ZERO_ID
  /** Kept from our sync answer until the client's step 2 arrives (see `addsNothing`). */
  private baseline: SyncBaseline | null = null
  private baselineTimer: NodeJS.Timeout | undefined
  private lastSentAt = Date.now()
  private readOnlyNotified = false
  private expiryTimer: NodeJS.Timeout | undefined
  private readonly socket: SocketLike
  private readonly limits: ConnectionLimits
  private readonly onServerClose: (code: number) => void

  constructor(opts: ConnectionOptions) {
    this.id = opts.id
    this.origin = `${opts.originPrefix}/${opts.id}`
    this.doc = opts.doc
    this.grant = opts.grant
    this.subjectTag = subjectTag(opts.grant.subject)
    this.socket = opts.socket
    this.logger = opts.logger
    this.limits = {
      maxBufferedEntries: opts.maxBufferedEntries,
      maxBufferedBytes: opts.maxBufferedBytes,
    }
    this.onServerClose = opts.onServerClose
    if (opts.grant.expiresAtMs !== undefined) this.expireAt(opts.grant.expiresAtMs)
  }

  /** Closes the connection (4410) when its token expires; never synchronously. */
  private expireAt(atMs: number): void {
    const delay = Math.max(0, atMs - Date.now())
    // setTimeout holds at most 2^31-1 ms (~24.8 days); a longer wait is taken in steps.
    this.expiryTimer = setTimeout(
      () => {
        if (delay > MAX_TIMER_MS) this.expireAt(atMs)
        else this.close(CloseCode.tokenExpired, 'token expired; reconnect with a fresh token')
      },
      Math.min(delay, MAX_TIMER_MS),
    )
    this.expiryTimer.unref()
  }

  get state(): ConnectionState {
    return this.stateValue
  }

  get closed(): boolean {
    return this.stateValue === 'closed'
  }

  get syncedUpTo(): StreamId {
    return this.syncedUpToValue
  }

  /** Sends `messages` in order; a socket that cannot take them is closed (4508). */
  send(messages: readonly Uint8Array[]): void {
    if (this.closed || messages.length === 0) return
    this.lastSentAt = Date.now()
    if (!this.socket.send(messages)) {
      this.close(CloseCode.slowConsumer, 'send buffer full: client reads too slowly')
    }
  }

  /** Tells the client that `updates` of its updates were stored (see SocketLike.acknowledge). */
  acknowledge(updates: number, stored: boolean): void {
    if (!this.closed) this.socket.acknowledge?.(updates, stored)
  }

  /**
   * Sends a stateless message where the protocol has them (false: it has none, or the connection
   * is closed); a socket that cannot take it is closed (4508).
   */
  sendStateless(payload: Uint8Array): boolean {
    if (this.closed || !this.socket.sendStateless) return false
    this.lastSentAt = Date.now()
    if (!this.socket.sendStateless(payload)) {
      this.close(CloseCode.slowConsumer, 'send buffer full: client reads too slowly')
    }
    return true
  }

  sendKeepaliveIfQuiet(now: number, quietMs: number): void {
    if (now - this.lastSentAt >= quietMs) this.send([keepaliveMessage])
  }

  /** Tells a read-only client, once, that its updates are not stored. */
  notifyReadOnly(): void {
    if (this.readOnlyNotified) return
    this.readOnlyNotified = true
    this.send([encodePermissionDenied('read-only access: updates are not stored')])
  }

  /** The first sync read is about to start: buffer live entries until it is answered. */
  beginJoin(): void {
    if (this.stateValue === 'joining' && !this.buffering) {
      this.buffering = true
      this.buffer = []
    }
  }

  /**
   * A sync answer covering every entry up to `upTo` was sent. On the first one, sends the entries
   * buffered meanwhile that it did not cover (not our own) and goes live.
   */
  synced(upTo: StreamId): void {
    if (this.closed) return
    this.syncedUpToValue = maxId(this.syncedUpToValue, upTo)
    if (this.stateValue !== 'joining' || !this.buffering) return
    const pending = this.buffer.filter(
      (e) => compareIds(e.id, upTo) > 0 && e.origin !== this.origin,
    )
    this.buffer = []
    this.bufferedBytes = 0
    this.buffering = false
    this.stateValue = 'live'
    this.send(pending.map((e) => encodeSyncUpdate(e.update)))
  }

  /** Delivers entries from the document's stream; `encoded[i]` is the message for `entries[i]`. */
  deliver(entries: readonly StreamEntry[], encoded: readonly Uint8Array[]): void {
    if (this.stateValue === 'joining') {
      if (!this.buffering) return
      this.buffer.push(...entries)
      for (const e of entries) this.bufferedBytes += e.update.length
      if (
        this.buffer.length > this.limits.maxBufferedEntries ||
        this.bufferedBytes > this.limits.maxBufferedBytes
      ) {
        this.close(CloseCode.slowConsumer, 'too many updates while syncing')
      }
    } else if (this.stateValue === 'live') {
      const out: Uint8Array[] = []
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i] as StreamEntry
        // Skip our own, and what the sync answer already carried (delivery may lag the read).
        if (e.origin !== this.origin && compareIds(e.id, this.syncedUpToValue) > 0)
          out.push(encoded[i] as Uint8Array)
      }
      this.send(out)
    }
  }

  /** Keeps `baseline` for the client's step 2, at most `keepMs`. */
  setBaseline(baseline: SyncBaseline, keepMs: number): void {
    this.clearBaseline()
    this.baseline = baseline
    this.baselineTimer = setTimeout(() => this.clearBaseline(), keepMs)
    this.baselineTimer.unref()
  }

  /** The baseline kept for the client's step 2, once (later calls get null). */
  takeBaseline(): SyncBaseline | null {
    const baseline = this.baseline
    this.clearBaseline()
    return baseline
  }

  private clearBaseline(): void {
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

  /** The socket is gone. Queued writes stay for the write path to flush. */
  markClosed(): void {
    this.stateValue = 'closed'
    clearTimeout(this.expiryTimer)
    this.buffer = []
    this.bufferedBytes = 0
    this.syncRequests.clear()
    this.clearBaseline()
  }
}
