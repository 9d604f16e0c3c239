import type { WebSocket, WebSocketBehavior } from 'uWebSockets.js'
import { AppError, describeError, type Logger } from '@streambed/common'
import { encodePermissionDenied } from '@streambed/protocol'
import type { Admission } from './admission.js'
import type { Grant } from './auth.js'
import type { Connection } from './connection.js'
import { DocFramesRegistry } from './hocuspocus-frames.js'
import { HocuspocusSession, IdleSockets } from './hocuspocus-session.js'
import { createReply, tokenFrom } from './http.js'
import type { NodeMetrics } from './metrics.js'
import { Inbox } from './rate-limit.js'
import type { NodeRuntime } from './runtime.js'
import { uWS } from './uws.js'
import { UwsSocket } from './uws-socket.js'

/** Seconds of messages a socket over its rate may have waiting before it is closed (4529). */
const MAX_HELD_SECONDS = 4

/** The path on which sockets speak the Hocuspocus protocol (docs/decisions/0011). */
export const HOCUSPOCUS_PATH = '/'

/** What a Hocuspocus socket brings from its upgrade request. */
interface HocuspocusUpgrade {
  origin: string
  token: string | undefined
}

interface SocketData {
  doc: string | null
  grant: Grant | null
  error: unknown
  conn: Connection | null
  socket: UwsSocket<SocketData> | null
  closed: boolean
  remoteAddress: string
  inbox: Inbox | null
  /** Set on sockets opened on HOCUSPOCUS_PATH; they have no `doc` and no `conn` of their own. */
  hocuspocus: HocuspocusUpgrade | null
  session: HocuspocusSession | null
}

export interface WsBehaviorOptions {
  runtime: NodeRuntime
  metrics: NodeMetrics
  logger: Logger
  admission: Admission
  /**
   * Messages and bytes per second one socket may send (bursts of twice that): past them its
   * messages wait and are handled as the budget refills; with more than 4 s of them waiting, the
   * socket is closed (4529).
   */
  maxMessagesPerSecond: number
  maxBytesPerSecond: number
  /** An error when the node takes no new sockets (draining, Redis away), else null. */
  refusal: () => AppError | null
  onHttpError: (err: unknown, status: number) => void
  /** Largest accepted WebSocket message. */
  maxMessageBytes: number
  /** Send buffer per socket above which the socket is closed (4508). */
  maxBackpressureBytes: number
  /** Seconds without traffic before uWS pings, then closes, a socket. */
  idleTimeoutS: number
  /** permessage-deflate (WS_COMPRESSION): off, one shared compressor, or one per socket. Default off. */
  compression?: WsCompression
  /** With compression, messages from this size up are compressed (WS_COMPRESS_MIN_BYTES). */
  compressMinBytes?: number
  /** Documents one Hocuspocus socket may have open at once (default 64). */
  hocuspocusMaxDocs?: number
  /**
   * Sockets the node holds at most (MAX_CONNECTIONS): a y-websocket socket counts as one, a
   * Hocuspocus socket as its open documents, or one while it has none (see IdleSockets).
   */
  maxConnections: number
}

/**
 * The WebSocket side of a node on uWebSockets.js: upgrade (authorisation), open, frames in,
 * drain and close, each handed to the runtime. Rejections are delivered after the upgrade, as
 * close codes a WebSocket client can see.
 */
/** WS_COMPRESSION values. */
export type WsCompression = 'off' | 'shared' | 'dedicated'

/**
 * uWS compressor flags: `shared` deflates with one compressor for all sockets (no memory per
 * socket, no context kept between messages); `dedicated` keeps a sliding window per socket
 * (measured: about 66 KiB of RSS per socket, and no better ratio on Yjs updates: bench `wire`). Incoming messages are inflated with the
 * shared decompressor either way (uWS holds the inflated size to maxPayloadLength).
 */
const compressOptions = (mode: WsCompression): number =>
  mode === 'off'
    ? uWS.DISABLED
    : (mode === 'shared' ? uWS.SHARED_COMPRESSOR : uWS.DEDICATED_COMPRESSOR_4KB) |
      uWS.SHARED_DECOMPRESSOR

