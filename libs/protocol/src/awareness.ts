/**
 * y-protocols awareness updates without an `Awareness` instance:
 *   update = varUint(n) { varUint(clientID) varUint(clock) varString(JSON state or "null") }*n
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { AppError } from '@streambed/common'

export interface AwarenessEntry {
  readonly clientId: number
  readonly clock: number
  /** The state as JSON text; `'null'` means the client left. */
  readonly state: string
}

/** Decodes and checks an awareness update: well-formed varints, valid JSON, nothing trailing. */
export const decodeAwarenessUpdate = (update: Uint8Array): AwarenessEntry[] => {
  const decoder = decoding.createDecoder(update)
  const entries: AwarenessEntry[] = []
  try {
    const count = decoding.readVarUint(decoder)
    for (let i = 0; i < count; i++) {
      const clientId = decoding.readVarUint(decoder)
      const clock = decoding.readVarUint(decoder)
      const state = decoding.readVarString(decoder)
      entries.push({ clientId, clock, state })
    }
  } catch (err) {
    throw new AppError('BAD_MESSAGE', 'malformed awareness update', { cause: err })
  }
  if (decoding.hasContent(decoder)) {
    throw new AppError('BAD_MESSAGE', 'trailing bytes after the awareness update')
  }
  for (const entry of entries) {
    try {
      JSON.parse(entry.state)
    } catch (err) {
      throw new AppError('BAD_MESSAGE', `awareness state of client ${entry.clientId} is not JSON`, {
        cause: err,
      })
    }
  }
  return entries
}

export const encodeAwarenessUpdate = (entries: readonly AwarenessEntry[]): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, entries.length)
  for (const entry of entries) {
    encoding.writeVarUint(encoder, entry.clientId)
    encoding.writeVarUint(encoder, entry.clock)
    encoding.writeVarString(encoder, entry.state)
  }
  return encoding.toUint8Array(encoder)
}

/** The update that tells peers `clientId` left: clock + 1 with a null state, as y-protocols does. */
export const removalEntry = (clientId: number, lastClock: number): AwarenessEntry => ({
  clientId,
  clock: lastClock + 1,
  state: 'null',
})
