/**
 * The multiplexed protocol of `@hocuspocus/provider` (v3) as pure functions over bytes. One
 * WebSocket carries any number of documents; every frame starts with the document's name.
 *
 *   frame               = varString(document) varUint(type) payload
 *   sync (0)            = varUint(step) varUint8Array(body)       as y-websocket
 *   awareness (1)       = varUint8Array(awareness update)         as y-websocket
 *   auth (2)            = varUint(0) varString(token)             client → server
 *                       | varUint(1) varString(reason)            server → client: permission denied
 *                       | varUint(2) varString(scope)             server → client: authenticated,
 *                                                                 scope 'read-write' | 'readonly'
 *   query-awareness (3) = (no payload)                            as y-websocket
 *   sync-reply (4)      = between Hocuspocus servers only
 *   stateless (5)       = varString(payload)
 *   broadcast-stateless (6) = inside a Hocuspocus server only
 *   close (7)           = client → server: (no payload), the provider detached the document;
 *                         server → client: varString(reason), the document was closed
 *   sync-status (8)     = varUint(1 applied | 0 not applied)      server → client, one per update
 *
 * So from the type on, sync, awareness and query-awareness frames are y-websocket messages byte
 * for byte: the server strips the name on the way in and prefixes it on the way out.
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { AppError } from '@streambed/common'

export const HocuspocusType = {
  sync: 0,
  awareness: 1,
  auth: 2,
  queryAwareness: 3,
  syncReply: 4,
  stateless: 5,
  broadcastStateless: 6,
  close: 7,
  syncStatus: 8,
} as const

export const HocuspocusAuthType = { token: 0, permissionDenied: 1, authenticated: 2 } as const

/** What Authenticated tells the provider (its `authorizedScope`). */
export type HocuspocusScope = 'read-write' | 'readonly'

export interface HocuspocusHeader {
  readonly doc: string
  readonly type: number
  /** Where the type starts: `frame.subarray(messageAt)` is a y-websocket message for 0, 1, 3. */
  readonly messageAt: number
  /** Where the payload after the type starts. */
  readonly payloadAt: number
}

const bad = (reason: string, cause?: unknown): AppError =>
  new AppError('BAD_MESSAGE', reason, cause === undefined ? {} : { cause })

/**
 * Reads the document name and message type of a frame. Throws `AppError('BAD_MESSAGE')` when
 * the frame does not even hold them (the payload is checked by the message's own decoder).
 */
export const readHocuspocusHeader = (frame: Uint8Array): HocuspocusHeader => {
  const decoder = decoding.createDecoder(frame)
  try {
    const doc = decoding.readVarString(decoder)
    const messageAt = decoder.pos
    const type = decoding.readVarUint(decoder)
    return { doc, type, messageAt, payloadAt: decoder.pos }
  } catch (err) {
    throw bad('malformed Hocuspocus frame: no document name and message type', err)
  }
}

/** Reads a payload with `read`, refusing truncated payloads and trailing bytes. */
const readPayload = <T>(
  frame: Uint8Array,
  at: number,
  what: string,
  read: (d: decoding.Decoder) => T,
): T => {
  const decoder = decoding.createDecoder(frame.subarray(at))
  let value: T
  try {
    value = read(decoder)
  } catch (err) {
    if (err instanceof AppError) throw err
    throw bad(`truncated ${what} message`, err)
  }
  if (decoding.hasContent(decoder))
    throw bad(`${decoder.arr.length - decoder.pos} trailing bytes after the ${what} message`)
  return value
}

/** The token of an auth message (the payload at `payloadAt`); '' when the provider has none. */
export const readHocuspocusToken = (frame: Uint8Array, payloadAt: number): string =>
  readPayload(frame, payloadAt, 'auth', (d) => {
    const kind = decoding.readVarUint(d)
    if (kind !== HocuspocusAuthType.token) throw bad(`auth message of kind ${kind} from a client`)
    return decoding.readVarString(d)
  })

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * The payload of a stateless message as its UTF-8 bytes (relayed as they are, never decoded to
 * a string). Throws BAD_MESSAGE when it is truncated, trails bytes or is not UTF-8.
 */
export const readHocuspocusStateless = (frame: Uint8Array, payloadAt: number): Uint8Array =>
  readPayload(frame, payloadAt, 'stateless', (d) => {
    const payload = decoding.readVarUint8Array(d)
    try {
      utf8.decode(payload)
    } catch (err) {
      throw bad('stateless payload is not UTF-8', err)
    }
    return payload
  })

/** A client's close message (the provider detached the document): nothing may follow the type. */
export const checkHocuspocusClose = (frame: Uint8Array, payloadAt: number): void => {
  // The provider sends none, but a reason (as servers send) is tolerated.
  if (payloadAt < frame.length) readPayload(frame, payloadAt, 'close', decoding.readVarString)
}

/** The bytes every frame of `doc` starts with. */
export const encodeHocuspocusPrefix = (doc: string): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarString(encoder, doc)
  return encoding.toUint8Array(encoder)
}

/** `prefix` (from encodeHocuspocusPrefix) followed by a y-websocket `message`: one frame. */
export const prefixMessage = (prefix: Uint8Array, message: Uint8Array): Uint8Array => {
  const frame = new Uint8Array(prefix.length + message.length)
  frame.set(prefix, 0)
  frame.set(message, prefix.length)
  return frame
}

const encodeFrame = (
  doc: string,
  type: number,
  write: (encoder: encoding.Encoder) => void,
): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarString(encoder, doc)
  encoding.writeVarUint(encoder, type)
  write(encoder)
  return encoding.toUint8Array(encoder)
}

export const encodeHocuspocusAuthenticated = (doc: string, scope: HocuspocusScope): Uint8Array =>
  encodeFrame(doc, HocuspocusType.auth, (e) => {
    encoding.writeVarUint(e, HocuspocusAuthType.authenticated)
    encoding.writeVarString(e, scope)
  })

export const encodeHocuspocusPermissionDenied = (doc: string, reason: string): Uint8Array =>
  encodeFrame(doc, HocuspocusType.auth, (e) => {
    encoding.writeVarUint(e, HocuspocusAuthType.permissionDenied)
    encoding.writeVarString(e, reason)
  })

/** The provider counts its unsynced changes down by one per `applied` status. */
export const encodeHocuspocusSyncStatus = (doc: string, applied: boolean): Uint8Array =>
  encodeFrame(doc, HocuspocusType.syncStatus, (e) => encoding.writeVarUint(e, applied ? 1 : 0))

/** A stateless message carrying `payload`, UTF-8 bytes (see readHocuspocusStateless). */
export const encodeHocuspocusStateless = (doc: string, payload: Uint8Array): Uint8Array =>
  encodeFrame(doc, HocuspocusType.stateless, (e) => encoding.writeVarUint8Array(e, payload))

/** The server closed the document (not the socket); the provider emits `close` with `reason`. */
export const encodeHocuspocusClose = (doc: string, reason: string): Uint8Array =>
  encodeFrame(doc, HocuspocusType.close, (e) => encoding.writeVarString(e, reason))

/** A client's auth message (tests, tools). */
export const encodeHocuspocusAuth = (doc: string, token: string): Uint8Array =>
  encodeFrame(doc, HocuspocusType.auth, (e) => {
    encoding.writeVarUint(e, HocuspocusAuthType.token)
    encoding.writeVarString(e, token)
  })
