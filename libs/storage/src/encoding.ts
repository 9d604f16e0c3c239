/**
 * Byte formats and names shared by the file-based backends (fs, s3).
 *
 *   state file  "SBD1" varString(doc) varString(watermark) varUint8Array(state)
 *   log batch   "SBL1" varString(doc) varUint(n) { varString(id) varUint8Array(update) }*n
 */
import { createHash } from 'node:crypto'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { AppError, parseStreamId } from '@streambed/common'
import type { LogEntry, StoredDoc, Watermark } from './storage.js'

const STATE_MAGIC = 'SBD1'
const LOG_MAGIC = 'SBL1'

/**
 * A file or object name for `doc` that is stable, reversible and safe on case-insensitive file
 * systems: `[a-z0-9._-]` stay, every other byte becomes `%XX`. Names longer than 200 characters
 * once escaped become `~<sha256>` (the document name is inside the file).
 */
export const escapeDocName = (doc: string): string => {
  const escaped = [...Buffer.from(doc, 'utf8')]
    .map((b) => {
      const c = String.fromCharCode(b)
      return /[a-z0-9._-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`
    })
    .join('')
  return escaped.length <= 200 ? escaped : `~${createHash('sha256').update(doc).digest('hex')}`
}

/** Inverse of escapeDocName; `null` for hashed names (read the name from the file instead). */
export const unescapeDocName = (name: string): string | null =>
  name.startsWith('~') ? null : decodeURIComponent(name)

/** A watermark as a fixed-width string that sorts like the watermark itself. */
export const sortableWatermark = (w: Watermark): string => {
  const [ms, seq] = w.split('-') as [string, string]
  parseStreamId(w)
  return `${ms.padStart(15, '0')}-${seq.padStart(20, '0')}`
}

export const watermarkFromSortable = (s: string): Watermark => {
  const m = /^(\d{15})-(\d{20})$/.exec(s)
  if (!m) throw new TypeError(`not a sortable watermark: ${s}`)
  return `${BigInt(m[1] as string)}-${BigInt(m[2] as string)}`
}

const readMagic = (decoder: decoding.Decoder): string =>
  Buffer.from(decoding.readUint8Array(decoder, 4)).toString('latin1')

export const encodeStateFile = (doc: string, stored: StoredDoc): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeUint8Array(encoder, Buffer.from(STATE_MAGIC, 'latin1'))
  encoding.writeVarString(encoder, doc)
  encoding.writeVarString(encoder, stored.watermark)
  encoding.writeVarUint8Array(encoder, stored.state)
  return encoding.toUint8Array(encoder)
}

export const decodeStateFile = (
  where: string,
  bytes: Uint8Array,
): { doc: string; stored: StoredDoc } => {
  try {
    const decoder = decoding.createDecoder(bytes)
    const magic = readMagic(decoder)
    if (magic !== STATE_MAGIC) throw new Error(`bad magic ${JSON.stringify(magic)}`)
    const doc = decoding.readVarString(decoder)
    const watermark = decoding.readVarString(decoder)
    const state = decoding.readVarUint8Array(decoder)
    return { doc, stored: { state, watermark } }
  } catch (err) {
    throw new AppError('STORAGE_UNAVAILABLE', `corrupt document state ${where}`, { cause: err })
  }
}

/**
 * Reads what the first bytes of a state file or log batch (`head`) start with: `read` gets a
 * decoder past the magic. Returns null when `head` ends too soon; `whole`: `head` is the entire
 * object, so a header that does not decode is corrupt.
 */
const readHeader = <T>(
  where: string,
  head: Uint8Array,
  whole: boolean,
  magics: readonly string[],
  read: (decoder: decoding.Decoder) => T,
): T | null => {
  try {
    const decoder = decoding.createDecoder(head)
    const magic = readMagic(decoder)
    if (!magics.includes(magic)) throw new Error(`bad magic ${JSON.stringify(magic)}`)
    return read(decoder)
  } catch (err) {
    if (whole) {
      throw new AppError('STORAGE_UNAVAILABLE', `corrupt storage object ${where}`, { cause: err })
    }
    return null
  }
}

/**
 * The document name in the first bytes of a state file (state version or checkpoint) or log batch,
 * or null when `head` ends before the name does. `whole`: `head` is the entire object, so a header
 * that does not decode is corrupt.
 */
export const docNameInHeader = (where: string, head: Uint8Array, whole: boolean): string | null =>
  readHeader(where, head, whole, [STATE_MAGIC, LOG_MAGIC], (decoder) =>
    decoding.readVarString(decoder),
  )

/**
 * How many entries a log batch holds (repeated ids counted each time), from its first bytes; null
 * when `head` ends before the count does.
 */
export const logBatchCount = (where: string, head: Uint8Array, whole: boolean): number | null =>
  readHeader(where, head, whole, [LOG_MAGIC], (decoder) => {
    decoding.readVarString(decoder)
    return decoding.readVarUint(decoder)
  })

export const encodeLogBatch = (doc: string, entries: readonly LogEntry[]): Uint8Array => {
  const encoder = encoding.createEncoder()
  encoding.writeUint8Array(encoder, Buffer.from(LOG_MAGIC, 'latin1'))
  encoding.writeVarString(encoder, doc)
  encoding.writeVarUint(encoder, entries.length)
  for (const e of entries) {
    encoding.writeVarString(encoder, e.id)
    encoding.writeVarUint8Array(encoder, e.update)
  }
  return encoding.toUint8Array(encoder)
}

export const decodeLogBatch = (where: string, bytes: Uint8Array): LogEntry[] => {
  try {
    const decoder = decoding.createDecoder(bytes)
    const magic = readMagic(decoder)
    if (magic !== LOG_MAGIC) throw new Error(`bad magic ${JSON.stringify(magic)}`)
    decoding.readVarString(decoder)
    const n = decoding.readVarUint(decoder)
    const out: LogEntry[] = []
    for (let i = 0; i < n; i++) {
      out.push({ id: decoding.readVarString(decoder), update: decoding.readVarUint8Array(decoder) })
    }
    return out
  } catch (err) {
    throw new AppError('STORAGE_UNAVAILABLE', `corrupt update log batch ${where}`, { cause: err })
  }
}

/** Name of a log batch holding entries `first`..`last`. */
export const logBatchName = (entries: readonly LogEntry[]): string => {
  const first = entries[0]
  const last = entries[entries.length - 1]
  if (!first || !last) throw new TypeError('empty log batch')
  return `${sortableWatermark(first.id)}_${sortableWatermark(last.id)}`
}
