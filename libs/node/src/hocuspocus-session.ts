import { AppError, CloseCode, describeError, type Logger } from '@streambed/common'
import {
  DOC_NAME_MAX_LENGTH,
  HocuspocusType,
  MessageType,
  SyncStep,
  checkHocuspocusClose,
  encodeHocuspocusAuthenticated,
  encodeHocuspocusClose,
  encodeHocuspocusPermissionDenied,
  encodeHocuspocusSyncStatus,
  readHocuspocusHeader,
  readHocuspocusStateless,
  readHocuspocusToken,
} from '@streambed/protocol'
import type { Admission } from './admission.js'
import type { Grant } from './auth.js'
import type { Connection, SocketLike } from './connection.js'
import type { DocFrames, DocFramesRegistry } from './hocuspocus-frames.js'
import type { NodeMetrics } from './metrics.js'
import { Inbox, TokenBucket } from './rate-limit.js'
import type { NodeRuntime } from './runtime.js'

export interface HocuspocusSessionOptions {
  runtime: NodeRuntime
  admission: Admission
  /** The WebSocket (a UwsSocket in production). */
  socket: SocketLike
  frames: DocFramesRegistry
  logger: Logger
  metrics: NodeMetrics
  /** The upgrade request's Origin header ('' when none). */
  origin: string
  /** A token from the upgrade request (`?token=`, Authorization), for auth messages without one. */
  upgradeToken: string | undefined
  /** An error when the node takes no new connections (draining, Redis away), else null. */
  refusal: () => AppError | null
  /** Largest accepted WebSocket message. */
  maxMessageBytes: number
  /** Per document of the socket, as for a y-websocket socket (see Inbox). */
  maxMessagesPerSecond: number
  maxBytesPerSecond: number
  maxHeldSeconds: number
  /** Documents one socket may have open (or authenticating) at once. */
  maxDocs: number
  /** A socket with no document open for this long is closed (4401). */
  authTimeoutMs: number
  /**
   * Updates held for the client's sync step 2 (see DocLink.early) wait at most this long after
   * the node sent its own step 1 (which the client answers with its step 2); then the socket is
   * closed (4529).
   */
  stepTwoTimeoutMs: number
  /** The node's Hocuspocus sockets with no document open (they count against maxConnections). */
  idleSockets: IdleSockets
  /** Sockets the node holds at most (MAX_CONNECTIONS). */
  maxConnections: number
}

/**
 * The Hocuspocus sockets of a node with no document open. Each counts as one connection against
 * MAX_CONNECTIONS, as a y-websocket socket does; a socket with documents open counts as their
 * Connections (the runtime's count), so its first document takes over the place it held.
 */
export class IdleSockets {
  count = 0
}

/**
 * Whether a close code ends only its document: 44xx codes are final for a y-websocket client
 * (it stops), so the document alone is closed with a Hocuspocus close message and the provider
 * stops it. Every other code (1001, 45xx) is one a y-websocket client answers by reconnecting
 * and resyncing — and the provider reconnects and resyncs only whole sockets, so those close the
 * socket.
 */
const closesDocumentOnly = (code: number): boolean => code >= 4400 && code < 4500

/**
 * Whether a refused admission ends only its document: as closesDocumentOnly, and a full node or
 * document (TOO_MANY_CONNECTIONS, 4503 on a y-websocket socket). Reconnecting the socket would
 * not make room: the provider would reconnect in a loop, taking its other documents down each
 * time. A node that takes no sockets at all (draining, Redis away: `refusal`) closes the socket.
 */
const refusesDocumentOnly = (err: unknown): boolean => {
  const d = describeError(err)
  return closesDocumentOnly(d.closeCode) || d.code === 'TOO_MANY_CONNECTIONS'
}

