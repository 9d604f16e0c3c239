import {
  encodeHocuspocusPrefix,
  encodeHocuspocusStateless,
  encodeHocuspocusSyncStatus,
  prefixMessage,
} from '@streambed/protocol'

/**
 * The outgoing frames of one document on this node's Hocuspocus sockets, shared by all of them.
 * The runtime encodes a message once for every connection of a document (a delivery, a sync
 * answer shared by a burst of joins, the keepalive); prefixing it with the document name here
 * keeps that property: one prefixed copy per message, however many sockets it goes to — so a
 * large document's sync answer to N joiners is held once, not N times.
 */
export class DocFrames {
  readonly prefix: Uint8Array
  /** SyncStatus frames: an update was stored, or not (read-only). */
  readonly stored: Uint8Array
  readonly notStored: Uint8Array
  /** Sockets holding these frames (see DocFramesRegistry). */
  refs = 0
  private readonly framed = new WeakMap<Uint8Array, Uint8Array>()
  private readonly statelessFramed = new WeakMap<Uint8Array, Uint8Array>()

  constructor(readonly doc: string) {
    this.prefix = encodeHocuspocusPrefix(doc)
    this.stored = encodeHocuspocusSyncStatus(doc, true)
    this.notStored = encodeHocuspocusSyncStatus(doc, false)
  }

  /** The y-websocket `message` as a frame of this document. */
  frame(message: Uint8Array): Uint8Array {
    let frame = this.framed.get(message)
    if (!frame) {
      frame = prefixMessage(this.prefix, message)
      this.framed.set(message, frame)
    }
    return frame
  }

  /** A stateless message of this document carrying `payload` (UTF-8 bytes). */
  stateless(payload: Uint8Array): Uint8Array {
    let frame = this.statelessFramed.get(payload)
    if (!frame) {
      frame = encodeHocuspocusStateless(this.doc, payload)
      this.statelessFramed.set(payload, frame)
    }
    return frame
  }
}

/** DocFrames per document, held while a socket of this node has the document open. */
export class DocFramesRegistry {
  private readonly docs = new Map<string, DocFrames>()

  acquire(doc: string): DocFrames {
    let frames = this.docs.get(doc)
    if (!frames) {
      frames = new DocFrames(doc)
      this.docs.set(doc, frames)
    }
    frames.refs++
    return frames
  }

  release(frames: DocFrames): void {
    if (--frames.refs === 0 && this.docs.get(frames.doc) === frames) this.docs.delete(frames.doc)
  }
}
