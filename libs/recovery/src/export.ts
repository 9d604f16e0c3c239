/**
 * A document out of Streambed (as a Yjs update, or as JSON), now or as it was at a time; and an
 * update into a document through the normal write path (connected clients receive it).
 */
import { AppError, type StreamId } from '@streambed/common'
import { addsNothing, createSyncBaseline, inspectUpdate, mergeAll } from '@streambed/protocol'
import { type AppendResult, partsOf, readDocument } from '@streambed/streams'
import { docToJSON, type Json } from '@streambed/protocol'
import type { RecoveryDeps } from './documents.js'
import { documentAt } from './history.js'

export interface ExportOptions {
  /** The document as it was at this time (epoch ms); default now. */
  atMs?: number
  format: 'update' | 'json'
}

interface ExportedBase {
  readonly doc: string
  /** The export holds every entry with an id <= upTo. */
  readonly upTo: StreamId
  /** False when the time asked for lies before the history kept (an earlier checkpoint). */
  readonly exact: boolean
  /** The time the content is as of (epoch ms), when `atMs` was given. */
  readonly asOf?: number
}

export type Exported =
  | (ExportedBase & { readonly format: 'update'; readonly update: Uint8Array })
  | (ExportedBase & { readonly format: 'json'; readonly json: Record<string, Json> })

/**
 * `doc` as one Yjs v1 update (what a joining client receives: stored state + stream merged) or as
 * JSON (docToJSON), now or at `atMs` (documentAt). Throws `AppError('NOT_FOUND')` for a document
 * with nothing stored or streamed (or no history at `atMs`).
 */
export const exportDocument = async (
  deps: RecoveryDeps,
  doc: string,
  opts: ExportOptions,
): Promise<Exported> => {
  let base: ExportedBase
  let update: Uint8Array
  if (opts.atMs !== undefined) {
    const at = await documentAt(deps, doc, opts.atMs)
    update = at.state
    base = { doc, upTo: at.upTo, exact: at.exact, asOf: at.asOf }
  } else {
    const read = await readDocument(deps.storage, deps.streams, doc)
    if (!read.stored && read.tail.entries.length === 0)
      throw new AppError('NOT_FOUND', `document ${doc} has no content (nothing stored or streamed)`)
    update = mergeAll(partsOf(read))
    base = { doc, upTo: read.upTo, exact: true }
  }
  return opts.format === 'json'
    ? { ...base, format: 'json', json: docToJSON(update) }
    : { ...base, format: 'update', update }
}

export interface ImportResult {
  readonly doc: string
  /** The entry appended, or null when the document had all of it already. */
  readonly appended: AppendResult | null
}

/**
 * Appends `update` (a Yjs v1 update, e.g. an export of another document or system) to `doc`
 * through `streams.append`: ids the document has keep their content, clients receive the rest;
 * an update the document holds entirely appends nothing.
 * Throws `AppError('BAD_MESSAGE')` for bytes that are not an update the node accepts, and
 * `CLOCK_GAP` for one that skips clocks of a client the document has (it would leave a gap).
 */
export const importDocument = async (
  deps: RecoveryDeps,
  doc: string,
  bytes: Uint8Array,
  origin: string,
): Promise<ImportResult> => {
  const shape = inspectUpdate(bytes)
  // An import the document holds already appends nothing (the clock map would strip its structs,
  // not its delete set): importing twice is harmless.
  const read = await readDocument(deps.storage, deps.streams, doc)
  if (addsNothing(bytes, createSyncBaseline(mergeAll(partsOf(read)))))
    return { doc, appended: null }
  const appended = await deps.streams.append(doc, bytes, origin, { floor: read.upTo, shape })
  return { doc, appended }
}
