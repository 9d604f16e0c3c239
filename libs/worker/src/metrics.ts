import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Metrics of a worker; names are documented in docs/operations.md. */
export const createWorkerMetrics = (
  registry = new Registry(),
  opts: { defaultMetrics?: boolean } = {},
) => {
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry })
  const r = [registry]
  return {
    registry,
    tasks: new Counter({
      name: 'streambed_worker_tasks_total',
      help: 'task deliveries by outcome',
      labelNames: ['outcome'],
      registers: r,
    }),
    compactions: new Counter({
      name: 'streambed_compactions_total',
      help: 'documents stored by a compaction',
      registers: r,
    }),
    compactionSeconds: new Histogram({
      name: 'streambed_compaction_seconds',
      help: 'load + merge + archive + store of one document',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    compactedEntries: new Counter({
      name: 'streambed_compacted_entries_total',
      help: 'stream entries compacted',
      registers: r,
    }),
    snapshotBytes: new Counter({
      name: 'streambed_snapshot_bytes_total',
      help: 'bytes of stored snapshots',
      registers: r,
    }),
    failures: new Counter({
      name: 'streambed_compaction_failures_total',
      help: 'failed deliveries by error code',
      labelNames: ['code'],
      registers: r,
    }),
    conflicts: new Counter({
      name: 'streambed_storage_conflicts_total',
      help: 'compare-and-set lost to another writer',
      registers: r,
    }),
    streamsDeleted: new Counter({
      name: 'streambed_streams_deleted_total',
      help: 'idle, fully compacted streams deleted',
      registers: r,
    }),
    queueDepth: new Gauge({
      name: 'streambed_queue_tasks',
      help: 'tasks by state',
      labelNames: ['state'],
      registers: r,
    }),
    oldestPending: new Gauge({
      name: 'streambed_queue_oldest_pending_seconds',
      help: 'idle time of the oldest delivered, unsettled task',
      registers: r,
    }),
    active: new Gauge({
      name: 'streambed_worker_active_tasks',
      help: 'tasks being processed by this worker',
      registers: r,
    }),
  }
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>
