import { type Job, Queue, Worker } from 'bullmq'
import type { Cluster, Redis } from 'ioredis'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { AppError, compareIds, type Logger } from '@streambed/common'
import { docToJSON } from '@streambed/protocol'
import type { WebhookEventType, WebhookSettings } from './config.js'
import { SIGNATURE_HEADER, signWebhook } from './signature.js'

/**
 * Webhooks on BullMQ. Server nodes and workers `emit` events: one job per configured endpoint, on
 * the queue `webhooks` (keys `<prefix>:v1:{webhooks}:…`, one hash slot for a Redis Cluster).
 * Workers `startDelivery`: each job is POSTed as signed JSON; a failed attempt is retried with
 * exponential backoff (WEBHOOK_BACKOFF_MS · 2^n) up to WEBHOOK_ATTEMPTS, then kept in BullMQ's
 * failed set, from which `resend` (CLI `streambed webhooks resend`) sends it again.
 *
 * `document.created` and `document.updated` are debounced per document and endpoint: the first
 * event schedules a delivery WEBHOOK_DEBOUNCE_MS later and later events within that time join it;
 * the delivery carries the newest stored stream id at the time it is sent. Workers announce a
 * state just before storing it, so the delay also lets the store land first. Delivery is at least once: receivers
 * deduplicate by `streambed-delivery` (stable across retries) or by the stream id.
 */

/** An event as emitted; `atMs` defaults to now. */
export interface WebhookEvent {
  readonly type: WebhookEventType
  readonly doc: string
  /** The stream id the document reached (created, updated) or had (deleted). */
  readonly id?: string
  /** The stream id stored before (updated). */
  readonly previous?: string
  readonly atMs?: number
}

/** What a job holds. */
interface JobData {
  readonly type: WebhookEventType
  readonly doc: string
  readonly url: string
  readonly id: string | null
  readonly previous: string | null
  readonly atMs: number
}

/** The JSON body of a delivery. */
export interface WebhookPayload {
  /** The delivery id: the same on every attempt and resend of this event for this endpoint. */
  readonly id: string
  readonly type: WebhookEventType
  readonly doc: string
  /** When the event happened (ISO 8601). */
  readonly at: string
  readonly data: {
    /** The newest stream id stored when sent (created, updated), or the last id (deleted). */
    readonly id: string | null
    readonly previous?: string | null
    /** The document as JSON (WEBHOOK_INCLUDE_DOCUMENT), as stored up to `data.id`. */
    readonly document?: unknown
  }
}

/** A delivery in the failed set. */
export interface FailedDelivery {
  readonly id: string
  readonly type: WebhookEventType
  readonly doc: string
  readonly url: string
  readonly attempts: number
  readonly reason: string
  readonly failedAt: string | null
}

export interface WebhooksOptions {
  /** A connection for BullMQ (created with `maxRetriesPerRequest: null`), or a Redis Cluster. */
  connection: Redis | Cluster
  /** The deployment's REDIS_PREFIX. */
  redisPrefix: string
  settings: WebhookSettings
  logger: Logger
  /** Where the metrics go (delivering processes). */
  registry?: Registry
  /** The stored state of a document (for the newest id and WEBHOOK_INCLUDE_DOCUMENT). */
  loadState?: (doc: string) => Promise<{ state: Uint8Array; watermark: string } | null>
}

const QUEUE = 'webhooks'

const queuePrefix = (redisPrefix: string) => `${redisPrefix}:v1:{webhooks}`
const USER_AGENT = 'Streambed-Webhooks/1'

/** Deduplication ids are key names: the document name goes in as base64url. */
const debounceId = (type: WebhookEventType, url: string, doc: string) =>
  `${type.slice('document.'.length)}-${Buffer.from(url).toString('base64url')}-${Buffer.from(doc).toString('base64url')}`

