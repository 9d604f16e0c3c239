/**
 * The y-websocket wire protocol as pure functions over bytes. One WebSocket frame carries exactly
 * one message (the y-websocket client reads one message per frame).
 *
 *   message        = varUint(type) payload
 *   sync (0)       = varUint(step) varUint8Array(body)   step: 0 = step 1 (state vector),
 *                                                         1 = step 2 (update), 2 = update
 *   awareness (1)  = varUint8Array(awareness update)
 *   auth (2)       = varUint(0 = permission denied) varString(reason)
 *   query-awareness (3) = (no payload)
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { AppError } from '@streambed/common'

export const MessageType = { sync: 0, awareness: 1, auth: 2, queryAwareness: 3 } as const
export const SyncStep = { step1: 0, step2: 1, update: 2 } as const

export type ClientMessage =
  | { readonly kind: 'sync-step1'; readonly stateVector: Uint8Array }
  | { readonly kind: 'sync-step2'; readonly update: Uint8Array }
  | { readonly kind: 'sync-update'; readonly update: Uint8Array }
  | { readonly kind: 'awareness'; readonly update: Uint8Array }
  | { readonly kind: 'query-awareness' }
  | { readonly kind: 'auth'; readonly reason: string }

const bad = (reason: string, cause?: unknown): AppError =>
  new AppError('BAD_MESSAGE', reason, cause === undefined ? {} : { cause })

/**
 * Decodes one frame. Throws `AppError('BAD_MESSAGE')` naming what is wrong: unknown message type,
 * truncated payload or trailing bytes. Payload contents (Yjs update, awareness JSON) are checked
 * separately by `validateUpdate` / `decodeAwarenessUpdate`.
 */
export const decodeMessage = (frame: Uint8Array): ClientMessage => {
  const decoder = decoding.createDecoder(frame)
  let message: ClientMessage
  try {
    const type = decoding.readVarUint(decoder)
    switch (type) {
      case MessageType.sync: {
        const step = decoding.readVarUint(decoder)
        const body = decoding.readVarUint8Array(decoder)
        if (step === SyncStep.step1) message = { kind: 'sync-step1', stateVector: body }
        else if (step === SyncStep.step2) message = { kind: 'sync-step2', update: body }
        else if (step === SyncStep.update) message = { kind: 'sync-update', update: body }
        else throw bad(`unknown sync message step ${step}`)
        break
      }
      case MessageType.awareness:
        message = { kind: 'awareness', update: decoding.readVarUint8Array(decoder) }
        break
      case MessageType.queryAwareness:
        message = { kind: 'query-awareness' }
        break
      case MessageType.auth: {
        decoding.readVarUint(decoder)
        message = { kind: 'auth', reason: decoding.readVarString(decoder) }
        break
      }
      default:
        throw bad(`unknown message type ${type}`)
    }
  } catch (err) {
    if (err instanceof AppError) throw err
    throw bad('truncated or malformed frame', err)
  }
  if (decoding.hasContent(decoder)) {
    throw bad(`${frame.length - decoder.pos} trailing bytes after the message`)
  }
  return message
}

const encodeSync = (step: number, body: Uint8Array): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.sync)
  encoding.writeVarUint(encoder, step)
  encoding.writeVarUint8Array(encoder, body)
  return encoding.toUint8Array(encoder)
}

export const encodeSyncStep1 = (stateVector: Uint8Array): Uint8Array =>
  encodeSync(SyncStep.step1, stateVector)
export const encodeSyncStep2 = (update: Uint8Array): Uint8Array =>
  encodeSync(SyncStep.step2, update)
export const encodeSyncUpdate = (update: Uint8Array): Uint8Array =>
  encodeSync(SyncStep.update, update)

export const encodeAwarenessMessage = (awarenessUpdate: Uint8Array): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.awareness)
  encoding.writeVarUint8Array(encoder, awarenessUpdate)
  return encoding.toUint8Array(encoder)
}

export const encodeQueryAwareness = (): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.queryAwareness)
  return encoding.toUint8Array(encoder)
}

export const encodePermissionDenied = (reason: string): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MessageType.auth)
  encoding.writeVarUint(encoder, 0)
  encoding.writeVarString(encoder, reason)
  return encoding.toUint8Array(encoder)
}

/**
 * An awareness message with zero entries: a no-op for y-protocols, but it resets the y-websocket
 * client's 30 s "no message received" watchdog on otherwise silent connections.
 */
export const keepaliveMessage: Uint8Array = encodeAwarenessMessage(new Uint8Array([0]))
