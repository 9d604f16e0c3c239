/** Piscina task: computeSync on a worker thread (see sync-pool.ts). */
import { computeSync, type SyncAnswer, type SyncJob } from './sync-compute.js'

export default (job: SyncJob): SyncAnswer => computeSync(job)
