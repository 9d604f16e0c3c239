/**
 * Restoring a backup (backup.ts) into a deployment: storage (state, update log, checkpoints) and
 * Redis (the stream tail with its original ids, meta `last`, one compaction task per document).
 *
 * Per document, in this order: every file is read and checked first (size, sha256, format; a
 * problem means nothing of the batch is written), then the stored state (compare-and-set), the log,
 * the checkpoints, and last the Redis part in one script (restore-tail-3.lua), which also drops the
 * clock map so that the next append seeds it from what was restored. Each step is idempotent, so a
 * batch run twice (a retry after a crash) restores the same.
 *
 * Force (restoring over a deployment that is not empty): the stored state is replaced by the
 * backup's when storage is behind it, and kept when storage is ahead (a watermark never goes back);
 * stream entries are added to what the stream holds (the stream becomes the union, in id order).
 * Content written to the target under the same Yjs ids as the backup's is not reconciled: restore
 * over a deployment that diverged from the backup only when its content is expendable.
 */
import { AppError, compareIds, guarded, maxId, type StreamId, ZERO_ID } from '@streambed/common'
import type { StoredDoc } from '@streambed/storage'
import { restoreTail } from '@streambed/streams'
import type { BackupTarget } from './backup-target.js'
import type { BackupEntry } from './backup.js'
import { inBatches, mapLimit, type RecoveryDeps, scanKeys } from './documents.js'
import {
  type BackupProblem,
  describeProblems,
  type LoadedDocument,
  loadDocument,
  readManifest,
} from './manifest.js'

/** Names shown when refusing a non-empty target. */
const SHOWN = 5

/**
 * Throws `AppError('CONFIG')` naming what is there unless the deployment is empty: no document
 * stream or meta hash under the Redis prefix, no document in storage (state or history).
 */
export const checkEmptyTarget = async (deps: RecoveryDeps): Promise<void> => {
  const { redis, keys, storage } = deps
  const isDocKey = (key: string) => {
    const kind = keys.decode(key)?.kind
    return kind === 's' || kind === 'm'
  }
  // Queue shards and job keys share the pattern; only streams and meta hashes count.
  const found = await scanKeys(redis, `${keys.prefix}:v1:{*`, { limit: 100, keep: isDocKey })
  const inRedis = new Set(found.map((key) => keys.decode(key)?.doc ?? key))
  const inStorage = await guarded('STORAGE_UNAVAILABLE', 'list documents', async () => [
    ...new Set([
      ...(await storage.list({ limit: SHOWN })),
      ...(await storage.listHistory({ limit: SHOWN })),
    ]),
  ])
  if (inRedis.size === 0 && inStorage.length === 0) return
  const names = (set: Iterable<string>) => [...set].sort().slice(0, SHOWN).join(', ')
  const where: string[] = []
  if (inRedis.size > 0)
    where.push(`Redis (prefix ${keys.prefix}) holds streams of documents: ${names(inRedis)}`)
  if (inStorage.length > 0)
    where.push(`${storage.kind} storage holds documents: ${names(inStorage)}`)
  throw new AppError(
    'CONFIG',
    `the restore target is not empty: ${where.join('; ')}. Restore into an empty deployment, ` +
      "or force it (a stored state behind the backup's is replaced, one ahead is kept; stream " +
      'entries are added to what the stream holds)',
    { details: { redis: [...inRedis].sort(), storage: inStorage } },
  )
}

export interface PlanRestoreOptions {
  /** Skip the empty-target check. */
  force?: boolean
  /** Documents per batch; default 50. */
  batchSize?: number
}

/**
 * The manifest's documents in batches, after checking what one listing can: every object the
 * manifest names is there with its size (`BAD_MESSAGE` naming the files otherwise: nothing is
 * written), and the target is empty (unless forced). Checksums are checked per batch.
 */
export const planRestore = async (
  deps: RecoveryDeps,
  src: BackupTarget,
  opts: PlanRestoreOptions = {},
): Promise<BackupEntry[][]> => {
  const manifest = await readManifest(src)
  const sizes = new Map((await src.list('docs/')).map((o) => [o.path, o.bytes]))
  const problems: BackupProblem[] = []
  for (const entry of manifest.documents) {
    for (const o of entry.objects) {
      const bytes = sizes.get(o.path)
      if (bytes === undefined) problems.push({ doc: entry.name, path: o.path, problem: 'missing' })
      else if (bytes !== o.bytes)
        problems.push({
          doc: entry.name,
          path: o.path,
          problem: `${bytes} bytes, the manifest says ${o.bytes}`,
        })
    }
  }
  if (problems.length > 0)
    throw new AppError('BAD_MESSAGE', describeProblems(src.location, problems), {
      details: { problems },
    })
  if (!opts.force) await checkEmptyTarget(deps)
  return inBatches(manifest.documents, opts.batchSize ?? 50)
}