/** Types a Hocuspocus client sends; the rest (4, 6, 8) only servers send. */
const clientTypes: ReadonlySet<number> = new Set([
  HocuspocusType.sync,
  HocuspocusType.awareness,
  HocuspocusType.auth,
  HocuspocusType.queryAwareness,
  HocuspocusType.stateless,
  HocuspocusType.close,
])

const truncate = (reason: string) => Buffer.from(reason).subarray(0, 123).toString()

/**
 * One WebSocket speaking the multiplexed protocol of `@hocuspocus/provider`: frames in are routed
 * by document name to a DocLink — one runtime Connection per document, with its own grant, rate
 * limits, write slots and awareness ownership, exactly as if it had a y-websocket socket of its
 * own. A document opens with an auth message (admission as for a y-websocket upgrade) and closes
 * with the client's close message, a 44xx close (a close message for that document only), or the
 * socket's end.
 *
 * Frames whose document name and type cannot be read close the socket (4400); so do errors a
 * y-websocket client would answer by reconnecting (see closesDocumentOnly).
 *
 * Memory: frames held for a document until it can handle them (while it authenticates, and its
 * updates until the client's sync step 2) share one budget per socket, `heldBytes`.
 */
export class HocuspocusSession {
  private readonly links = new Map<string, DocLink>()
  /** Spent by frames that open a document or belong to none: bounds re-authentication churn. */
  private readonly unattached: TokenBucket
  /** Bytes held by all documents of the socket (see HeldFrames). */
  readonly heldBytes: HeldBytes
  private ending = false
  /** Documents with a runtime Connection (open, or closing). */
  private openDocs = 0
  /** Whether this socket is counted in `idleSockets`. */
  private countedIdle = false
  private authTimer: NodeJS.Timeout | undefined

  constructor(readonly opts: HocuspocusSessionOptions) {
    this.unattached = new TokenBucket(opts.maxMessagesPerSecond, 2 * opts.maxMessagesPerSecond)
    // As many bytes as one y-websocket socket's Inbox lets through in a burst (burstBytes in
    // ws-behavior: twice WS_MAX_BYTES_PER_SECOND or twice WS_MAX_MESSAGE_BYTES, the larger): a
    // Hocuspocus socket holds no more for all its documents together. Two messages of the
    // largest size always fit.
    this.heldBytes = new HeldBytes(2 * Math.max(opts.maxBytesPerSecond, opts.maxMessageBytes))
    this.idle()
  }

  /**
   * With no document open: counted as an idle socket, and closed (4401) after `authTimeoutMs`
   * unless a document opens meanwhile — at the start, and again each time its last one closes.
   */
  private idle(): void {
    if (this.ending || this.openDocs > 0) return
    if (!this.countedIdle) {
      this.countedIdle = true
      this.opts.idleSockets.count++
    }
    if (this.authTimer) return
    this.authTimer = setTimeout(() => {
      this.authTimer = undefined
      if (this.openDocs > 0) return
      const seconds = Math.round(this.opts.authTimeoutMs / 1000)
      this.fail(new AppError('UNAUTHORIZED', `no document authenticated within ${seconds} s`))
    }, this.opts.authTimeoutMs)
    this.authTimer.unref()
  }

  /** A document opened, or the socket closed: not idle. */
  private busy(): void {
    if (this.authTimer) clearTimeout(this.authTimer)
    this.authTimer = undefined
    if (this.countedIdle) {
      this.countedIdle = false
      this.opts.idleSockets.count--
    }
  }

  /** One WebSocket message; `data` is only valid during the call. */
  message(data: ArrayBuffer): void {
    if (this.ending) return
    const { maxMessageBytes } = this.opts
    if (data.byteLength > maxMessageBytes) {
      const why = `message of ${data.byteLength} bytes exceeds WS_MAX_MESSAGE_BYTES (${maxMessageBytes})`
      const err = new AppError('TOO_LARGE', why)
      let doc: string | undefined
      try {
        doc = readHocuspocusHeader(new Uint8Array(data)).doc
      } catch {
        // Not even a header: the socket goes (below).
      }
      const link = doc === undefined ? undefined : this.links.get(doc)
      return link ? link.fail(err) : this.fail(err)
    }
    this.route(new Uint8Array(data.slice(0)))
  }

