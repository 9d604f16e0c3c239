import * as Y from 'yjs'

/**
 * The compacted state of a document: stored state plus stream entries applied to a
 * garbage-collected Y.Doc, encoded with encodeStateAsUpdate. Deleted content is dropped, which
 * makes snapshots several times smaller than a mergeUpdates of the same inputs.
 */
export const snapshot = (state: Uint8Array | null, updates: readonly Uint8Array[]): Uint8Array => {
  const doc = new Y.Doc({ gc: true })
  try {
    if (state) Y.applyUpdate(doc, state)
    for (const u of updates) Y.applyUpdate(doc, u)
    return Y.encodeStateAsUpdate(doc)
  } finally {
    doc.destroy()
  }
}
