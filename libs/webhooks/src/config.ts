import { z } from 'zod'
import { envBool, envInt, envOptional } from '@streambed/common'

/** The events Streambed sends. */
export const WEBHOOK_EVENTS = ['document.created', 'document.updated', 'document.deleted'] as const
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number]

/** Comma-separated http(s) URLs; undefined when unset. */
const envUrlList = () =>
  z
    .string()
    .optional()
    .transform((raw, ctx): string[] | undefined => {
      if (!raw?.trim()) return undefined
      const urls = raw.split(',').map((s) => s.trim())
      for (const url of urls) {
        let ok = false
        try {
          const parsed = new URL(url)
          ok = parsed.protocol === 'http:' || parsed.protocol === 'https:'
        } catch {
          // reported below
        }
        if (!ok) {
          ctx.addIssue({
            code: 'custom',
            message: `expected comma-separated http(s) URLs like https://app.example.com/hooks/streambed, got ${JSON.stringify(url)}`,
          })
          return z.NEVER
        }
      }
      return urls
    })

/** Comma-separated event names; every event when unset. */
const envEvents = () =>
  z
    .string()
    .optional()
    .transform((raw, ctx): WebhookEventType[] => {
      if (!raw?.trim()) return [...WEBHOOK_EVENTS]
      const names = raw.split(',').map((s) => s.trim())
      for (const name of names) {
        if (!(WEBHOOK_EVENTS as readonly string[]).includes(name)) {
          ctx.addIssue({
            code: 'custom',
            message: `expected a comma-separated list of ${WEBHOOK_EVENTS.join(', ')}; got ${JSON.stringify(name)}`,
          })
          return z.NEVER
        }
      }
      return names as WebhookEventType[]
    })

/**
 * The webhook variables, read by server nodes (they send `document.deleted`) and workers (they
 * send the others and deliver every event). Documented in the README.
 */
export const webhookEnvShape = {
  WEBHOOK_URLS: envUrlList(),
  WEBHOOK_SECRET: envOptional({
    pattern: /^\S{16,}$/,
    form: 'a secret of at least 16 characters without spaces',
  }),
  WEBHOOK_EVENTS: envEvents(),
  WEBHOOK_DEBOUNCE_MS: envInt({ default: 1000, min: 0 }),
  WEBHOOK_INCLUDE_DOCUMENT: envBool({ default: false }),
  WEBHOOK_ATTEMPTS: envInt({ default: 12, min: 1, max: 100 }),
  WEBHOOK_BACKOFF_MS: envInt({ default: 1000, min: 10 }),
  WEBHOOK_TIMEOUT_MS: envInt({ default: 10_000, min: 100 }),
  WEBHOOK_CONCURRENCY: envInt({ default: 8, min: 1, max: 256 }),
  WEBHOOK_KEEP_FAILED: envInt({ default: 10_000, min: 1 }),
}

export type WebhookEnv = {
  [K in keyof typeof webhookEnvShape]: z.output<(typeof webhookEnvShape)[K]>
}

/** Cross-variable rules, for the config's superRefine. */
export const checkWebhookEnv = (c: Partial<WebhookEnv>, ctx: z.RefinementCtx): void => {
  if (Array.isArray(c.WEBHOOK_URLS) && !c.WEBHOOK_SECRET)
    ctx.addIssue({
      code: 'custom',
      path: ['WEBHOOK_SECRET'],
      message: 'is required with WEBHOOK_URLS (it signs every delivery)',
    })
}

/** What `createWebhooks` needs from the configuration; null when webhooks are off. */
export interface WebhookSettings {
  readonly urls: readonly string[]
  readonly secret: string
  readonly events: readonly WebhookEventType[]
  readonly debounceMs: number
  readonly includeDocument: boolean
  readonly attempts: number
  readonly backoffMs: number
  readonly timeoutMs: number
  readonly concurrency: number
  readonly keepFailed: number
}

export const webhookSettings = (c: WebhookEnv): WebhookSettings | null =>
  c.WEBHOOK_URLS && c.WEBHOOK_SECRET
    ? {
        urls: c.WEBHOOK_URLS,
        secret: c.WEBHOOK_SECRET,
        events: c.WEBHOOK_EVENTS,
        debounceMs: c.WEBHOOK_DEBOUNCE_MS,
        includeDocument: c.WEBHOOK_INCLUDE_DOCUMENT,
        attempts: c.WEBHOOK_ATTEMPTS,
        backoffMs: c.WEBHOOK_BACKOFF_MS,
        timeoutMs: c.WEBHOOK_TIMEOUT_MS,
        concurrency: c.WEBHOOK_CONCURRENCY,
        keepFailed: c.WEBHOOK_KEEP_FAILED,
      }
    : null
