/**
 * Backups of every document while the system runs.
 *
 *   <dest>/manifest.json                          written last: a backup without one is incomplete
 *   <dest>/docs/<escaped>/state.ydoc              stored state (encodeStateFile), when there is one
 *   <dest>/docs/<escaped>/tail.ylog               stream entries after the stored watermark
 *                                                 (encodeLogBatch, original ids; may be empty)
 *   <dest>/docs/<escaped>/log.ylog                the update log (encodeLogBatch; may be empty)
 *   <dest>/docs/<escaped>/checkpoints/<sortable upTo>.ydoc   checkpoints (encodeStateFile)
 *
 * `<escaped>` is escapeDocName (the storage backends' name); the manifest holds the real name.
 * manifest.json: `{ format: 'streambed-backup-v1', createdAt, redisPrefix, documents: [{ name,
 * watermark, tailLast, tailEntries, logEntries, checkpoints, objects: [{ path, bytes, sha256 }] }],
 * totals }`.
 *
 * Consistency, per document: the state and the tail come from one `readDocument` (the read every
 * node and worker uses), so together they are the document at one instant, with no hole; the log
 * and the checkpoints are read after it (compaction archives before it stores, so the log holds
 * every entry up to the stored watermark, except what dropLog folded into a checkpoint). Documents
 * are read one after another: the backup is not one instant of the whole deployment.
 */
import { createHash } from 'node:crypto'
import { AppError, maxId, type StreamId, ZERO_ID } from '@streambed/common'
import {
  encodeLogBatch,
  encodeStateFile,
  escapeDocName,
  sortableWatermark,
} from '@streambed/storage'
import { readDocument } from '@streambed/streams'
import type { BackupTarget } from './backup-target.js'
import { allDocuments, inBatches, mapLimit, type RecoveryDeps } from './documents.js'

export const BACKUP_FORMAT = 'streambed-backup-v1'
export const MANIFEST_PATH = 'manifest.json'

export interface BackupObject {
  /** Relative to the backup's root. */
  readonly path: string
  readonly bytes: number
  /** Hex. */
  readonly sha256: string
}

export interface BackupEntry {
  readonly name: string
  /** The stored watermark, or null when the document had no stored state. */
  readonly watermark: StreamId | null
  /** The last id the document's stream had reached (`0-0`: none). */
  readonly tailLast: StreamId
  readonly tailEntries: number
  readonly logEntries: number
  readonly checkpoints: number
  readonly objects: BackupObject[]
}

export interface BackupTotals {
  readonly documents: number
  readonly objects: number
  readonly bytes: number
  readonly tailEntries: number
  readonly logEntries: number
  readonly checkpoints: number
}

export interface BackupManifest {
  readonly format: typeof BACKUP_FORMAT
  /** ISO 8601 UTC time the manifest was written (the backup is complete from then). */
  readonly createdAt: string
  /** REDIS_PREFIX of the deployment backed up (informative: a restore may go to another). */
  readonly redisPrefix: string
  /** Ascending by name. */
  readonly documents: BackupEntry[]
  readonly totals: BackupTotals
}

/** Folder of one document's files. */
export const docFolder = (doc: string): string => `docs/${escapeDocName(doc)}/`

export const sha256Hex = (bytes: Uint8Array): string =>
  createHash('sha256').update(bytes).digest('hex')

/** Documents per batch of a backup by default. */
export const DEFAULT_BATCH_SIZE = 50
/** Documents read at once within a batch. */
const CONCURRENCY = 4

export interface PlanBackupOptions {
  /** Documents per batch; default 50. */
  batchSize?: number
}

/**
 * The documents to back up (stored state ∪ history ∪ Redis streams), in batches. Throws
 * `AppError('CONFIG')` when `target` holds a complete backup already (a manifest).
 */
export const planBackup = async (
  deps: RecoveryDeps,
  target: BackupTarget,
  opts: PlanBackupOptions = {},
): Promise<string[][]> => {
  if (await target.exists(MANIFEST_PATH))
    throw new AppError(
      'CONFIG',
      `${target.location} holds a backup already (${MANIFEST_PATH}); choose another destination`,
    )
  return inBatches(await allDocuments(deps), opts.batchSize ?? DEFAULT_BATCH_SIZE)
}

/**
 * Backs up `docs` into `target` and returns their manifest entries, once every file they name is
 * written (durably). Documents with nothing anywhere (gone since the listing) get no entry.
 * Idempotent: running it again rewrites the files with what the documents hold then.
 */
export const backupBatch = async (
  deps: RecoveryDeps,
  target: BackupTarget,
  docs: readonly string[],
): Promise<BackupEntry[]> => {
  const entries = await mapLimit(docs, CONCURRENCY, (doc) => backupDocument(deps, target, doc))
  return entries.filter((e): e is BackupEntry => e !== null)
}

