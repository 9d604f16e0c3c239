import { guarded } from '@streambed/common'
import {
  type BatchName,
  type Blobs,
  batchNames,
  CONCURRENCY,
  HEADER_BYTES,
  mapLimit,
  stableListing,
  untilSettled,
  VANISHED,
} from './blobs.js'
import {
  decodeLogBatch,
  encodeLogBatch,
  escapeDocName,
  logBatchCount,
  logBatchName,
  sortableWatermark,
  watermarkFromSortable,
} from './encoding.js'
import { type DocStorage, type LogEntry, normaliseLog } from './storage.js'

/**
 * A document's update log as objects in one folder, shared by the fs and S3 backends:
 *
 *   <log folder>/<first>_<last>.ylog   a batch (encodeLogBatch): its entries, ascending, unique
 *
 * `first` and `last` are the sortable ids of the batch's first and last entries, so a reader skips
 * every batch outside the range it wants by the name alone. appendLog writes one batch per call
 * (appendLogMany one per item, all together);
 * packLog merges many into one (a segment is just a bigger batch); dropLog deletes batches and
 * rewrites one straddling the bound. Batches may overlap (a batch archived twice, racing workers):
 * readers drop repeated ids.
 *
 * No lock is taken; what keeps racing writers safe:
 * - Readers see every entry at every moment. A writer puts the objects that hold entries (a
 *   segment, a rewritten batch) before it deletes the ones they replace. A reader lists until a
 *   listing finds nothing new (a listing is no snapshot: stableListing), and one that finds a
 *   listed batch gone lists again: the replacement is there (untilSettled).
 * - A name is only ever rewritten with more entries: a segment merges the batch of its own name,
 *   a rewritten batch merges an existing batch of its name. Two packLogs racing write the same
 *   entries to the same segment name, or different names; each deletes only batches whose entries
 *   its segment holds. The one race that can lose an entry needs a batch archived late inside the
 *   packed range, holding an entry no other batch holds, while another packLog of the same range
 *   is between listing and writing; compaction archives late only entries already in the log.
 * - A packLog racing a dropLog may write back entries the drop removed (it read them first); the
 *   next dropLog removes them again. A delete() racing any of them may leave log objects behind,
 *   as if they were written just after it.
 * - logExtent counts a batch's entries from its name when it holds one entry (first = last), from
 *   its header when no other batch's range overlaps it; overlapping batches are read whole to
 *   count each id once.
 *
 * packLog holds the merged entries in memory, and packing the same range again rewrites the whole
 * segment: pack now and then (every few hundred batches), not after each append; dropLog after a
 * checkpoint keeps the segment itself from growing without bound.
 */
export type ObjectLog = Pick<
  DocStorage,
  'appendLog' | 'appendLogMany' | 'readLog' | 'logExtent' | 'packLog' | 'dropLog'
>

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0)

