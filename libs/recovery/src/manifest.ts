/**
 * Reading a backup back: its manifest, and each document's files checked against it (size,
 * sha256, format, the document name inside) before anything is used.
 */
import { AppError, compareIds, isStreamId, type StreamId } from '@streambed/common'
import { checkDocName } from '@streambed/protocol'
import {
  decodeLogBatch,
  decodeStateFile,
  type LogEntry,
  type StoredDoc,
  watermarkFromSortable,
} from '@streambed/storage'
import type { BackupTarget } from './backup-target.js'
import {
  BACKUP_FORMAT,
  type BackupEntry,
  type BackupManifest,
  docFolder,
  MANIFEST_PATH,
  sha256Hex,
} from './backup.js'

/** One thing wrong with a backup. */
export interface BackupProblem {
  /** The document concerned, if one. */
  readonly doc?: string
  /** The file concerned, relative to the backup. */
  readonly path: string
  readonly problem: string
}

const bad = (location: string, why: string) =>
  new AppError(
    'BAD_MESSAGE',
    `${location}/${MANIFEST_PATH} is not a Streambed backup manifest: ${why}`,
  )

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/** Checks one manifest entry's shape; returns it typed or throws BAD_MESSAGE naming it. */
const checkEntry = (location: string, raw: unknown, index: number): BackupEntry => {
  const at = `documents[${index}]`
  if (!isObject(raw)) throw bad(location, `${at} is not an object`)
  const { name, watermark, tailLast, objects } = raw
  if (typeof name !== 'string') throw bad(location, `${at}.name is not a string`)
  try {
    checkDocName(name)
  } catch (err) {
    throw bad(location, `${at}.name: ${(err as Error).message}`)
  }
  if (watermark !== null && !(typeof watermark === 'string' && isStreamId(watermark)))
    throw bad(location, `${at}.watermark of ${name} is not a stream id or null`)
  if (!(typeof tailLast === 'string' && isStreamId(tailLast)))
    throw bad(location, `${at}.tailLast of ${name} is not a stream id`)
  if (!Array.isArray(objects)) throw bad(location, `${at}.objects of ${name} is not an array`)
  const folder = docFolder(name)
  for (const o of objects as unknown[]) {
    const ok =
      isObject(o) &&
      typeof o.path === 'string' &&
      o.path.startsWith(folder) &&
      !o.path.split('/').some((s) => s === '..' || s === '.' || s === '') &&
      Number.isSafeInteger(o.bytes) &&
      (o.bytes as number) >= 0 &&
      typeof o.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(o.sha256)
    if (!ok) throw bad(location, `${at}.objects of ${name}: ${JSON.stringify(o)}`)
  }
  const count = (v: unknown) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : 0)
  return {
    name,
    watermark: watermark,
    tailLast,
    tailEntries: count(raw.tailEntries),
    logEntries: count(raw.logEntries),
    checkpoints: count(raw.checkpoints),
    objects: objects as BackupEntry['objects'],
  }
}

/**
 * The manifest of the backup at `src`. Throws `AppError('NOT_FOUND')` when there is none (no
 * backup, or one that did not finish) and `BAD_MESSAGE` when it is not a valid manifest.
 */
export const readManifest = async (src: BackupTarget): Promise<BackupManifest> => {
  const bytes = await src.get(MANIFEST_PATH)
  if (bytes === null)
    throw new AppError(
      'NOT_FOUND',
      `no backup at ${src.location}: ${MANIFEST_PATH} is missing (a backup writes it last, so an ` +
        'unfinished backup has none)',
    )
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch (err) {
    throw new AppError('BAD_MESSAGE', `${src.location}/${MANIFEST_PATH} is not JSON`, {
      cause: err,
    })
  }
  if (!isObject(raw)) throw bad(src.location, 'not an object')
  if (raw.format !== BACKUP_FORMAT)
    throw bad(src.location, `format ${JSON.stringify(raw.format)}, expected "${BACKUP_FORMAT}"`)
  if (!Array.isArray(raw.documents)) throw bad(src.location, 'documents is not an array')
  const documents = (raw.documents as unknown[]).map((d, i) => checkEntry(src.location, d, i))
  const names = new Set<string>()
  for (const d of documents) {
    if (names.has(d.name)) throw bad(src.location, `document ${d.name} appears twice`)
    names.add(d.name)
  }
  return {
    format: BACKUP_FORMAT,
    createdAt: typeof raw.createdAt === 'string' ? raw.createdAt : '',
    redisPrefix: typeof raw.redisPrefix === 'string' ? raw.redisPrefix : '',
    documents,
    totals: raw.totals as BackupManifest['totals'],
  }
}