const backupDocument = async (
  deps: RecoveryDeps,
  target: BackupTarget,
  doc: string,
): Promise<BackupEntry | null> => {
  const { storage, streams } = deps
  // The state and tail first, in one read; the log after it (see the module comment).
  const read = await readDocument(storage, streams, doc)
  const [log, checkpointIds] = await Promise.all([
    storage.readLog(doc),
    storage.listCheckpoints(doc),
  ])
  const checkpoints = []
  for (const upTo of checkpointIds) {
    // One dropped since the listing (thinned by maintenance) is left out.
    const checkpoint = await storage.loadCheckpoint(doc, upTo)
    if (checkpoint) checkpoints.push(checkpoint)
  }
  const tail = read.tail.entries.map((e) => ({ id: e.id, update: e.update }))
  if (!read.stored && tail.length === 0 && log.length === 0 && checkpoints.length === 0) return null

  const folder = docFolder(doc)
  const files: [string, Uint8Array][] = []
  if (read.stored) files.push([`${folder}state.ydoc`, encodeStateFile(doc, read.stored)])
  files.push([`${folder}tail.ylog`, encodeLogBatch(doc, tail)])
  files.push([`${folder}log.ylog`, encodeLogBatch(doc, log)])
  for (const c of checkpoints) {
    const file = encodeStateFile(doc, { state: c.state, watermark: c.upTo })
    files.push([`${folder}checkpoints/${sortableWatermark(c.upTo)}.ydoc`, file])
  }
  const objects: BackupObject[] = []
  for (const [path, bytes] of files) {
    await target.put(path, bytes)
    objects.push({ path, bytes: bytes.byteLength, sha256: sha256Hex(bytes) })
  }
  return {
    name: doc,
    watermark: read.stored?.watermark ?? null,
    tailLast: maxId(read.tail.last, tail.at(-1)?.id ?? ZERO_ID),
    tailEntries: tail.length,
    logEntries: log.length,
    checkpoints: checkpoints.length,
    objects,
  }
}

export const totalsOf = (documents: readonly BackupEntry[]): BackupTotals => {
  let objects = 0
  let bytes = 0
  let tailEntries = 0
  let logEntries = 0
  let checkpoints = 0
  for (const d of documents) {
    objects += d.objects.length
    for (const o of d.objects) bytes += o.bytes
    tailEntries += d.tailEntries
    logEntries += d.logEntries
    checkpoints += d.checkpoints
  }
  return { documents: documents.length, objects, bytes, tailEntries, logEntries, checkpoints }
}

/**
 * Writes manifest.json, which makes the backup complete; call it after every batch's entries
 * were returned. Returns the manifest. Throws `AppError('INTERNAL')` when a document has two
 * entries (batches that overlap).
 */
export const finishBackup = async (
  target: BackupTarget,
  entries: readonly BackupEntry[],
  opts: { redisPrefix: string; nowMs?: number },
): Promise<BackupManifest> => {
  const documents = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  for (let i = 1; i < documents.length; i++) {
    if (documents[i]?.name === documents[i - 1]?.name)
      throw new AppError('INTERNAL', `document ${documents[i]?.name} was backed up twice`)
  }
  const manifest: BackupManifest = {
    format: BACKUP_FORMAT,
    createdAt: new Date(opts.nowMs ?? Date.now()).toISOString(),
    redisPrefix: opts.redisPrefix,
    documents,
    totals: totalsOf(documents),
  }
  await target.put(MANIFEST_PATH, Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`))
  return manifest
}

/** Folder name of a backup taken at `ms` under a root (`20261127T100000.123Z`): sorts by time. */
export const backupName = (ms: number): string => new Date(ms).toISOString().replace(/[-:]/g, '')

const BACKUP_NAME = /^\d{8}T\d{6}\.\d{3}Z$/

export interface PruneResult {
  /** Complete backups kept, oldest first. */
  readonly kept: string[]
  /** Backups removed (complete ones beyond `keep`, incomplete ones older than the oldest kept). */
  readonly removed: string[]
}

/**
 * Retention of scheduled backups under `<root>/<backupName>/`: keeps the newest `keep` complete
 * ones (with a manifest) and everything newer than the oldest of them (a backup in progress), and
 * removes the rest — complete backups beyond `keep` and incomplete ones left by failed runs.
 * Folders not named like backups are never touched.
 */
export const pruneBackups = async (root: BackupTarget, keep: number): Promise<PruneResult> => {
  if (!Number.isInteger(keep) || keep < 1)
    throw new AppError('CONFIG', `backups to keep must be a whole number >= 1, got ${keep}`)
  const folders = new Map<string, boolean>()
  for (const { path } of await root.list()) {
    const [name, ...rest] = path.split('/')
    if (name === undefined || rest.length === 0 || !BACKUP_NAME.test(name)) continue
    folders.set(name, folders.get(name) === true || rest.join('/') === MANIFEST_PATH)
  }
  const names = [...folders.keys()].sort()
  const complete = names.filter((n) => folders.get(n) === true)
  const kept = complete.slice(-keep)
  const oldestKept = kept[0]
  const removed = oldestKept === undefined ? [] : names.filter((n) => n < oldestKept)
  for (const name of removed) await root.removeAll(`${name}/`)
  return { kept, removed }
}