  /** Routes a frame (a copy the session owns) to its document. */
  route(frame: Uint8Array): void {
    if (this.ending) return
    let header: ReturnType<typeof readHocuspocusHeader>
    try {
      header = readHocuspocusHeader(frame)
    } catch (err) {
      return this.fail(err)
    }
    const link = this.links.get(header.doc)
    if (link) return link.push(frame)
    const waitMs = this.unattached.take(1)
    if (waitMs > this.opts.maxHeldSeconds * 1000) {
      const why = `sends more than WS_MAX_MESSAGES_PER_SECOND (${this.opts.maxMessagesPerSecond}) frames that open or belong to no document`
      return this.fail(new AppError('RATE_LIMITED', why))
    }
    if (header.type === HocuspocusType.auth) return this.attach(header.doc, frame, header.payloadAt)
    if (!clientTypes.has(header.type))
      return this.fail(
        new AppError(
          'BAD_MESSAGE',
          `message type ${header.type} (for document "${header.doc.slice(0, 100)}") is not one a Hocuspocus client sends`,
        ),
      )
    this.unattachedFrame(header.doc, frame, header.payloadAt, header.type)
  }

  /**
   * A frame of a document that is not open here: never authenticated, refused, or closed. The
   * provider keeps sending a closed document's updates; each is answered "not stored", so its
   * unsynced-changes count stays up (nothing is silently dropped). Everything else is ignored.
   */
  private unattachedFrame(doc: string, frame: Uint8Array, payloadAt: number, type: number): void {
    if (type !== HocuspocusType.sync || doc.length > DOC_NAME_MAX_LENGTH) return
    const step = frame[payloadAt]
    if (step === SyncStep.step2 || step === SyncStep.update)
      this.send([encodeHocuspocusSyncStatus(doc, false)])
  }

  /** An auth message for a document not open here: admission, as for a y-websocket upgrade. */
  private attach(doc: string, frame: Uint8Array, payloadAt: number): void {
    let token: string
    try {
      token = readHocuspocusToken(frame, payloadAt)
    } catch (err) {
      return this.deny(doc, err)
    }
    if (this.links.size >= this.opts.maxDocs)
      return this.deny(
        doc,
        new AppError('FORBIDDEN', `more than ${this.opts.maxDocs} documents open on one socket`),
      )
    const refusal = this.opts.refusal()
    if (refusal) return this.fail(refusal)
    // Idle sockets count too (see IdleSockets), and this one's documents still authenticating;
    // its first document takes its own place.
    const { runtime, idleSockets, maxConnections } = this.opts
    const others = idleSockets.count - (this.countedIdle ? 1 : 0)
    const authenticating = this.links.size - this.openDocs
    if (runtime.connectionCount + others + authenticating >= maxConnections)
      return this.deny(
        doc,
        new AppError(
          'TOO_MANY_CONNECTIONS',
          `node holds MAX_CONNECTIONS (${maxConnections}) sockets`,
        ),
      )
    const link = new DocLink(this, doc)
    this.links.set(doc, link)
    // Names travel unencoded here; admission takes them as a URL path does (percent-encoded).
    Promise.resolve()
      .then(() =>
        this.opts.admission.socket(
          encodeURIComponent(doc),
          token || this.opts.upgradeToken,
          this.opts.origin,
        ),
      )
      .then(
        ({ grant }) => link.open(grant),
        (err: unknown) => link.refused(err),
      )
  }

  /** Tells the client it may not open `doc` (permission denied with the reason). */
  deny(doc: string, err: unknown): void {
    const d = describeError(err)
    this.opts.metrics.errors.inc({ code: d.code })
    this.opts.logger.info(
      { code: d.code, reason: d.message, doc: doc.slice(0, 100) },
      'refused Hocuspocus document',
    )
    this.send([encodeHocuspocusPermissionDenied(doc, d.message)])
  }

