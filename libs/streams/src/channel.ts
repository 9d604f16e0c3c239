/**
 * Messages on a document's sharded pub/sub channel (`<p>:v1:{doc}:c`), written by Lua scripts:
 *   doorbell:  "u <id> <prev> <origin> <i|r>\n<update if i>"
 *   awareness: "a <origin>\n<awareness update>"
 *   deletion:  "d <origin>\n" (the document was deleted: close its sockets)
 *   stateless: "s <origin>\n<payload>" (a Hocuspocus stateless message, UTF-8; published by nodes)
 */
export type ChannelMessage =
  | {
      readonly kind: 'update'
      readonly id: string
      readonly prev: string
      readonly origin: string
      /** Present when the update was small enough to travel inline. */
      readonly update: Uint8Array | null
    }
  | { readonly kind: 'awareness'; readonly origin: string; readonly update: Uint8Array }
  | { readonly kind: 'deleted'; readonly origin: string }
  | { readonly kind: 'stateless'; readonly origin: string; readonly payload: Uint8Array }

const NEWLINE = 0x0a

export const decodeChannelMessage = (message: Buffer): ChannelMessage | null => {
  const eol = message.indexOf(NEWLINE)
  if (eol < 0) return null
  const header = message.toString('latin1', 0, eol).split(' ')
  const body = message.subarray(eol + 1)
  if (header[0] === 'u' && header.length === 5) {
    const [, id, prev, origin, mode] = header as [string, string, string, string, string]
    return { kind: 'update', id, prev, origin, update: mode === 'i' ? body : null }
  }
  if (header[0] === 'd' && header.length === 2)
    return { kind: 'deleted', origin: header[1] as string }
  if (header[0] === 'a' && header.length === 2) {
    return { kind: 'awareness', origin: header[1] as string, update: body }
  }
  if (header[0] === 's' && header.length === 2)
    return { kind: 'stateless', origin: header[1] as string, payload: body }
  return null
}

/** A stateless message from the connection `origin`, for every other socket of the document. */
export const encodeStatelessMessage = (origin: string, payload: Uint8Array): Buffer =>
  Buffer.concat([Buffer.from(`s ${origin}\n`, 'latin1'), payload])

/**
 * The doorbell append-entry.lua rings, for a caller that rings it itself (after WAIT): the update
 * inline when it is at most `inlineLimit` bytes.
 */
export const encodeDoorbell = (
  id: string,
  prev: string,
  origin: string,
  update: Uint8Array,
  inlineLimit: number,
): Buffer =>
  update.length <= inlineLimit
    ? Buffer.concat([Buffer.from(`u ${id} ${prev} ${origin} i\n`, 'latin1'), update])
    : Buffer.from(`u ${id} ${prev} ${origin} r\n`, 'latin1')

/**
 * The doorbell of entries up to `id` that became visible without one of their own (their WAIT
 * timed out, a later confirmation covered them; see replicated-1.lua): `prev` is `id` itself, so
 * a node that delivered less fills its gap by reading, and one that delivered `id` ignores it.
 */
export const encodeConfirmedDoorbell = (id: string): Buffer =>
  Buffer.from(`u ${id} ${id} - r\n`, 'latin1')
