import WebSocket from 'ws'

export interface RawClient {
  readonly ws: WebSocket
  /** Binary messages received so far. */
  readonly messages: Uint8Array[]
  readonly opened: Promise<void>
  /** Resolves with the close code and reason once the connection closed. */
  readonly closed: Promise<{ code: number; reason: string }>
  /** Total bytes of binary messages received. */
  readonly bytesReceived: number
  send(frame: Uint8Array): void
  close(): void
}

/** A bare WebSocket speaking raw protocol frames, for malformed input and byte counting. */
export const connectRaw = (url: string): RawClient => {
  const ws = new WebSocket(url)
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
