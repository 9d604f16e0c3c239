import type { WebSocket, WebSocketBehavior } from 'uWebSockets.js'
import { AppError, describeError, type Logger } from '@streambed/common'
import { encodePermissionDenied } from '@streambed/protocol'
import type { Grant } from './auth.js'
import type { Connection } from './connection.js'
import { createReply, tokenFrom } from './http.js'
import type { NodeMetrics } from './metrics.js'
import type { NodeRuntime } from './runtime.js'
import { uWS } from './uws.js'
import { UwsSocket } from './uws-socket.js'

interface SocketData {
  doc: string | null
  grant: Grant | null
  error: unknown
  conn: Connection | null
  socket: UwsSocket<SocketData> | null
  closed: boolean
  remoteAddress: string
}

export interface WsBehaviorOptions {
  runtime: NodeRuntime
  metrics: NodeMetrics
  logger: Logger
  /** Resolves the document named by the URL path and the access the token grants to it. */
  authorize: (path: string, token: string | undefined) => Promise<{ doc: string; grant: Grant }>
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
      const remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString()
      const reply = createReply(res, opts.onHttpError)
      const refusal = opts.refusal()
      if (refusal) return reply.error(refusal)
      void opts
        .authorize(url.slice(1), token)
        .then(
          ({ doc, grant }) => ({ doc, grant, error: null }),
          (error: unknown) => ({ doc: null, grant: null, error }),
        )
        .then((auth) => {
          if (reply.aborted) return
          res.cork(() => {
            res.upgrade<SocketData>(
              { ...auth, conn: null, socket: null, closed: false, remoteAddress },
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
      data.conn = runtime.open(socket, data.doc, data.grant)
    },
    message: (ws, message) => {
      const { conn } = ws.getUserData()
      if (!conn) return
      if (message.byteLength > opts.maxMessageBytes) {
        const limit = opts.maxMessageBytes
        const why = `message of ${message.byteLength} bytes exceeds WS_MAX_MESSAGE_BYTES (${limit})`
        return runtime.reject(conn, new AppError('TOO_LARGE', why))
      }
      // The ArrayBuffer is only valid during this callback: copy it.
      runtime.message(conn, new Uint8Array(message.slice(0)))
    },
    drain: (ws) => {
      ws.getUserData().socket?.drained()
    },
    close: (ws) => {
      const data = ws.getUserData()
      data.closed = true
      if (data.conn) runtime.closed(data.conn)
    },
  }
}
