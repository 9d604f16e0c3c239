import { parseArgs } from 'node:util'
import { z } from 'zod'
import { type Env, parseEnv } from '@streambed/common'
import { connectRedis, createRedis, redisEnvShape } from '@streambed/streams'
import { openWebhookQueue } from '@streambed/webhooks'
import { output, usageError } from '../cli-io.js'

export const webhooksUsage = `Usage: streambed webhooks <subcommand> [options]

Subcommands:
  status                 deliveries waiting, delayed (debounce, backoff), in flight, failed
  failed [--limit <n>]   deliveries that used up WEBHOOK_ATTEMPTS (newest first, default 100)
  resend <id>…           send these failed deliveries again, with a fresh retry schedule
  resend --all           send every failed delivery again

Workers with WEBHOOK_URLS set deliver what is resent. Options: --json prints JSON.
Reads REDIS_URL, REDIS_PREFIX (and REDIS_CLUSTER_NODES) like the server.`

const flags = {
  limit: { type: 'string', default: '100' },
  all: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const

/** `streambed webhooks status|failed|resend`. */
export const webhooks = async (args: readonly string[], env: Env): Promise<void> => {
  let parsed
  try {
    parsed = parseArgs({ args: [...args], options: flags, strict: true, allowPositionals: true })
  } catch (err) {
    throw usageError(err instanceof Error ? err.message : String(err), webhooksUsage)
  }
  const { values, positionals } = parsed
  const [sub, ...ids] = positionals
  if (values.help || sub === undefined) return void process.stdout.write(`${webhooksUsage}\n`)
  if (!['status', 'failed', 'resend'].includes(sub))
    throw usageError(`unknown subcommand "${sub}"`, webhooksUsage)
  const limit = Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1)
    throw usageError(`--limit: expected a positive integer, got ${values.limit}`, webhooksUsage)
  if (sub === 'resend' && values.all === ids.length > 0)
    throw usageError('resend: name delivery ids or --all (not both)', webhooksUsage)

  const config = parseEnv(z.object(redisEnvShape), env)
  const connection = createRedis({
    url: config.REDIS_URL,
    clusterNodes: config.REDIS_CLUSTER_NODES,
    connectionName: 'streambed-webhooks',
    maxRetriesPerRequest: null,
  })
  const queue = openWebhookQueue({ connection, redisPrefix: config.REDIS_PREFIX })
  try {
    await connectRedis(connection, config.REDIS_URL)
    if (sub === 'status') {
      const counts = await queue.counts()
      return output(values.json, counts, () =>
        Object.entries(counts).map(([state, n]) => `${state.padEnd(10)} ${n}`),
      )
    }
    if (sub === 'failed') {
      const failed = await queue.failed(limit)
      return output(values.json, failed, () =>
        failed.length === 0
          ? ['no failed deliveries']
          : failed.map(
              (f) =>
                `${f.id}  ${f.failedAt ?? '-'}  ${f.type}  ${f.doc}  → ${f.url}  (${f.attempts} attempts: ${f.reason})`,
            ),
      )
    }
    const resent = await queue.resend(values.all ? 'all' : ids)
    output(values.json, { resent }, () => [`resent ${resent} deliveries`])
  } finally {
    await queue.close()
    connection.disconnect()
  }
}
