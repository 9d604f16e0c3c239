import type { Redis } from 'ioredis'
import type { Keys } from './keys.js'
import { shardOf } from './keys.js'
import { scripts } from './scripts.js'
import { compareIds, guarded, maxId, nextId, ZERO_ID, type StreamId } from '@streambed/common'

export interface StreamEntry {
  readonly id: StreamId
  readonly update: Uint8Array
  /** `<nodeId>/<connectionId>` of the writer, `''` if unknown. */
  readonly origin: string
}

export interface TailRead {
  /** Every entry with a smaller id is gone from the stream (`0-0`: nothing ever trimmed). */
  readonly trimmed: StreamId
  /** Id of the last entry ever appended (`0-0`: none). */
  readonly last: StreamId
  /** Entries after the requested id, oldest first. */
  readonly entries: StreamEntry[]
}

export interface AppendResult {
  readonly id: StreamId
  readonly prev: StreamId
  readonly newTask: boolean
}

export interface DocStreamsOptions {
  redis: Redis
  keys: Keys
  /** Number of task queue shards; must be the same for every process. */
  queueShards: number
  /** Doorbells carry updates up to this size inline; default 64 KiB. */
  inlineLimitBytes?: number
  /** Entries fetched per XRANGE page; default 1000. */
  pageSize?: number
}

export interface DocStreams {
  /**
   * Appends an update; resolves once Redis has it. Its id will be above `floor` (default none):
   * pass the highest id known for the document, e.g. the watermark of the last storage read.
   * Throws `AppError('REDIS_UNAVAILABLE')`.
   */
  append(doc: string, update: Uint8Array, origin: string, floor?: StreamId): Promise<AppendResult>
  /** Reads every entry after `after` with the trim marker read atomically with the first page. */
  readTail(doc: string, after: StreamId): Promise<TailRead>
}

type RawEntry = [Buffer, Buffer[]]

const parseEntry = ([id, fields]: RawEntry): StreamEntry => {
  let update: Uint8Array = new Uint8Array(0)
  let origin = ''
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = (fields[i] as Buffer).toString('latin1')
    if (name === 'u') update = fields[i + 1] as Buffer
    else if (name === 'o') origin = (fields[i + 1] as Buffer).toString('latin1')
  }
  return { id: id.toString('latin1'), update, origin }
}

export const createDocStreams = (opts: DocStreamsOptions): DocStreams => {
  const { redis, keys } = opts
  const inlineLimit = opts.inlineLimitBytes ?? 64 * 1024
  const pageSize = opts.pageSize ?? 1000

  const append: DocStreams['append'] = (doc, update, origin, floor = ZERO_ID) =>
    guarded('REDIS_UNAVAILABLE', `append to ${doc}`, async () => {
      const reply = (await scripts.append.run(
        redis,
        [keys.stream(doc), keys.meta(doc), keys.queue(shardOf(doc, opts.queueShards))],
        [update, origin, keys.channel(doc), inlineLimit, doc, floor],
      )) as [Buffer, Buffer, number]
      return { id: reply[0].toString(), prev: reply[1].toString(), newTask: reply[2] === 1 }
    })

  const readTail: DocStreams['readTail'] = (doc, after) =>
    guarded('REDIS_UNAVAILABLE', `read ${doc}`, async () => {
      const [trimmedBuf, lastBuf, firstPage] = (await scripts.read.run(
        redis,
        [keys.stream(doc), keys.meta(doc)],
        [after, pageSize],
      )) as [Buffer, Buffer, RawEntry[]]
      let trimmed = trimmedBuf.toString()
      const last = lastBuf.toString()
      const entries = firstPage.map(parseEntry)
      let page = firstPage.length
      while (page === pageSize) {
        const from = (entries[entries.length - 1] as StreamEntry).id
        const raw = (await redis.xrangeBuffer(
          keys.stream(doc),
          `(${from}`,
          '+',
          'COUNT',
          pageSize,
        )) as unknown as RawEntry[]
        for (const e of raw) entries.push(parseEntry(e))
        page = raw.length
      }
      if (entries.length > pageSize) {
        // Later pages were read outside the script: re-read the marker so a trim that happened
        // between pages is not missed (the caller then reloads storage).
        const again = await redis.hget(keys.meta(doc), 'trimmed')
        if (again) trimmed = maxId(trimmed, again)
      }
      return { trimmed, last, entries }
    })

  return { append, readTail }
}

/**
 * True when entries after `watermark` may be missing from a read whose trim marker is `trimmed`
 * (entries below `trimmed` are gone): storage must be reloaded, since a worker persists a watermark
 * before it trims up to it.
 */
export const hasHoleAfter = (watermark: StreamId, trimmed: StreamId): boolean =>
  trimmed !== ZERO_ID && compareIds(trimmed, nextId(watermark)) > 0