export const createObjectLog = (blobs: Blobs): ObjectLog => {
  const logOf = (doc: string) => {
    const escaped = escapeDocName(doc)
    return { folder: blobs.folders(escaped).log, what: `the update log of ${escaped}` }
  }

  /** The batches' entries, in order; VANISHED when one is gone. */
  const readBatches = async (
    folder: string,
    batches: readonly BatchName[],
  ): Promise<LogEntry[][] | typeof VANISHED> => {
    let vanished = false
    const read = await mapLimit(batches, CONCURRENCY, async ({ name }) => {
      if (vanished) return []
      const key = `${folder}${name}`
      const bytes = await blobs.get(key)
      if (bytes === null) vanished = true
      return bytes === null ? [] : decodeLogBatch(key, bytes)
    })
    return vanished ? VANISHED : read
  }

  /** The put of normalised, non-empty `entries` as the batch their ids name, and that name. */
  const batchPut = (doc: string, folder: string, entries: readonly LogEntry[]) => {
    const name = `${logBatchName(entries)}.ylog`
    const put = { key: `${folder}${name}`, bytes: encodeLogBatch(doc, entries), ifAbsent: false }
    return { name, put }
  }

  /** Writes normalised, non-empty `entries` as the batch their ids name; returns its name. */
  const writeBatch = async (doc: string, folder: string, entries: readonly LogEntry[]) => {
    const { name, put } = batchPut(doc, folder, entries)
    await blobs.put(put.key, put.bytes, put)
    return name
  }

  /** How many entries a batch holds, from its name or header; null when it is gone. */
  const countOne = async (folder: string, { name, first, last }: BatchName) => {
    if (first === last) return 1
    const key = `${folder}${name}`
    const head = await blobs.get(key, HEADER_BYTES)
    if (head === null) return null
    const count = logBatchCount(key, head, head.length < HEADER_BYTES)
    if (count !== null) return count
    const whole = await blobs.get(key)
    return whole && logBatchCount(key, whole, true)
  }

  /** How many distinct ids overlapping batches hold together; null when one is gone. */
  const countOverlapping = async (folder: string, group: readonly BatchName[]) => {
    const read = await readBatches(folder, group)
    return read === VANISHED ? null : new Set(read.flat().map((e) => e.id)).size
  }

  /** Batches grouped so that no two groups' ranges overlap. */
  const overlapGroups = (batches: readonly BatchName[]): BatchName[][] => {
    const sorted = [...batches].sort((a, b) =>
      a.first < b.first ? -1 : a.first > b.first ? 1 : a.last < b.last ? -1 : 1,
    )
    const groups: BatchName[][] = []
    let reach = ''
    for (const b of sorted) {
      const group = groups.at(-1)
      if (group && b.first <= reach) group.push(b)
      else groups.push([b])
      if (b.last > reach) reach = b.last
    }
    return groups
  }

  return {
    appendLog: async (doc, entries) => {
      if (entries.length === 0) return
      await guarded('STORAGE_UNAVAILABLE', `cannot archive ${doc}`, async () => {
        // Sorted and without repeats, so that the batch's name tells its range truthfully.
        await writeBatch(doc, logOf(doc).folder, normaliseLog(entries))
      })
    },

    appendLogMany: async (items) => {
      const writes = items.filter((i) => i.entries.length > 0)
      if (writes.length === 0) return
      await guarded(
        'STORAGE_UNAVAILABLE',
        `cannot archive ${writes.length} documents`,
        async () => {
          const puts = writes.map(
            ({ doc, entries }) => batchPut(doc, logOf(doc).folder, normaliseLog(entries)).put,
          )
          await blobs.putMany(puts)
        },
      )
    },

    readLog: (doc, range = {}) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read the update log of ${doc}`, () => {
        const { folder, what } = logOf(doc)
        const after = range.after === undefined ? undefined : sortableWatermark(range.after)
        const upTo = range.upTo === undefined ? undefined : sortableWatermark(range.upTo)
        // A batch wholly outside (after, upTo] has nothing to give: not read.
        const inRange = (b: BatchName) =>
          (after === undefined || b.last > after) && (upTo === undefined || b.first <= upTo)
        return untilSettled(what, async () => {
          const wanted = await stableListing(async () => {
            const batches = batchNames(await blobs.list(folder)).filter(inRange)
            return new Map(batches.map((b) => [b.name, b]))
          })
          const read = await readBatches(folder, [...wanted.values()])
          return read === VANISHED ? VANISHED : normaliseLog(read.flat(), range)
        })
      }),

    logExtent: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read the update log of ${doc}`, () => {
        const { folder, what } = logOf(doc)
        return untilSettled(what, async () => {
          const sizes = await stableListing(() => blobs.listSized(folder))
          const batches = batchNames(sizes.keys())
          const groups = overlapGroups(batches)
          const first = groups[0]?.[0]
          if (first === undefined) return null
          const counts = await mapLimit(groups, CONCURRENCY, (group) =>
            group.length === 1 && group[0]
              ? countOne(folder, group[0])
              : countOverlapping(folder, group),
          )
          if (counts.some((n) => n === null)) return VANISHED
          return {
            first: watermarkFromSortable(first.first),
            last: watermarkFromSortable(batches.reduce((a, b) => (b.last > a ? b.last : a), '')),
            entries: sum(counts as number[]),
            bytes: sum(batches.map((b) => sizes.get(b.name) ?? 0)),
            segments: batches.length,
          }
        })
      }),

    packLog: (doc, upTo) =>
      guarded('STORAGE_UNAVAILABLE', `cannot pack the update log of ${doc}`, () => {
        const { folder, what } = logOf(doc)
        const bound = sortableWatermark(upTo)
        return untilSettled(what, async () => {
          const packed = batchNames(await blobs.list(folder)).filter((b) => b.last <= bound)
          if (packed.length < 2) return 0
          const read = await readBatches(folder, packed)
          if (read === VANISHED) return VANISHED
          // The segment first: until the batches are gone, readers find their entries twice.
          const segment = await writeBatch(doc, folder, normaliseLog(read.flat()))
          await blobs.delete(packed.filter((b) => b.name !== segment).map((b) => folder + b.name))
          return packed.length
        })
      }),

    dropLog: (doc, upTo) =>
      guarded('STORAGE_UNAVAILABLE', `cannot drop the update log of ${doc}`, () => {
        const { folder, what } = logOf(doc)
        const bound = sortableWatermark(upTo)
        return untilSettled(what, async () => {
          const batches = batchNames(await blobs.list(folder))
          const dropped = batches.filter((b) => b.first <= bound)
          if (dropped.length === 0) return
          const straddling = await readBatches(
            folder,
            dropped.filter((b) => b.last > bound),
          )
          if (straddling === VANISHED) return VANISHED
          const kept = normaliseLog(straddling.flat(), { after: upTo })
          if (kept.length > 0) {
            // The kept entries first, as one batch; one already of that name is merged, not lost.
            const name = `${logBatchName(kept)}.ylog`
            const same = batches.filter((b) => b.name === name)
            const existing = await readBatches(folder, same)
            if (existing === VANISHED) return VANISHED
            await writeBatch(doc, folder, normaliseLog([...kept, ...existing.flat()]))
          }
          await blobs.delete(dropped.map((b) => folder + b.name))
        })
      }),
  }
}
