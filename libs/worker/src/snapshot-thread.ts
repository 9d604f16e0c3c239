/** Piscina task: runs `snapshot` on a worker thread (see merger.ts). */
import { snapshot } from './snapshot.js'

export interface SnapshotJob {
  state: Uint8Array | null
  updates: Uint8Array[]
}

export default ({ state, updates }: SnapshotJob): Uint8Array => snapshot(state, updates)
