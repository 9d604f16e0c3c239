import { parseArgs } from 'node:util'
import { z } from 'zod'
import { AppError, parseDuration, parseEnv, type Env } from '@streambed/common'
import {
  connectRedis,
  createKeys,
  createRedis,
  createRevocations,
  redisEnvShape,
  type Revocation,
  type RevocationKind,
} from '@streambed/streams'
import { output, usageError } from '../cli-io.js'

export const revokeUsage = `Usage: streambed revoke (--subject <sub> | --doc <name> | --token-id <jti>) [--ttl <duration>] [--json]

Refuses tokens issued until now that carry the subject (sub claim), name the document, or have the
token id (jti claim), and closes their sockets on every node within a second. Tokens issued in a
later second than the revocation work (iat has whole seconds; a token of the same second is
refused, to be safe). The revocation is kept for --ttl (default 24h): set it to the longest
lifetime of the tokens you issue. Needs AUTH_MODE=jwt on the nodes.

Options:
  --subject <sub>     every token of this subject
  --doc <name>        every token, for this document
  --token-id <jti>    one token
  --ttl <duration>    how long the revocation holds: 90s, 30m, 24h, 7d (default 24h)
  --json              print the revocation as JSON

Reads REDIS_URL and REDIS_PREFIX like the server.`

const flags = {
  subject: { type: 'string' },
  doc: { type: 'string' },
  'token-id': { type: 'string' },
  ttl: { type: 'string', default: '24h' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const

/** `streambed revoke`: records a revocation in Redis and announces it to every node. */
export const revoke = async (args: readonly string[], env: Env): Promise<void> => {
  let values
  try {
    ;({ values } = parseArgs({ args: [...args], options: flags, strict: true }))
  } catch (err) {
    throw usageError(err instanceof Error ? err.message : String(err), revokeUsage)
  }
  if (values.help) return void process.stdout.write(`${revokeUsage}\n`)
  const named: [RevocationKind, string | undefined][] = [
    ['sub', values.subject],
    ['doc', values.doc],
    ['jti', values['token-id']],
  ]
  const chosen = named.filter(([, v]) => v !== undefined && v !== '')
  if (chosen.length !== 1) {
    throw usageError('name exactly one of --subject, --doc, --token-id', revokeUsage)
  }
  const ttlMs = parseDuration(values.ttl)
  if (ttlMs === undefined || ttlMs <= 0)
    throw usageError(
      `--ttl: expected a duration like 24h, got ${JSON.stringify(values.ttl)}`,
      revokeUsage,
    )
  const config = parseEnv(z.object(redisEnvShape), env)
  const redis = createRedis({
    url: config.REDIS_URL,
    clusterNodes: config.REDIS_CLUSTER_NODES,
    connectionName: 'streambed-revoke',
  })
  try {
    await connectRedis(redis, config.REDIS_URL)
    const [kind, value] = chosen[0] as [RevocationKind, string]
    const revocations = createRevocations({ redis, keys: createKeys(config.REDIS_PREFIX) })
    const r: Revocation = await revocations.revoke(kind, value, ttlMs)
    output(values.json, { ...r, ttlMs }, () => [
      `revoked ${kind} ${JSON.stringify(value)} at ${new Date(r.atMs).toISOString()} for ${values.ttl}`,
    ])
  } catch (err) {
    throw err instanceof AppError ? err : new AppError('REDIS_UNAVAILABLE', String(err))
  } finally {
    redis.disconnect()
  }
}
