/** A raw socket that sends request headers (not part of the build). */
import WebSocket from 'ws'
import type { RawClient } from '@streambed/testing'

/**
 * `connectRaw` (from @streambed/testing) with request headers, e.g. the `Origin` a browser sends,
 * which the `ws` client only sends when asked to.
 */
export const connectRawWith = (url: string, headers: Record<string, string>): RawClient => {
  const ws = new WebSocket(url, { headers })
  ws.binaryType = 'arraybuffer'
  const messages: Uint8Array[] = []
  let bytes = 0
  ws.on('message', (data: ArrayBuffer) => {
    const m = new Uint8Array(data)
    messages.push(m)
    bytes += m.length
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))
  })
  return {
    ws,
    messages,
    opened,
    closed,
    get bytesReceived() {
      return bytes
    },
    send: (frame) => ws.send(frame),
    close: () => ws.close(),
  }
}