export interface RestoreBatchOptions {
  /** Restore over what the target holds (see the module comment). */
  force?: boolean
  /** Origin written on restored stream entries; default `recovery/restore`. */
  origin?: string
}

export interface RestoreBatchResult {
  readonly documents: number
  /** Stored states written, found already restored, and kept because storage was ahead. */
  readonly states: {
    readonly written: number
    readonly present: number
    readonly keptNewer: string[]
  }
  readonly logEntries: number
  readonly checkpoints: number
  /** Stream entries written back, and found in the stream already. */
  readonly tailAdded: number
  readonly tailPresent: number
  /** Documents whose stream held later entries and was rewritten as the union. */
  readonly rebuilt: string[]
  readonly tasks: number
}

/**
 * Restores the documents of `entries` from `src`. Every file of the batch is read and checked
 * before anything is written: `AppError('BAD_MESSAGE')` naming each damaged or missing file, and
 * then nothing of the batch is written. Without `force`, a document whose stored state differs
 * from the backup's fails with `CONFIG` (the target was checked empty when planning; something
 * wrote meanwhile).
 */
export const restoreBatch = async (
  deps: RecoveryDeps,
  src: BackupTarget,
  entries: readonly BackupEntry[],
  opts: RestoreBatchOptions = {},
): Promise<RestoreBatchResult> => {
  const loaded = await mapLimit(entries, 4, (entry) => loadDocument(src, entry))
  const problems = loaded.flatMap((l) => (Array.isArray(l) ? l : []))
  if (problems.length > 0)
    throw new AppError('BAD_MESSAGE', describeProblems(src.location, problems), {
      details: { problems },
    })
  const result = {
    documents: 0,
    states: { written: 0, present: 0, keptNewer: [] as string[] },
    logEntries: 0,
    checkpoints: 0,
    tailAdded: 0,
    tailPresent: 0,
    rebuilt: [] as string[],
    tasks: 0,
  }
  await mapLimit(loaded as LoadedDocument[], 4, async (doc) => {
    const r = await restoreDocumentFrom(deps, doc, opts)
    result.documents++
    if (r.state !== 'none') {
      if (r.state === 'kept-newer') result.states.keptNewer.push(doc.entry.name)
      else result.states[r.state]++
    }
    result.logEntries += doc.log.length
    result.checkpoints += doc.checkpoints.length
    result.tailAdded += r.tail.added
    result.tailPresent += r.tail.present
    if (r.tail.rebuilt) result.rebuilt.push(doc.entry.name)
    if (r.tail.newTask) result.tasks++
  })
  result.states.keptNewer.sort()
  result.rebuilt.sort()
  return result
}

/** How the stored state was restored. */
type StateOutcome = 'written' | 'present' | 'kept-newer' | 'none'

/** Sets the stored state to `stored` unless storage holds it or a later one already. */
const restoreState = async (
  deps: RecoveryDeps,
  doc: string,
  stored: StoredDoc,
  force: boolean,
): Promise<StateOutcome> => {
  const { storage } = deps
  return guarded('STORAGE_UNAVAILABLE', `restore the state of ${doc}`, async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await storage.watermark(doc)
      if (current !== null) {
        const c = compareIds(current, stored.watermark)
        if (c === 0) return 'present'
        if (!force)
          throw new AppError(
            'CONFIG',
            `document ${doc} has stored state at ${current} in the target, the backup's is at ` +
              `${stored.watermark}; restore into an empty deployment, or force it`,
          )
        if (c > 0) return 'kept-newer'
      }
      if (await storage.compareAndSet(doc, current, stored)) return 'written'
      // A compaction stored meanwhile: look again.
    }
    throw new AppError('STORAGE_UNAVAILABLE', `the state of ${doc} kept changing during a restore`)
  })
}

const restoreDocumentFrom = async (
  deps: RecoveryDeps,
  doc: LoadedDocument,
  opts: RestoreBatchOptions,
) => {
  const { storage } = deps
  const name = doc.entry.name
  const state: StateOutcome = doc.stored
    ? await restoreState(deps, name, doc.stored, opts.force === true)
    : 'none'
  await guarded('STORAGE_UNAVAILABLE', `restore the history of ${name}`, async () => {
    if (doc.log.length > 0) await storage.appendLog(name, doc.log)
    for (const c of doc.checkpoints) await storage.putCheckpoint(name, c)
  })
  const above: StreamId =
    (await guarded('STORAGE_UNAVAILABLE', `watermark of ${name}`, () => storage.watermark(name))) ??
    ZERO_ID
  const tail = await restoreTail(deps.redis, deps.keys, name, {
    above,
    reached: maxId(doc.entry.tailLast, doc.entry.watermark ?? ZERO_ID),
    entries: doc.tail,
    origin: opts.origin ?? 'recovery/restore',
    queueShards: deps.queueShards,
  })
  return { state, tail }
}
