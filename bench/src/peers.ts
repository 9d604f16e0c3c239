/**
 * Raw-protocol peers: one WebSocket each, no Y.Doc unless writing, so thousands are cheap. A peer
 * syncs (step 1 with an empty state vector), then counts and timestamps the updates it receives;
 * senders register each update's bytes, and since nodes forward updates byte-identical, a receiver
 * matches what it got to when it was sent.
 */
import * as Y from 'yjs'
import type WebSocket from 'ws'
import { decodeMessage, encodeSyncStep1, encodeSyncUpdate } from '@streambed/protocol'
import { openMany } from './sockets.js'

const EMPTY_SV = Y.encodeStateVector(new Y.Doc())
const STEP1 = encodeSyncStep1(EMPTY_SV)

/**
 * Send times of single-character updates by (client, clock), shared by all peers of a run. A node
 * may merge a burst of one client's updates into one entry, so a received update is credited for
 * every clock it covers (Y.parseUpdateMeta), not matched byte for byte.
 */
export class Ledger {
  private readonly sentAt = new Map<string, number>()
  readonly latencies: number[] = []
  delivered = 0
  expected = 0

  sent(update: Uint8Array, receivers: number): void {
    const { from } = Y.parseUpdateMeta(update)
    for (const [client, clock] of from) this.sentAt.set(`${client}:${clock}`, performance.now())
    this.expected += receivers
  }

  received(update: Uint8Array): void {
    const now = performance.now()
    const { from, to } = Y.parseUpdateMeta(update)
    for (const [client, start] of from) {
      const end = to.get(client) ?? start
      for (let clock = start; clock < end; clock++) {
        const at = this.sentAt.get(`${client}:${clock}`)
        if (at === undefined) continue
        this.delivered++
        this.latencies.push(now - at)
      }
    }
  }

  /** Forget latencies recorded so far (after a warm-up). */
  reset(): void {
    this.latencies.length = 0
    this.delivered = 0
    this.expected = 0
  }
}

export interface Peer {
  readonly ws: WebSocket
  readonly doc: string
  synced: boolean
  /** Sends one new update (a character appended by this peer) and registers it in the ledger. */
  write(receivers: number): void
}

/** Opens `count` peers per document on `urls` (round robin) and waits until all are synced. */
export const openPeers = async (
  urls: readonly string[],
  docs: readonly string[],
  perDoc: number,
  ledger: Ledger,
): Promise<{ peers: Peer[]; close: () => void; failed: number }> => {
  const peers: Peer[] = []
  const targets = docs.flatMap((doc, d) =>
    Array.from({ length: perDoc }, (_, i) => ({
      doc,
      url: urls[(d * perDoc + i) % urls.length] as string,
    })),
  )
  const pool = await openMany((i) => `${targets[i]?.url}/${targets[i]?.doc}`, targets.length)
  pool.sockets.forEach((ws) => {
    // openMany keeps the order of successful opens; recover each socket's document from its URL.
    const doc = decodeURIComponent(new URL(ws.url).pathname.slice(1))
    let ydoc: Y.Doc | null = null
    let last: Uint8Array = new Uint8Array()
    const peer: Peer = {
      ws,
      doc,
      synced: false,
      write: (receivers) => {
        if (!ydoc) {
          ydoc = new Y.Doc()
          ydoc.on('update', (u: Uint8Array) => (last = u))
        }
        ydoc.getText('t').insert(ydoc.getText('t').length, 'x')
        ledger.sent(last, receivers)
        ws.send(encodeSyncUpdate(last))
      },
    }
    ws.on('message', (data: ArrayBuffer) => {
      const msg = decodeMessage(new Uint8Array(data))
      if (msg.kind === 'sync-step2') peer.synced = true
      else if (msg.kind === 'sync-update') ledger.received(msg.update)
    })
    ws.send(STEP1)
    peers.push(peer)
  })
  const failed = pool.failed
  const deadline = Date.now() + 120_000
  while (peers.some((p) => !p.synced) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50))
  return { peers, failed, close: () => pool.close() }
}