export const createWebhooks = (opts: WebhooksOptions) => {
  const { settings, logger } = opts
  const prefix = queuePrefix(opts.redisPrefix)
  const queue = new Queue<JobData>(QUEUE, {
    connection: opts.connection,
    prefix,
    defaultJobOptions: {
      attempts: settings.attempts,
      backoff: { type: 'exponential', delay: settings.backoffMs },
      removeOnComplete: { count: 1000, age: 24 * 3600 },
      removeOnFail: { count: settings.keepFailed },
    },
  })
  const metrics = opts.registry ? createMetrics(opts.registry, queue) : null
  let worker: Worker<JobData> | null = null

  /** Queues `event` for every endpoint (unless WEBHOOK_EVENTS leaves it out). */
  const emit = async (event: WebhookEvent): Promise<void> => {
    if (!settings.events.includes(event.type)) return
    const atMs = event.atMs ?? Date.now()
    for (const url of settings.urls) {
      const data: JobData = {
        type: event.type,
        doc: event.doc,
        url,
        id: event.id ?? null,
        previous: event.previous ?? null,
        atMs,
      }
      // created and updated are announced just before the state is stored (at least once): the
      // delay lets the store land first, and repeats within it are one delivery.
      const debounce = event.type !== 'document.deleted' && settings.debounceMs > 0
      await queue.add(
        event.type,
        data,
        debounce
          ? {
              delay: settings.debounceMs,
              deduplication: {
                id: debounceId(event.type, url, event.doc),
                ttl: settings.debounceMs,
              },
            }
          : {},
      )
    }
  }

  /** The body of a delivery of `job`, with the newest stored id (and document) read now. */
  const payloadOf = async (job: Job<JobData>): Promise<WebhookPayload> => {
    const d = job.data
    let id = d.id
    let document: unknown
    if (d.type !== 'document.deleted' && opts.loadState) {
      const stored = await opts.loadState(d.doc)
      if (stored && (id === null || compareIds(stored.watermark, id) >= 0)) {
        id = stored.watermark
        if (settings.includeDocument) document = docToJSON(stored.state)
      }
    }
    return {
      id: String(job.id),
      type: d.type,
      doc: d.doc,
      at: new Date(d.atMs).toISOString(),
      data: {
        id,
        ...(d.type === 'document.updated' ? { previous: d.previous } : {}),
        ...(document === undefined ? {} : { document }),
      },
    }
  }

  const deliver = async (job: Job<JobData>): Promise<{ status: number } | { skipped: string }> => {
    const { url, type } = job.data
    if (!settings.urls.includes(url)) {
      logger.warn({ delivery: job.id, url }, 'webhook endpoint no longer configured; dropped')
      return { skipped: 'endpoint no longer in WEBHOOK_URLS' }
    }
    const body = JSON.stringify(await payloadOf(job))
    const started = performance.now()
    let status = 0
    try {
      const res = await fetch(url, {
        method: 'POST',
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(settings.timeoutMs),
        headers: {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          'streambed-event': type,
          'streambed-delivery': String(job.id),
          'streambed-attempt': String(job.attemptsMade + 1),
          [SIGNATURE_HEADER]: signWebhook(settings.secret, body),
        },
      })
      status = res.status
      await res.body?.cancel()
    } finally {
      metrics?.seconds.observe({ type }, (performance.now() - started) / 1000)
    }
    if (status < 200 || status >= 300) throw new Error(`${url} answered ${status}`)
    return { status }
  }

  return {
    emit,

    /** Makes this process deliver webhooks (a worker process). */
    startDelivery: (): void => {
      worker = new Worker<JobData>(QUEUE, deliver, {
        connection: opts.connection,
        prefix,
        concurrency: settings.concurrency,
      })
      worker.on('completed', (job) =>
        metrics?.deliveries.inc({ type: job.data.type, outcome: 'delivered' }),
      )
      worker.on('failed', (job, err) => {
        if (!job) return
        const final = job.attemptsMade >= (job.opts.attempts ?? 1)
        metrics?.deliveries.inc({ type: job.data.type, outcome: final ? 'failed' : 'retrying' })
        const log = {
          delivery: job.id,
          url: job.data.url,
          doc: job.data.doc,
          attempt: job.attemptsMade,
          err: err.message,
        }
        if (final)
          logger.error(
            log,
            'webhook delivery failed for good; kept for `streambed webhooks resend`',
          )
        else logger.warn(log, 'webhook delivery failed; retrying')
      })
      worker.on('error', (err) => logger.warn({ err }, 'webhook worker error'))
    },

    ...createWebhookAdmin(queue),

    close: async (): Promise<void> => {
      await worker?.close()
      await queue.close()
    },
  }
}

