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

/** Drops leading zeros of a non-empty run of digits ("007" → "7", "0" stays). */
const stripZeros = (digits: string): string =>
  digits.length > 1 && digits.charCodeAt(0) === 48 ? digits.replace(/^0+(?=\d)/, '') : digits

/**
 * The `<ms>` and `<seq>` digits of a stream id without leading zeros; throws unless `id` is one.
 * Without regular expressions: compareIds runs for every delivered entry.
 */
const idParts = (id: StreamId): [string, string] => {
  const dash = id.indexOf('-')
  let ok = dash > 0 && dash < id.length - 1
  for (let i = 0; ok && i < id.length; i++) {
    const c = id.charCodeAt(i)
    ok = i === dash || (c >= 48 && c <= 57)
  }
  if (!ok) throw new TypeError(`not a stream id: ${JSON.stringify(id)}`)
  return [stripZeros(id.slice(0, dash)), stripZeros(id.slice(dash + 1))]
}

/** Negative if a < b, 0 if equal, positive if a > b. Exact for 64-bit parts. */
export const compareIds = (a: StreamId, b: StreamId): number => {
  const [ams, aseq] = idParts(a)
  const [bms, bseq] = idParts(b)
  return compareDecimal(ams, bms) || compareDecimal(aseq, bseq)
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
