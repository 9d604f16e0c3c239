/**
 * Checks that what is stored can be served: a document's read (stored state + stream tail) merged
 * the way nodes answer a join decodes and equals applying the parts in order (what a client that
 * was connected all along holds; DESIGN.md invariant 3), and a backup's files match its manifest.
 */
import * as Y from 'yjs'
import type { StreamId } from '@streambed/common'
import { mergeAll } from '@streambed/protocol'
import { partsOf, readDocument } from '@streambed/streams'
import type { BackupTarget } from './backup-target.js'
import type { BackupEntry } from './backup.js'
import { docToJSON } from '@streambed/protocol'
import { mapLimit, type RecoveryDeps } from './documents.js'
import { type BackupProblem, loadDocument, readManifest } from './manifest.js'

export type DocumentVerdict =
  | {
      readonly doc: string
      readonly ok: true
      /** The read covers every entry with an id <= upTo. */
      readonly upTo: StreamId
      /** Stream entries after the stored watermark. */
      readonly tailEntries: number
      /** Bytes a joining client receives. */
      readonly bytes: number
    }
  | { readonly doc: string; readonly ok: false; readonly upTo: StreamId; readonly problem: string }

/** Applies `parts` in order to a fresh document; throws when one does not apply. */
const applyInOrder = (parts: readonly Uint8Array[]): { json: string; holes: boolean } => {
  const ydoc = new Y.Doc()
  try {
    parts.forEach((p, i) => {
      try {
        Y.applyUpdate(ydoc, p)
      } catch (err) {
        throw new Error(`part ${i} does not apply: ${(err as Error).message}`, { cause: err })
      }
    })
    const holes = ydoc.store.pendingStructs !== null || ydoc.store.pendingDs !== null
    return { json: JSON.stringify(docToJSON(Y.encodeStateAsUpdate(ydoc))), holes }
  } finally {
    ydoc.destroy()
  }
}

/**
 * Whether `doc` is served right: its merged read decodes, builds on nothing missing, and equals
 * its parts applied in order. Throws only when Redis or storage fail (`REDIS_UNAVAILABLE`,
 * `STORAGE_UNAVAILABLE`, `STREAM_GAP`); a mismatch is a verdict.
 */
export const verifyDocument = async (deps: RecoveryDeps, doc: string): Promise<DocumentVerdict> => {
  const read = await readDocument(deps.storage, deps.streams, doc)
  const parts = partsOf(read)
  const fail = (problem: string): DocumentVerdict => ({ doc, ok: false, upTo: read.upTo, problem })
  let inOrder: { json: string; holes: boolean }
  try {
    inOrder = applyInOrder(parts)
  } catch (err) {
    return fail(`stored state + stream: ${(err as Error).message}`)
  }
  if (inOrder.holes) return fail('stored state + stream build on updates that are missing (a hole)')
  let merged: Uint8Array
  let joined: { json: string; holes: boolean }
  try {
    merged = mergeAll(parts)
    joined = applyInOrder([merged])
  } catch (err) {
    return fail(`what a joining client receives does not decode: ${(err as Error).message}`)
  }
  if (joined.holes) return fail('what a joining client receives builds on missing updates')
  if (joined.json !== inOrder.json)
    return fail(
      'what a joining client receives differs from the stored state and stream applied in order',
    )
  return {
    doc,
    ok: true,
    upTo: read.upTo,
    tailEntries: read.tail.entries.length,
    bytes: merged.length,
  }
}

export interface BackupVerdict {
  readonly location: string
  readonly ok: boolean
  readonly documents: number
  readonly objects: number
  readonly bytes: number
  readonly problems: BackupProblem[]
}

/**
 * Checks the files of `entries` (a backup's manifest entries): each present, its size and sha256
 * as listed, decodable, naming its document; and every document's required files listed.
 */
export const verifyBackupEntries = async (
  src: BackupTarget,
  entries: readonly BackupEntry[],
): Promise<BackupVerdict> => {
  const loaded = await mapLimit(entries, 8, (e) => loadDocument(src, e))
  const problems = loaded.flatMap((l) => (Array.isArray(l) ? l : []))
  let objects = 0
  let bytes = 0
  for (const e of entries) {
    objects += e.objects.length
    for (const o of e.objects) bytes += o.bytes
  }
  return {
    location: src.location,
    ok: problems.length === 0,
    documents: entries.length,
    objects,
    bytes,
    problems,
  }
}

/**
 * Checks a whole backup (see verifyBackupEntries). Throws `AppError('NOT_FOUND')` when `src` has
 * no manifest, `BAD_MESSAGE` when the manifest is invalid; damaged files are listed as problems.
 */
export const verifyBackup = async (src: BackupTarget): Promise<BackupVerdict> =>
  verifyBackupEntries(src, (await readManifest(src)).documents)
