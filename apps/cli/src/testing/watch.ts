/** Test helpers (not built) for compaction tests. */
import * as Y from 'yjs'
import { compareIds } from '@streambed/common'
import type { DocStorage } from '@streambed/storage'

/** Polls the stored watermark of `doc` and records every change, to prove it never goes back. */
export const watchWatermark = (storage: DocStorage, doc: string, everyMs = 25) => {
  const seen: string[] = []
  let failed: unknown = null
  const timer = setInterval(() => {
    storage.load(doc).then(
      (stored) => {
        const w = stored?.watermark
        if (w && seen[seen.length - 1] !== w) seen.push(w)
      },
      (err: unknown) => (failed = failed ?? err),
    )
  }, everyMs)
  return {
    seen,
    /** Watermarks that were lower than one seen before. */
    regressions: () =>
      seen.filter((w, i) => seen.slice(0, i).some((earlier) => compareIds(w, earlier) < 0)),
    stop: () => {
      clearInterval(timer)
      return failed
    },
  }
}

/** The array `log` of a stored state. */
export const storedLog = async (storage: DocStorage, doc: string): Promise<string[]> => {
  const stored = await storage.load(doc)
  const ydoc = new Y.Doc()
  if (stored) Y.applyUpdate(ydoc, stored.state)
  return ydoc.getArray<string>('log').toArray()
}