/** A document's backup, read and checked. */
export interface LoadedDocument {
  readonly entry: BackupEntry
  readonly stored: StoredDoc | null
  /** Stream entries after the stored watermark, ascending. */
  readonly tail: LogEntry[]
  readonly log: LogEntry[]
  readonly checkpoints: { upTo: StreamId; state: Uint8Array }[]
}

/** The problems of an entry's object list itself: required files missing from it. */
export const missingObjects = (entry: BackupEntry): BackupProblem[] => {
  const folder = docFolder(entry.name)
  const paths = new Set(entry.objects.map((o) => o.path))
  const required = [`${folder}tail.ylog`, `${folder}log.ylog`]
  if (entry.watermark !== null) required.push(`${folder}state.ydoc`)
  return required
    .filter((p) => !paths.has(p))
    .map((path) => ({ doc: entry.name, path, problem: 'not listed in the manifest' }))
}

/** Ids ascending and unique, each a stream id. */
const orderedIds = (entries: readonly LogEntry[]): boolean =>
  entries.every((e, i) => {
    if (!isStreamId(e.id)) return false
    const prev = entries[i - 1]
    return prev === undefined || compareIds(prev.id, e.id) < 0
  })

/**
 * Reads every file of `entry` from `src` and checks it: present, the size and sha256 the manifest
 * names, decodes, names the document. Returns the decoded document, or the problems found (every
 * one of them, so a report can name them all).
 */
export const loadDocument = async (
  src: BackupTarget,
  entry: BackupEntry,
): Promise<LoadedDocument | BackupProblem[]> => {
  const problems = missingObjects(entry)
  const doc = entry.name
  const folder = docFolder(doc)
  let stored: StoredDoc | null = null
  let tail: LogEntry[] = []
  let log: LogEntry[] = []
  const checkpoints: LoadedDocument['checkpoints'] = []
  for (const o of entry.objects) {
    const problem = (p: string) => problems.push({ doc, path: o.path, problem: p })
    const bytes = await src.get(o.path)
    if (bytes === null) {
      problem('missing')
      continue
    }
    if (bytes.byteLength !== o.bytes) {
      problem(`${bytes.byteLength} bytes, the manifest says ${o.bytes}`)
      continue
    }
    const sha = sha256Hex(bytes)
    if (sha !== o.sha256) {
      problem(`sha256 ${sha}, the manifest says ${o.sha256}`)
      continue
    }
    const rel = o.path.slice(folder.length)
    try {
      if (rel === 'state.ydoc') {
        const file = decodeStateFile(o.path, bytes)
        if (file.doc !== doc) problem(`holds document ${JSON.stringify(file.doc)}`)
        else if (file.stored.watermark !== entry.watermark)
          problem(`watermark ${file.stored.watermark}, the manifest says ${entry.watermark}`)
        else stored = file.stored
      } else if (rel === 'tail.ylog' || rel === 'log.ylog') {
        const entries = decodeLogBatch(o.path, bytes)
        if (!orderedIds(entries)) problem('entry ids are not ascending stream ids')
        else if (rel === 'tail.ylog') tail = entries
        else log = entries
      } else if (rel.startsWith('checkpoints/')) {
        const file = decodeStateFile(o.path, bytes)
        const named = watermarkFromSortable(rel.slice('checkpoints/'.length, -'.ydoc'.length))
        if (file.doc !== doc) problem(`holds document ${JSON.stringify(file.doc)}`)
        else if (file.stored.watermark !== named)
          problem(`checkpoint of ${file.stored.watermark} under the name of ${named}`)
        else checkpoints.push({ upTo: named, state: file.stored.state })
      } else problem('not a file a backup writes')
    } catch (err) {
      problem(`does not decode: ${(err as Error).message}`)
    }
  }
  return problems.length > 0 ? problems : { entry, stored, tail, log, checkpoints }
}

/** The problems as one message (the first few named). */
export const describeProblems = (location: string, problems: readonly BackupProblem[]): string => {
  const shown = problems
    .slice(0, 10)
    .map((p) => `${p.path}: ${p.problem}`)
    .join('; ')
  const more = problems.length > 10 ? `; and ${problems.length - 10} more` : ''
  return `backup ${location} is damaged: ${shown}${more}`
}