  /** Sends frames on the socket; a socket that cannot take them is closed (4508). */
  send(frames: readonly Uint8Array[]): boolean {
    if (this.ending) return true
    if (this.opts.socket.send(frames)) return true
    this.opts.metrics.closes.inc({ code: String(CloseCode.slowConsumer) })
    this.end(CloseCode.slowConsumer, 'send buffer full: client reads too slowly')
    return false
  }

  /** Closes the whole socket with the close code of `err`. */
  fail(err: unknown): void {
    if (this.ending) return
    const d = describeError(err)
    this.opts.metrics.errors.inc({ code: d.code })
    this.opts.metrics.closes.inc({ code: String(d.closeCode) })
    this.opts.logger.info({ code: d.code, reason: d.message }, 'closing Hocuspocus socket')
    this.end(d.closeCode, d.message)
  }

  /**
   * Ends the socket (its close event then runs `closed`). Counted by the caller: a Connection
   * counts the closes it initiates.
   */
  end(code: number, reason: string): void {
    if (this.ending) return
    this.ending = true
    this.opts.socket.end(code, truncate(reason))
  }

  /** A document opens (it gets a runtime Connection). */
  opening(): void {
    this.openDocs++
    this.busy()
  }

  /**
   * `link` closed (its own close or the client's) or was refused; its name may be opened again.
   * `wasOpen`: it had opened (see `opening`).
   */
  forget(link: DocLink, wasOpen: boolean): void {
    if (this.links.get(link.doc) === link) this.links.delete(link.doc)
    if (wasOpen) this.openDocs--
    this.idle()
  }

  /** The socket closed (by either side): every document on it closes. */
  closed(): void {
    this.ending = true
    this.busy()
    const links = [...this.links.values()]
    this.links.clear()
    for (const link of links) link.socketClosed()
  }
}

/** Bytes held for the documents of one socket, at most `max` (see HocuspocusSession). */
class HeldBytes {
  bytes = 0
  constructor(readonly max: number) {}
}

type LinkState = 'authenticating' | 'open' | 'closing' | 'closed'

/**
 * Frames of one document held back in order: at most `maxFrames` of them, and their bytes count
 * against the socket's budget (shared by every HeldFrames of the socket).
 */
class HeldFrames {
  private frames: Uint8Array[] = []
  private bytes = 0

  constructor(
    private readonly maxFrames: number,
    private readonly budget: HeldBytes,
  ) {}

  get size(): number {
    return this.frames.length
  }

  /** Holds `frame`; false once more frames than `maxFrames` or more bytes than the budget. */
  push(frame: Uint8Array): boolean {
    this.frames.push(frame)
    this.bytes += frame.length
    this.budget.bytes += frame.length
    return this.frames.length <= this.maxFrames && this.budget.bytes <= this.budget.max
  }

  /** Everything held, in order; nothing is held afterwards. */
  take(): Uint8Array[] {
    const frames = this.frames
    this.budget.bytes -= this.bytes
    this.frames = []
    this.bytes = 0
    return frames
  }
}

/**
 * One document on a Hocuspocus socket, as the runtime sees it: a SocketLike whose messages are
 * prefixed with the document name, whose 44xx close is a close message for the document, and
 * which acknowledges stored updates with SyncStatus.
 */
