/**
 * Redis stream entry ids (`<ms>-<seq>`) as comparable values. Watermarks in storage are such ids:
 * "storage covers every entry with id <= watermark".
 */
export type StreamId = string

export const ZERO_ID: StreamId = '0-0'

const pattern = /^(\d+)-(\d+)$/

export const parseStreamId = (id: string): { ms: number; seq: number } => {
  const m = pattern.exec(id)
  if (!m) throw new TypeError(`not a stream id: ${JSON.stringify(id)}`)
  return { ms: Number(m[1]), seq: Number(m[2]) }
}

export const isStreamId = (id: string): boolean => pattern.test(id)

/** Compares two non-negative decimal integers without converting them (exact for 64 bits). */
const compareDecimal = (a: string, b: string): number =>
  a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0

/** Negative if a < b, 0 if equal, positive if a > b. Exact for 64-bit parts. */
export const compareIds = (a: StreamId, b: StreamId): number => {
  const m = pattern.exec(a)
  const n = pattern.exec(b)
  if (!m || !n) throw new TypeError(`not a stream id: ${JSON.stringify(m ? b : a)}`)
  const [, ams, aseq] = m as unknown as [string, string, string]
  const [, bms, bseq] = n as unknown as [string, string, string]
  return (
    compareDecimal(ams.replace(/^0+(?=\d)/, ''), bms.replace(/^0+(?=\d)/, '')) ||
    compareDecimal(aseq.replace(/^0+(?=\d)/, ''), bseq.replace(/^0+(?=\d)/, ''))
  )
}

export const maxId = (a: StreamId, b: StreamId): StreamId => (compareIds(a, b) >= 0 ? a : b)

/** The smallest id greater than `id`. */
export const nextId = (id: StreamId): StreamId => {
  const m = pattern.exec(id)
  if (!m) throw new TypeError(`not a stream id: ${JSON.stringify(id)}`)
  return `${BigInt(m[1] as string)}-${BigInt(m[2] as string) + 1n}`
}

/** Milliseconds since the epoch at which Redis created the entry. */
export const idTimeMs = (id: StreamId): number => parseStreamId(id).ms
