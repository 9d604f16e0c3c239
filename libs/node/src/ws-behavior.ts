import type { WebSocket, WebSocketBehavior } from 'uWebSockets.js'
import { AppError, describeError, type Logger } from '@streambed/common'
import { encodePermissionDenied } from '@streambed/protocol'
import type { Admission } from './admission.js'
import type { Grant } from './auth.js'
import type { Connection } from './connection.js'
import { createReply, tokenFrom } from './http.js'
import type { NodeMetrics } from './metrics.js'
import { Inbox } from './rate-limit.js'
import type { NodeRuntime } from './runtime.js'
import { uWS } from './uws.js'
import { UwsSocket } from './uws-socket.js'

/** Seconds of messages a socket over its rate may have waiting before it is closed (4529). */
const MAX_HELD_SECONDS = 4

interface SocketData {
  doc: string | null
  grant: Grant | null
  error: unknown
  conn: Connection | null
  socket: UwsSocket<SocketData> | null
  closed: boolean
  remoteAddress: string
  inbox: Inbox | null
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
}

/**
 * The WebSocket side of a node on uWebSockets.js: upgrade (authorisation), open, frames in,
 * drain and close, each handed to the runtime. Rejections are delivered after the upgrade, as
 * close codes a WebSocket client can see.
 */
export const wsBehavior = (opts: WsBehaviorOptions): WebSocketBehavior<SocketData> => {
  const { runtime, metrics, logger } = opts
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
    compression: uWS.DISABLED,
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
      void opts.admission
        .socket(url.slice(1), token, origin)
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
        if (d.code === 'UNAUTHORIZED' || d.code === 'FORBIDDEN')
          ws.send(encodePermissionDenied(d.message), true)
        ws.end(d.closeCode, d.message.slice(0, 123))
        return
      }
      const socket = new UwsSocket(ws, data, {
        maxBackpressureBytes: opts.maxBackpressureBytes,
        maxStallMs: opts.idleTimeoutS * 1000,
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
      if (!conn) return
      if (message.byteLength > opts.maxMessageBytes) {
        const limit = opts.maxMessageBytes
        const why = `message of ${message.byteLength} bytes exceeds WS_MAX_MESSAGE_BYTES (${limit})`
        return runtime.reject(conn, new AppError('TOO_LARGE', why))
      }
      // The ArrayBuffer is only valid during this callback: copy it.
      if (!data.inbox?.push(new Uint8Array(message.slice(0)))) {
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
    },
  }
}
