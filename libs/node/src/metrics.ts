import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Metrics of a server node; names are documented in docs/operations.md. */
export const createNodeMetrics = (registry = new Registry()) => {
  collectDefaultMetrics({ register: registry })
  const r = [registry]
  return {
    registry,
    connections: new Gauge({
      name: 'streambed_connections',
      help: 'open WebSocket connections',
      registers: r,
    }),
    docsOpen: new Gauge({
      name: 'streambed_docs_open',
      help: 'documents with at least one connection on this node',
      registers: r,
    }),
    structureDocs: new Gauge({
      name: 'streambed_structure_docs',
      help: 'documents whose structure this node holds to check updates against (STRUCTURE_CHECK)',
      registers: r,
    }),
    structureReads: new Counter({
      name: 'streambed_structure_reads_total',
      help: 'reads of a document for the structure check: its copy built (build), the stream read for items an update names (catch-up), a fresh read for a document not held (once)',
      labelNames: ['reason'],
      registers: r,
    }),
    structureDrops: new Counter({
      name: 'streambed_structure_drops_total',
      help: 'copies dropped while their document was served: refused (an update refused, stripped or failed), lost (entries lost, an entry that does not apply), budget (STRUCTURE_CHECK_MAX_BYTES)',
      labelNames: ['reason'],
      registers: r,
    }),
    updatesAppended: new Counter({
      name: 'streambed_updates_appended_total',
      help: 'updates appended to streams',
      registers: r,
    }),
    updateBytesAppended: new Counter({
      name: 'streambed_update_bytes_appended_total',
      help: 'bytes of updates appended',
      registers: r,
    }),
    redundantUpdates: new Counter({
      name: 'streambed_updates_redundant_total',
      help: 'sync step 2 messages that added nothing and were not appended',
      registers: r,
    }),
    messagesSent: new Counter({
      name: 'streambed_messages_sent_total',
      help: 'messages sent to clients',
      labelNames: ['type'],
      registers: r,
    }),
    appendSeconds: new Histogram({
      name: 'streambed_append_seconds',
      help: 'time to append one update to Redis',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers: r,
    }),
    syncSeconds: new Histogram({
      name: 'streambed_sync_seconds',
      help: 'time from a client sync step 1 to our step 2 (storage + stream read and merge)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: r,
    }),
    syncReads: new Counter({
      name: 'streambed_sync_reads_total',
      help: 'document reads answering sync step 1s (concurrent joins of a document share one)',
      registers: r,
    }),
    syncBytes: new Counter({
      name: 'streambed_sync_bytes_total',
      help: 'bytes sent in sync step 2 replies',
      registers: r,
    }),
    awarenessRefused: new Counter({
      name: 'streambed_awareness_refused_total',
      help: 'awareness entries refused: the client id belongs to another connection (not-owner), or the connection holds too many ids (too-many-ids)',
      labelNames: ['reason'],
      registers: r,
    }),
    httpRateLimited: new Counter({
      name: 'streambed_http_rate_limited_total',
      help: 'HTTP requests refused with 429 (HTTP_MAX_REQUESTS_PER_SECOND per client address)',
      registers: r,
    }),
    gapFills: new Counter({
      name: 'streambed_gap_fills_total',
      help: 'doorbells that needed an XRANGE to fill a gap',
      registers: r,
    }),
    closes: new Counter({
      name: 'streambed_connections_closed_total',
      help: 'connections closed by the server',
      labelNames: ['code'],
      registers: r,
    }),
    errors: new Counter({
      name: 'streambed_errors_total',
      help: 'errors by code',
      labelNames: ['code'],
      registers: r,
    }),
  }
}

export type NodeMetrics = ReturnType<typeof createNodeMetrics>