class DocLink implements SocketLike {
  readonly remoteAddress: string
  private state: LinkState = 'authenticating'
  private conn: Connection | null = null
  private grant: Grant | null = null
  private frames: DocFrames | null = null
  /** Frames that passed the rate limits while the document was authenticating. */
  private readonly pending: HeldFrames
  /**
   * Sync updates that came between the client's first sync step 1 and its step 2 (y-websocket
   * messages). The provider sends the updates it queued while disconnected as soon as the socket
   * is back — after its step 1, before its step 2; if the node it lost held back some earlier
   * ones, these would skip clocks (refused after a wait, decision 0010). The step 2 holds all of
   * them (it is computed later, from the same document), so they go after it and add nothing.
   * Updates of a client that sent no step 1 go on at once, as on a y-websocket socket.
   */
  private readonly early: HeldFrames
  private stepTwo: 'not-asked' | 'awaited' | 'seen' = 'not-asked'
  /** Runs from the node's sync step 1 until the client's step 2 (see stepTwoTimeoutMs). */
  private stepTwoTimer: NodeJS.Timeout | undefined
  private readonly inbox: Inbox
  /** Whether the document opened (got a Connection): see HocuspocusSession.opening. */
  private wasOpen = false

  constructor(
    private readonly session: HocuspocusSession,
    readonly doc: string,
  ) {
    const { opts } = session
    this.remoteAddress = opts.socket.remoteAddress
    // As many frames as the rate limits let through in a burst; bytes: the socket's budget.
    const maxFrames = 2 * opts.maxMessagesPerSecond
    this.pending = new HeldFrames(maxFrames, session.heldBytes)
    this.early = new HeldFrames(maxFrames, session.heldBytes)
    this.inbox = new Inbox({
      messagesPerSecond: opts.maxMessagesPerSecond,
      bytesPerSecond: opts.maxBytesPerSecond,
      burstMessages: 2 * opts.maxMessagesPerSecond,
      burstBytes: 2 * Math.max(opts.maxBytesPerSecond, opts.maxMessageBytes),
      maxHeldSeconds: opts.maxHeldSeconds,
      deliver: (frame) => this.receive(frame),
    })
  }

  /** A frame of this document from the network. */
  push(frame: Uint8Array): void {
    if (this.inbox.push(frame)) return
    const { maxMessagesPerSecond, maxBytesPerSecond, maxHeldSeconds } = this.session.opts
    const why = `sends more than WS_MAX_MESSAGES_PER_SECOND (${maxMessagesPerSecond}) or WS_MAX_BYTES_PER_SECOND (${maxBytesPerSecond}) for ${maxHeldSeconds} s`
    this.fail(new AppError('RATE_LIMITED', why))
  }

  /** Closes this document (or the socket, see closesDocumentOnly) with the code of `err`. */
  fail(err: unknown): void {
    if (this.conn && (this.state === 'open' || this.state === 'closing'))
      return this.session.opts.runtime.reject(this.conn, err)
    if (this.state === 'authenticating' && refusesDocumentOnly(err)) {
      // Refused before it opened: as a refused admission.
      return this.refused(err)
    }
    this.session.fail(err)
  }

  /** A frame that passed the rate limits. */
  private receive(frame: Uint8Array): void {
    switch (this.state) {
      case 'authenticating':
        return this.hold(frame)
      case 'open':
      case 'closing':
        return this.handle(frame)
      case 'closed':
        // Held by the rate limit past this document's close: as if it arrived now.
        return this.session.route(frame)
    }
  }

  private hold(frame: Uint8Array): void {
    if (!this.pending.push(frame)) this.session.fail(this.overflow('while it authenticates'))
  }

  /** Too much held for this document, or for the socket's documents together. */
  private overflow(when: string): AppError {
    const { max, bytes } = this.session.heldBytes
    return new AppError(
      'OVERLOADED',
      bytes > max
        ? `more than ${max} bytes held for the documents of one socket (2 × max(WS_MAX_BYTES_PER_SECOND, WS_MAX_MESSAGE_BYTES))`
        : `more than ${2 * this.session.opts.maxMessagesPerSecond} messages held for a document ${when} (2 × WS_MAX_MESSAGES_PER_SECOND)`,
    )
  }

