/** Piscina task: computeSync on a worker thread (see sync-pool.ts). */
import { computeSync, type SyncAnswer } from './sync-compute.js'
import type { PackedSyncJob } from './sync-pool.js'

export default (job: PackedSyncJob): SyncAnswer => {
  const parts: Uint8Array[] = []
  let offset = 0
  for (const length of job.lengths) {
    parts.push(job.packed.subarray(offset, offset + length))
    offset += length
  }
  return computeSync({
    parts,
    clientStateVectors: job.clientStateVectors,
    baseline: job.baseline,
    stored: job.stored,
  })
}
