import { readFile, writeFile } from 'node:fs/promises'
import { isAbsolute, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { AppError, parseDuration, type Env } from '@streambed/common'
import { createJobs } from '@streambed/jobs'
import { checkDocName } from '@streambed/protocol'
import {
  createRecoveryOperations,
  documentAt,
  exportDocument,
  formatTime,
  historyOf,
  importDocument,
  inspectCluster,
  inspectDocument,
  isS3Location,
  parseTime,
  restoreDocument,
  type VerifySummary,
} from '@streambed/recovery'
import { s3ClientConfig } from '@streambed/storage'
import { output, usageError } from '../cli-io.js'
import { createProgress } from '../progress.js'
import { openToolContext, type ToolContext } from '../tool-context.js'

/**
 * The operator's commands: look at documents and the deployment, take documents out and put them
 * back, back up, restore, replay and verify (long ones run as BullMQ operations on the workers, or
 * in this process with --inline), and history (a document as it was, restored as a forward
 * update). Each prints plain text, or with --json one JSON value, on stdout; progress on stderr.
 */

interface CommandSpec {
  readonly usage: string
  readonly options: Record<
    string,
    { type: 'string' | 'boolean'; short?: string; default?: string | boolean }
  >
  readonly run: (ctx: () => Promise<ToolContext>, args: Parsed) => Promise<void>
}

interface Parsed {
  readonly values: Record<string, string | boolean | undefined>
  readonly positionals: string[]
}

const common = {
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const
const longRunning = { ...common, inline: { type: 'boolean', default: false } } as const

const env = `Reads REDIS_URL, REDIS_PREFIX, QUEUE_SHARDS and the STORAGE settings like the servers.`

const str = (v: string | boolean | undefined): string | undefined =>
  typeof v === 'string' ? v : undefined

/** A backup location a worker can reach: s3://… or an absolute directory. */
const location = (raw: string): string =>
  isS3Location(raw) || isAbsolute(raw) ? raw : resolve(raw)

const timeOption = (name: string, raw: string | undefined): number | undefined => {
  if (raw === undefined) return undefined
  try {
    return parseTime(raw, Date.now())
  } catch (err) {
    throw new AppError('CONFIG', `${name}: ${(err as Error).message}`)
  }
}

const docArg = (usage: string, raw: string | undefined): string => {
  if (!raw) throw usageError('name a document', usage)
  return checkDocName(raw)
}

/**
 * Runs a long operation: on the workers (submitted as a BullMQ flow, followed with a progress bar)
 * or, with --inline, here. Without a worker taking operations it says so instead of waiting.
 */
const operation = async (
  ctx: ToolContext,
  name: string,
  params: Record<string, unknown>,
  opts: { inline: boolean; json: boolean; label: string },
): Promise<unknown> => {
  const jobs = createJobs({
    connection: ctx.jobsConnection,
    redisPrefix: ctx.config.REDIS_PREFIX,
    logger: ctx.logger,
    operations: createRecoveryOperations({
      redis: ctx.redis,
      keys: ctx.keys,
      storage: ctx.storage,
      streams: ctx.streams,
      queueShards: ctx.config.QUEUE_SHARDS,
      s3: s3ClientConfig(ctx.config),
    }),
  })
  const progress = createProgress(opts.label, { json: opts.json })
  try {
    if (opts.inline) {
      const result = await jobs.runInline(name, params, (done, total) =>
        progress.update(done, total),
      )
      progress.end()
      return result
    }
    if ((await jobs.workers()) === 0) {
      throw new AppError(
        'REDIS_UNAVAILABLE',
        `no worker takes operations (start "streambed worker"), or run it here with --inline`,
      )
    }
    const id = await jobs.submit(name, params)
    if (!opts.json) process.stderr.write(`${opts.label}: operation ${id}\n`)
    const final = await jobs.follow(id, (s) => progress.update(s.done, s.total))
    progress.end()
    if (final.state === 'failed') throw new AppError('INTERNAL', `${name} failed: ${final.error}`)
    return final.result
  } finally {
    await jobs.close()
  }
}

const age = (ms: number | null | undefined) => (ms == null ? '—' : `${Math.round(ms / 1000)} s`)

export const recoveryCommands: Record<string, CommandSpec> = {
  inspect: {
    usage: `Usage: streambed inspect [<doc>] [--json]

With a document: its stream (length, bytes, first and last entry and their age), the stored
watermark, its compaction task (queued, delivered to which worker, delayed until), its update log
and checkpoints. Without: the deployment (documents, stream bytes, queue depth per shard, workers
and nodes alive). ${env}`,
    options: common,
    run: async (open, { values, positionals }) => {
      const ctx = await open()
      try {
        const doc = positionals[0]
        if (doc !== undefined) {
          const r = await inspectDocument(ctx, checkDocName(doc))
          return output(values.json === true, r, () => [
            `document ${doc}${r.exists ? '' : ' (nothing stored, no stream)'}`,
            r.stream
              ? `stream   ${r.stream.length} entries, ${r.stream.bytes} bytes; first ${r.stream.first?.id ?? '—'} (${age(r.stream.first?.ageMs)} old), last ${r.stream.last?.id ?? '—'} (${age(r.stream.last?.ageMs)} old)`
              : 'stream   none (compacted and idle, or never written)',
            `stored   watermark ${r.stored?.id ?? '—'} (${age(r.stored?.ageMs)} old)`,
            `task     ${JSON.stringify(r.task)}`,
            `log      ${r.log ? `${r.log.entries} entries, ${r.log.bytes} bytes, ${r.log.segments} objects, ${r.log.first} … ${r.log.last}` : '—'}`,
            `history  ${r.checkpoints.count} checkpoints${r.checkpoints.newest ? `, newest ${r.checkpoints.newest.id}` : ''}`,
          ])
        }
        const c = await inspectCluster(ctx)
        return output(values.json === true, c, () => [
          `documents ${c.documents.total} (${c.documents.stored} stored, ${c.documents.streams} with a stream); stream bytes ${c.streamBytes}`,
          `queue     ${JSON.stringify(c.queue.totals)}`,
          ...c.queue.shards.map((s) => `  shard   ${JSON.stringify(s)}`),
          `workers   ${c.workers.filter((w) => w.alive).length} alive of ${c.workers.length}`,
          `nodes     ${c.nodes.filter((n) => n.alive).length} alive of ${c.nodes.length}`,
        ])
      } finally {
        await ctx.close()
      }
    },
  },

  export: {
    usage: `Usage: streambed export <doc> [--at <time>] [--format update|json] [--out <file>] [--json]

Writes the document (as it was at --at: an ISO time, epoch ms, or -30m / -2h / -7d) as one Yjs
update, or as JSON (every root type), to --out or stdout. ${env}`,
    options: {
      ...common,
      at: { type: 'string' },
      format: { type: 'string', default: 'update' },
      out: { type: 'string' },
    },
    run: async (open, { values, positionals }) => {
      const doc = docArg(recoveryCommands.export!.usage, positionals[0])
      const format = values.format
      if (format !== 'update' && format !== 'json')
        throw usageError(
          `--format: expected update or json, got ${String(format)}`,
          recoveryCommands.export!.usage,
        )
      const atMs = timeOption('--at', str(values.at))
      const out = str(values.out)
      if (format === 'update' && out === undefined && process.stdout.isTTY)
        throw usageError(
          'an update is binary: give --out <file> or redirect stdout',
          recoveryCommands.export!.usage,
        )
      const ctx = await open()
      try {
        const r = await exportDocument(ctx, doc, {
          format,
          ...(atMs === undefined ? {} : { atMs }),
        })
        const bytes = 'update' in r ? r.update : Buffer.from(`${JSON.stringify(r.json, null, 2)}\n`)
        if (out !== undefined) {
          await writeFile(out, bytes)
          const { upTo, exact } = r
          output(values.json === true, { out, bytes: bytes.length, upTo, exact }, () => [
            `wrote ${bytes.length} bytes of ${doc} (up to ${upTo}${exact ? '' : ', history folded: as of the nearest checkpoint'}) to ${out}`,
          ])
        } else process.stdout.write(bytes)
      } finally {
        await ctx.close()
      }
    },
  },

  import: {
    usage: `Usage: streambed import <doc> <file> [--json]

Appends the Yjs update in <file> to the document through the normal write path: connected clients
receive it; content the document already has is skipped. ${env}`,
    options: common,
    run: async (open, { values, positionals }) => {
      const doc = docArg(recoveryCommands.import!.usage, positionals[0])
      const file = positionals[1]
      if (!file) throw usageError('name the file to import', recoveryCommands.import!.usage)
      const bytes = await readFile(file).catch((err: unknown) => {
        throw new AppError('NOT_FOUND', `cannot read ${file}: ${(err as Error).message}`)
      })
      const ctx = await open()
      try {
        const r = await importDocument(ctx, doc, bytes, 'cli/import')
        output(values.json === true, r, () => [
          r.appended ? `appended to ${doc} as ${r.appended.id}` : `${doc} already had all of it`,
        ])
      } finally {
        await ctx.close()
      }
    },
  },

  backup: {
    usage: `Usage: streambed backup <dest> [--batch-size <n>] [--inline] [--json]

Backs up every document's stored state, stream tail, update log and checkpoints to <dest> (a
directory or s3://<bucket>/<prefix>/, with the S3_* settings), consistent per document while the
system runs, with manifest.json (sha256 of every object) written last. Runs on the workers
(BullMQ) unless --inline. ${env}`,
    options: { ...longRunning, 'batch-size': { type: 'string', default: '50' } },
    run: async (open, { values, positionals }) => {
      const dest = positionals[0]
      if (!dest) throw usageError('name where the backup goes', recoveryCommands.backup!.usage)
      const ctx = await open()
      try {
        const batchSize = Number(values['batch-size'])
        const r = await operation(
          ctx,
          'backup',
          { dest: location(dest), batchSize },
          {
            inline: values.inline === true,
            json: values.json === true,
            label: 'backup',
          },
        )
        output(values.json === true, r, () => [`backup complete: ${JSON.stringify(r)}`])
      } finally {
        await ctx.close()
      }
    },
  },

  restore: {
    usage: `Usage: streambed restore <src> [--force] [--inline] [--json]

Restores a backup into an empty Redis and storage (refused when either holds documents, unless
--force), checking every object's sha256 first, then verifies every restored document. Use
--inline when Redis itself was lost (no workers can take operations). ${env}`,
    options: { ...longRunning, force: { type: 'boolean', default: false } },
    run: async (open, { values, positionals }) => {
      const src = positionals[0]
      if (!src) throw usageError('name the backup to restore', recoveryCommands.restore!.usage)
      const ctx = await open()
      try {
        const flags = { inline: values.inline === true, json: values.json === true }
        const restored = await operation(
          ctx,
          'restore',
          { src: location(src), force: values.force === true },
          { ...flags, label: 'restore' },
        )
        const verified = (await operation(ctx, 'verify', {}, { ...flags, label: 'verify' })) as {
          ok: boolean
        }
        output(values.json === true, { restored, verified }, () => [
          `restored: ${JSON.stringify(restored)}`,
          `verified: ${JSON.stringify(verified)}`,
        ])
        if (!verified.ok)
          throw new AppError('BAD_MESSAGE', 'restored documents failed verification')
      } finally {
        await ctx.close()
      }
    },
  },

  replay: {
    usage: `Usage: streambed replay (--from-log | <backup>) [--docs a,b] [--until <time>] [--inline] [--json]

After Redis lost data: re-appends archived entries (the update log, or a backup's stream tails)
that storage does not hold, through the normal write path (connected clients converge without
reloading; content already there is skipped, so a second run changes nothing). ${env}`,
    options: {
      ...longRunning,
      'from-log': { type: 'boolean', default: false },
      docs: { type: 'string' },
      until: { type: 'string' },
    },
    run: async (open, { values, positionals }) => {
      const fromLog = values['from-log'] === true
      const backup = positionals[0]
      if (fromLog === (backup !== undefined))
        throw usageError('give --from-log or a backup, one of them', recoveryCommands.replay!.usage)
      const untilMs = timeOption('--until', str(values.until))
      const docs = str(values.docs)
        ?.split(',')
        .map((d) => checkDocName(d.trim()))
      const ctx = await open()
      try {
        const params = {
          source: fromLog ? 'log' : location(backup as string),
          ...(docs ? { docs } : {}),
          ...(untilMs === undefined ? {} : { untilMs }),
        }
        const r = await operation(ctx, 'replay', params, {
          inline: values.inline === true,
          json: values.json === true,
          label: 'replay',
        })
        output(values.json === true, r, () => [`replay complete: ${JSON.stringify(r)}`])
      } finally {
        await ctx.close()
      }
    },
  },

  verify: {
    usage: `Usage: streambed verify [<doc>…] [--backup <src>] [--inline] [--json]

Checks that what a fresh client would receive (storage + stream tail, merged) equals the stored
state and tail applied in order, for the named documents or all; with --backup, that a backup's
objects match its manifest. Lists mismatches and exits 65 when there are any. ${env}`,
    options: { ...longRunning, backup: { type: 'string' } },
    run: async (open, { values, positionals }) => {
      const backup = str(values.backup)
      const docs = positionals.map((d) => checkDocName(d))
      const ctx = await open()
      try {
        const params = {
          ...(docs.length > 0 ? { docs } : {}),
          ...(backup ? { backup: location(backup) } : {}),
        }
        const r = (await operation(ctx, 'verify', params, {
          inline: values.inline === true,
          json: values.json === true,
          label: 'verify',
        })) as VerifySummary
        output(values.json === true, r, () => [
          r.ok ? 'verified: no mismatch' : 'MISMATCHES:',
          ...r.failures.map((f) => `  ${JSON.stringify(f)}`),
        ])
        if (!r.ok) throw new AppError('BAD_MESSAGE', 'verification found mismatches (listed above)')
      } finally {
        await ctx.close()
      }
    },
  },

  history: {
    usage: `Usage: streambed history <doc> [--bucket <duration>] [--limit <n>] [--json]

The versions of a document: its edits grouped per --bucket (default 1m) with entry counts and
bytes, and its checkpoints, oldest first (the newest --limit, default 100). ${env}`,
    options: {
      ...common,
      bucket: { type: 'string', default: '1m' },
      limit: { type: 'string', default: '100' },
    },
    run: async (open, { values, positionals }) => {
      const doc = docArg(recoveryCommands.history!.usage, positionals[0])
      const bucketMs = parseDuration(String(values.bucket))
      if (bucketMs === undefined || bucketMs <= 0)
        throw usageError(
          `--bucket: expected a duration like 1m, got ${String(values.bucket)}`,
          recoveryCommands.history!.usage,
        )
      const ctx = await open()
      try {
        const r = await historyOf(ctx, doc, { bucketMs, limit: Number(values.limit) })
        output(values.json === true, r, () => [
          ...(r.omitted > 0 ? [`(${r.omitted} older versions not shown)`] : []),
          ...r.versions.map((v) =>
            'checkpoint' in v
              ? `${formatTime(v.at)}  checkpoint  up to ${v.upTo}`
              : `${formatTime(v.at)}  ${v.entries} edits, ${v.bytes} bytes  up to ${v.upTo}`,
          ),
        ])
      } finally {
        await ctx.close()
      }
    },
  },

  'restore-doc': {
    usage: `Usage: streambed restore-doc <doc> --at <time> [--out <file>] [--json]

Makes the document look as it was at --at (an ISO time, epoch ms, or -30m / -2h / -7d) with a
forward update through the write path: connected clients converge without reloading, and the
edits it undoes stay in the history. With --out, writes that version to a file instead and
changes nothing. ${env}`,
    options: { ...common, at: { type: 'string' }, out: { type: 'string' } },
    run: async (open, { values, positionals }) => {
      const usage = recoveryCommands['restore-doc']!.usage
      const doc = docArg(usage, positionals[0])
      const atMs = timeOption('--at', str(values.at))
      if (atMs === undefined) throw usageError('give --at <time>', usage)
      const out = str(values.out)
      const ctx = await open()
      try {
        if (out !== undefined) {
          const past = await documentAt(ctx, doc, atMs)
          await writeFile(out, past.state)
          return output(
            values.json === true,
            { out, upTo: past.upTo, exact: past.exact, asOf: past.asOf },
            () => [`wrote ${doc} as of ${formatTime(past.asOf)} to ${out}`],
          )
        }
        const r = await restoreDocument(ctx, doc, atMs, 'cli/restore-doc')
        output(values.json === true, r, () => [
          r.appended
            ? `restored ${doc} to ${formatTime(r.asOf)}${r.exact ? '' : ' (history folded: the nearest checkpoint)'} as ${r.appended.id}`
            : `${doc} already shows its version of ${formatTime(r.asOf)}`,
        ])
      } finally {
        await ctx.close()
      }
    },
  },
}

/** Runs `streambed <name> …` for a recovery command. */
export const runRecoveryCommand = async (
  name: string,
  args: readonly string[],
  environment: Env,
): Promise<void> => {
  const spec = recoveryCommands[name]
  if (!spec) throw new AppError('INTERNAL', `no command ${name}`)
  let parsed: Parsed
  try {
    parsed = parseArgs({
      args: [...args],
      options: spec.options,
      allowPositionals: true,
      strict: true,
    })
  } catch (err) {
    throw usageError(err instanceof Error ? err.message : String(err), spec.usage)
  }
  if (parsed.values.help === true) return void process.stdout.write(`${spec.usage}\n`)
  await spec.run(() => openToolContext(environment, name), parsed)
}