  /** A y-websocket sync message of this document for the runtime (see `early`). */
  private sync(conn: Connection, message: Uint8Array, step: number | undefined): void {
    const { runtime } = this.session.opts
    if (step === SyncStep.update && this.stepTwo === 'awaited') {
      if (!this.early.push(message))
        this.session.fail(this.overflow('before the sync step 2 of the client'))
      return
    }
    runtime.message(conn, message)
    if (step === SyncStep.step1 && this.stepTwo === 'not-asked') this.stepTwo = 'awaited'
    if (step === SyncStep.step2) this.releaseEarly()
  }

  /** The step 2 came, or the document closes: the updates held before it go to the runtime. */
  private releaseEarly(): void {
    this.stepTwo = 'seen'
    this.clearStepTwoTimer()
    const { conn } = this
    if (!conn) return
    for (const message of this.early.take()) {
      if (conn.closed) return
      this.session.opts.runtime.message(conn, message)
    }
  }

  private handle(frame: Uint8Array): void {
    const { conn } = this
    if (!conn) return
    const { runtime } = this.session.opts
    const { type, messageAt, payloadAt } = readHocuspocusHeader(frame)
    switch (type) {
      case HocuspocusType.sync:
        return this.sync(conn, frame.subarray(messageAt), frame[payloadAt])
      case HocuspocusType.awareness:
      case HocuspocusType.queryAwareness:
        // From the type on, these are y-websocket messages byte for byte.
        return runtime.message(conn, frame.subarray(messageAt))
      case HocuspocusType.auth:
        // Already open: answered with the access it has (the token is not checked again).
        if (this.state === 'open') this.session.send([this.authenticated()])
        return
      case HocuspocusType.stateless: {
        let payload: Uint8Array
        try {
          payload = readHocuspocusStateless(frame, payloadAt)
        } catch (err) {
          return runtime.reject(conn, err)
        }
        return runtime.relayStateless(conn, payload)
      }
      case HocuspocusType.close:
        try {
          checkHocuspocusClose(frame, payloadAt)
        } catch (err) {
          return runtime.reject(conn, err)
        }
        return this.detach()
      default:
        return runtime.reject(
          conn,
          new AppError(
            'BAD_MESSAGE',
            clientTypes.has(type) || type <= HocuspocusType.syncStatus
              ? `message type ${type} is not one a Hocuspocus client sends`
              : `unknown message type ${type}`,
          ),
        )
    }
  }

  /**
   * The node sent its sync step 1: the client answers it with its step 2, within
   * `stepTwoTimeoutMs`. Past that, updates held for it close the socket (4529, as a y-websocket
   * socket whose messages wait too long); with none held, nothing waits for it any more.
   */
  private awaitStepTwo(): void {
    if (this.stepTwo !== 'awaited' || this.stepTwoTimer) return
    const { stepTwoTimeoutMs } = this.session.opts
    this.stepTwoTimer = setTimeout(() => {
      this.stepTwoTimer = undefined
      if (this.state !== 'open' || this.stepTwo !== 'awaited') return
      if (this.early.size === 0) {
        this.stepTwo = 'seen'
        return
      }
      const held = this.early.size === 1 ? '1 held update' : `${this.early.size} held updates`
      const why = `no sync step 2 within ${Math.round(stepTwoTimeoutMs / 1000)} s of the node's sync step 1, with ${held}`
      this.session.fail(new AppError('OVERLOADED', why))
    }, stepTwoTimeoutMs)
    this.stepTwoTimer.unref()
  }

  private clearStepTwoTimer(): void {
    if (this.stepTwoTimer) clearTimeout(this.stepTwoTimer)
    this.stepTwoTimer = undefined
  }

  private authenticated(): Uint8Array {
    const scope = this.grant?.access === 'write' ? 'read-write' : 'readonly'
    return encodeHocuspocusAuthenticated(this.doc, scope)
  }

