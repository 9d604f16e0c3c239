/**
 * Many cheap WebSocket connections from the load generator: plain `ws` sockets, opened in batches,
 * spread over loopback source addresses 127.0.0.1-127.0.0.N (each has its own ~28k ephemeral ports).
 */
import WebSocket from 'ws'

export interface SocketPool {
  readonly sockets: WebSocket[]
  /** Sockets that failed to open. */
  readonly failed: number
  close(): void
  /** Destroys the TCP connections without a close handshake (a dropped network). */
  terminate(): void
}

export const openMany = async (
  /** One URL for all, or the URL of the i-th socket. */
  url: string | ((i: number) => string),
  count: number,
  opts: { batch?: number; onMessage?: (socket: WebSocket, data: ArrayBuffer) => void } = {},
): Promise<SocketPool> => {
  const sockets: WebSocket[] = []
  let failed = 0
  const batch = opts.batch ?? 500
  for (let i = 0; i < count; i += batch) {
    const opened = await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, (_, j) => {
        const n = i + j
        return new Promise<WebSocket | null>((resolve) => {
          const ws = new WebSocket(typeof url === 'string' ? url : url(n), {
            localAddress: `127.0.0.${1 + (n % 8)}`,
            perMessageDeflate: false,
          })
          ws.binaryType = 'arraybuffer'
          if (opts.onMessage) {
            const onMessage = opts.onMessage
            ws.on('message', (data: ArrayBuffer) => onMessage(ws, data))
          }
          ws.once('open', () => resolve(ws))
          ws.once('error', () => resolve(null))
        })
      }),
    )
    for (const ws of opened) {
      if (ws) sockets.push(ws)
      else failed++
    }
  }
  return {
    sockets,
    failed,
    close: () => sockets.forEach((s) => s.close()),
    terminate: () => sockets.forEach((s) => s.terminate()),
  }
}