export type Webhooks = ReturnType<typeof createWebhooks>

/** Looking after deliveries: the failed set, resends, counts. */
const createWebhookAdmin = (queue: Queue<JobData>) => ({
  /** Deliveries in the failed set, newest first. */
  failed: async (limit = 100): Promise<FailedDelivery[]> => {
    const jobs = await queue.getFailed(0, limit - 1)
    return jobs.map((j) => ({
      id: String(j.id),
      type: j.data.type,
      doc: j.data.doc,
      url: j.data.url,
      attempts: j.attemptsMade,
      reason: j.failedReason,
      failedAt: j.finishedOn ? new Date(j.finishedOn).toISOString() : null,
    }))
  },

  /**
   * Sends failed deliveries again, with their attempts reset (a full retry schedule each):
   * `ids`, or every failed one. Returns how many were requeued; NOT_FOUND for an unknown id.
   */
  resend: async (ids: readonly string[] | 'all'): Promise<number> => {
    const jobs =
      ids === 'all'
        ? await queue.getFailed(0, -1)
        : await Promise.all(
            ids.map(async (id) => {
              const job = await queue.getJob(id)
              if (!job) throw new AppError('NOT_FOUND', `no webhook delivery ${id}`)
              if ((await job.getState()) !== 'failed')
                throw new AppError('BAD_MESSAGE', `webhook delivery ${id} is not in the failed set`)
              return job
            }),
          )
    for (const job of jobs)
      await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
    return jobs.length
  },

  /** Jobs by state (waiting, delayed, active, failed, completed). */
  counts: () => queue.getJobCounts('waiting', 'delayed', 'active', 'failed', 'completed'),
})

/**
 * The operator's handle on the webhook queue (`streambed webhooks`): needs no endpoint settings,
 * since the delivering workers send what it requeues.
 */
export const openWebhookQueue = (opts: { connection: Redis | Cluster; redisPrefix: string }) => {
  const queue = new Queue<JobData>(QUEUE, {
    connection: opts.connection,
    prefix: queuePrefix(opts.redisPrefix),
  })
  return { ...createWebhookAdmin(queue), close: () => queue.close() }
}

/** A scrape never waits for Redis longer than this; the gauges keep their last value. */
const COLLECT_TIMEOUT_MS = 1000

const withinMs = <T>(ms: number, p: Promise<T>): Promise<T | undefined> => {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms)
  })
  return Promise.race([p.catch(() => undefined), late]).finally(() => clearTimeout(timer))
}

const createMetrics = (registry: Registry, queue: Queue<JobData>) => {
  const r = [registry]
  new Gauge({
    name: 'streambed_webhook_failed',
    help: 'webhook deliveries in the failed set (resend with `streambed webhooks resend`)',
    registers: r,
    async collect() {
      const failed = await withinMs(COLLECT_TIMEOUT_MS, queue.getFailedCount())
      if (failed !== undefined) this.set(failed)
    },
  })
  new Gauge({
    name: 'streambed_webhook_pending',
    help: 'webhook deliveries waiting, delayed (debounce, backoff) or in flight',
    registers: r,
    async collect() {
      const c = await withinMs(
        COLLECT_TIMEOUT_MS,
        queue.getJobCounts('waiting', 'delayed', 'active'),
      )
      if (c) this.set((c.waiting ?? 0) + (c.delayed ?? 0) + (c.active ?? 0))
    },
  })
  return {
    deliveries: new Counter({
      name: 'streambed_webhook_deliveries_total',
      help: 'webhook delivery attempts by event type and outcome (delivered, retrying, failed)',
      labelNames: ['type', 'outcome'],
      registers: r,
    }),
    seconds: new Histogram({
      name: 'streambed_webhook_delivery_seconds',
      help: 'time of one delivery attempt (request and answer)',
      labelNames: ['type'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
  }
}