  /** Admission granted the document: it opens, then handles what arrived meanwhile. */
  open(grant: Grant): void {
    if (this.state !== 'authenticating') return
    const { runtime } = this.session.opts
    this.grant = grant
    this.frames = this.session.opts.frames.acquire(this.doc)
    this.state = 'open'
    this.wasOpen = true
    this.session.opening()
    this.session.send([this.authenticated()])
    // The socket may have gone meanwhile (send buffer full): closeDown ran.
    if (this.state !== 'open') return
    const conn = runtime.open(this, this.doc, grant)
    this.conn = conn
    // A draining node closes it at once (the whole socket: 1001).
    if (conn.closed && this.state === 'open') this.closeDown()
    const held = this.pending.take()
    let i = 0
    for (; i < held.length && this.state === 'open'; i++) this.handle(held[i] as Uint8Array)
    // Closed by one of them: by the provider's close message, what follows is the document's
    // next attach on this socket (an auth, a sync step 1: detach and attach again, as React
    // StrictMode does), so the rest is routed as frames that arrive now; after an error, they
    // are answered as for a closed document.
    for (; i < held.length; i++) this.session.route(held[i] as Uint8Array)
  }

  /** Admission refused the document: denied (see refusesDocumentOnly), or the socket goes. */
  refused(err: unknown): void {
    if (this.state !== 'authenticating') return
    if (!refusesDocumentOnly(err)) return this.session.fail(err)
    this.state = 'closed'
    this.session.forget(this, false)
    this.session.deny(this.doc, err)
    // What the client sent meanwhile was not accepted; updates are answered "not stored".
    for (const frame of this.pending.take()) this.session.route(frame)
  }

  /** The client's close message: the provider detached the document. */
  private detach(): void {
    if (this.state !== 'open') return
    this.releaseEarly()
    this.closeDown()
  }

  /** The socket closed: held frames are handled all the same, then the document closes. */
  socketClosed(): void {
    if (this.state === 'open') {
      this.state = 'closing'
      this.inbox.flush()
      this.releaseEarly()
    }
    // An authenticating document is dropped: nothing it sent was acknowledged; the provider
    // sends it again after it reconnects.
    this.pending.take()
    this.closeDown()
  }

  private closeDown(): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.clearStepTwoTimer()
    this.session.forget(this, this.wasOpen)
    if (this.conn) this.session.opts.runtime.closed(this.conn)
    if (this.frames) this.session.opts.frames.release(this.frames)
    this.frames = null
  }

  // SocketLike, for the runtime's Connection:

  send(messages: readonly Uint8Array[]): boolean {
    // Nothing follows the close message of the document.
    if (this.state !== 'open') return true
    const frames = this.frames as DocFrames
    const out: Uint8Array[] = []
    for (const m of messages) {
      // The y-websocket "permission denied" a read-only connection gets once: the provider would
      // read it as a token request. It learned its scope ('readonly') when it authenticated, and
      // each update it sends is answered "not stored".
      if (m[0] === MessageType.auth) continue
      if (m[0] === MessageType.sync && m[1] === SyncStep.step1) this.awaitStepTwo()
      out.push(frames.frame(m))
    }
    return out.length === 0 || this.session.send(out)
  }

  end(code: number, reason: string): void {
    if (this.state !== 'open') return
    if (!closesDocumentOnly(code)) return this.session.end(code, reason)
    // This document only: a close message tells the provider why (it stops the document, as a
    // y-websocket client stops on 44xx); frames it sent before are handled all the same.
    this.state = 'closing'
    this.session.send([encodeHocuspocusClose(this.doc, truncate(`${code}: ${reason}`))])
    this.inbox.flush()
    this.releaseEarly()
    this.closeDown()
  }

  acknowledge(updates: number, stored: boolean): void {
    if (this.state !== 'open' || !this.frames) return
    const status = stored ? this.frames.stored : this.frames.notStored
    this.session.send(Array.from({ length: updates }, () => status))
  }

  sendStateless(payload: Uint8Array): boolean {
    if (this.state !== 'open' || !this.frames) return true
    return this.session.send([this.frames.stateless(payload)])
  }
}