export const wsBehavior = (opts: WsBehaviorOptions): WebSocketBehavior<SocketData> => {
  const { runtime, metrics, logger } = opts
  const compressMinBytes =
    (opts.compression ?? 'off') === 'off' ? null : (opts.compressMinBytes ?? 1024)
  const docFrames = new DocFramesRegistry()
  const idleSockets = new IdleSockets()
  const noSession = { hocuspocus: null, session: null }
  /** A new socket would be one more than MAX_CONNECTIONS (answered 4503 once upgraded). */
  const full = () =>
    runtime.connectionCount + idleSockets.count >= opts.maxConnections
      ? new AppError(
          'TOO_MANY_CONNECTIONS',
          `node holds MAX_CONNECTIONS (${opts.maxConnections}) sockets`,
        )
      : null
  return {
    // uWS drops a connection without a close frame past its cap; up to twice the limit, the
    // message handler closes with 4413 and a reason instead.
    maxPayloadLength: opts.maxMessageBytes * 2,
    // Our limit is enforced by UwsSocket; uWS's own, higher, limit only guarantees that the
    // 4508 close frame still fits behind the buffered data (uWS drops frames past its limit).
    maxBackpressure: opts.maxBackpressureBytes + 2 * opts.maxMessageBytes,
    closeOnBackpressureLimit: 0,
    idleTimeout: opts.idleTimeoutS,
    sendPingsAutomatically: true,
    compression: compressOptions(opts.compression ?? 'off'),
    upgrade: (res, req, context) => {
      const url = req.getUrl()
      const token = tokenFrom(req.getHeader('authorization'), req.getQuery())
      const key = req.getHeader('sec-websocket-key')
      const protocol = req.getHeader('sec-websocket-protocol')
      const extensions = req.getHeader('sec-websocket-extensions')
      const origin = req.getHeader('origin')
      const remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString()
      const reply = createReply(res, opts.onHttpError)
      const refusal = opts.refusal()
      if (refusal) return reply.error(refusal)
      if (url === HOCUSPOCUS_PATH) {
        // Documents and tokens come later, in auth messages (HocuspocusSession).
        const error = opts.admission.originAllowed(origin)
          ? full()
          : new AppError('FORBIDDEN', `origin ${origin} is not in ALLOWED_ORIGINS`)
        res.upgrade<SocketData>(
          {
            doc: null,
            grant: null,
            error,
            conn: null,
            socket: null,
            closed: false,
            remoteAddress,
            inbox: null,
            hocuspocus: { origin, token },
            session: null,
          },
          key,
          protocol,
          extensions,
          context,
        )
        return
      }
      const isFull = full()
      void (isFull ? Promise.reject(isFull) : opts.admission.socket(url.slice(1), token, origin))
        .then(
          ({ doc, grant }) => ({ doc, grant, error: null }),
          (error: unknown) => ({ doc: null, grant: null, error }),
        )
        .then((auth) => {
          if (reply.aborted) return
          res.cork(() => {
            res.upgrade<SocketData>(
              {
                ...auth,
                conn: null,
                socket: null,
                closed: false,
                remoteAddress,
                inbox: null,
                ...noSession,
              },
              key,
              protocol,
              extensions,
              context,
            )
          })
        })
    },
    open: (ws: WebSocket<SocketData>) => {
      const data = ws.getUserData()
      if (data.hocuspocus && data.error === null) {
        const socket = new UwsSocket(ws, data, {
          maxBackpressureBytes: opts.maxBackpressureBytes,
          maxStallMs: opts.idleTimeoutS * 1000,
          compressMinBytes,
        })
        data.socket = socket
        data.session = new HocuspocusSession({
          ...opts,
          socket,
          frames: docFrames,
          origin: data.hocuspocus.origin,
          upgradeToken: data.hocuspocus.token,
          maxHeldSeconds: MAX_HELD_SECONDS,
          maxDocs: opts.hocuspocusMaxDocs ?? 64,
          authTimeoutMs: opts.idleTimeoutS * 1000,
          stepTwoTimeoutMs: opts.idleTimeoutS * 1000,
          idleSockets,
        })
        return
      }
      if (data.error !== null || data.doc === null || data.grant === null) {
        const d = describeError(
          data.error ?? new AppError('INTERNAL', 'upgrade without a document'),
        )
        metrics.errors.inc({ code: d.code })
        metrics.closes.inc({ code: String(d.closeCode) })
        logger.info(
          { code: d.code, reason: d.message, remoteAddress: data.remoteAddress },
          'rejected connection',
        )
        if ((d.code === 'UNAUTHORIZED' || d.code === 'FORBIDDEN') && !data.hocuspocus)
          ws.send(encodePermissionDenied(d.message), true)
        ws.end(d.closeCode, d.message.slice(0, 123))
        return
      }
      const socket = new UwsSocket(ws, data, {
        maxBackpressureBytes: opts.maxBackpressureBytes,
        maxStallMs: opts.idleTimeoutS * 1000,
        compressMinBytes,
      })
      data.socket = socket
      const conn = runtime.open(socket, data.doc, data.grant)
      data.conn = conn
      data.inbox = new Inbox({
        messagesPerSecond: opts.maxMessagesPerSecond,
        bytesPerSecond: opts.maxBytesPerSecond,
        burstMessages: 2 * opts.maxMessagesPerSecond,
        // Two messages of the largest size always fit the burst.
        burstBytes: 2 * Math.max(opts.maxBytesPerSecond, opts.maxMessageBytes),
        maxHeldSeconds: MAX_HELD_SECONDS,
        deliver: (frame) => runtime.message(conn, frame),
      })
    },
    message: (ws, message) => {
      const data = ws.getUserData()
      const { conn } = data
      if (!conn) return data.session?.message(message)
      if (message.byteLength > opts.maxMessageBytes) {
        const limit = opts.maxMessageBytes
        const why = `message of ${message.byteLength} bytes exceeds WS_MAX_MESSAGE_BYTES (${limit})`
        return runtime.reject(conn, new AppError('TOO_LARGE', why))
      }
      // Hop trace: the frame's arrival, for an update appended while this callback runs.
      const trace = runtime.trace
      if (trace) trace.frameIn = trace.now()
      // The ArrayBuffer is only valid during this callback: copy it.
      const accepted = data.inbox?.push(new Uint8Array(message.slice(0)))
      if (trace) trace.frameIn = 0
      if (!accepted) {
        const why = `sends more than WS_MAX_MESSAGES_PER_SECOND (${opts.maxMessagesPerSecond}) or WS_MAX_BYTES_PER_SECOND (${opts.maxBytesPerSecond}) for ${MAX_HELD_SECONDS} s`
        runtime.reject(conn, new AppError('RATE_LIMITED', why))
      }
    },
    drain: (ws) => {
      ws.getUserData().socket?.drained()
    },
    close: (ws) => {
      const data = ws.getUserData()
      // What the client sent before it left is handled all the same (appended, not dropped).
      data.inbox?.flush()
      data.closed = true
      if (data.conn) runtime.closed(data.conn)
      data.session?.closed()
    },
  }
}
