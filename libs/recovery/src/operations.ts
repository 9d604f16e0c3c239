/**
 * The recovery operations as libs/jobs operations: planned where they are submitted, run batch by
 * batch on any worker (or inline), finished with every batch's result. Every batch is idempotent:
 * after a worker crash it runs again elsewhere and gives the same outcome.
 *
 *   backup               { dest, batchSize?, timestamped?, keep? }   → BackupSummary
 *   restore              { src, force?, batchSize? }                 → RestoreSummary
 *   replay               { source: 'log' | <backup location>, docs?, untilMs?, batchSize? }
 *   verify               { docs?, backup?, batchSize? }              → VerifySummary
 *   history-maintenance  { checkpointEveryMs, retentionMs, packAfterMs, docs?, batchSize? }
 *
 * Locations (dest, src, a replay source, a backup to verify) are `s3://bucket/prefix/` or an
 * absolute directory: batches run on workers whose working directory is not the caller's.
 */
import { isAbsolute } from 'node:path'
import type { S3ClientConfig } from '@aws-sdk/client-s3'
import { AppError } from '@streambed/common'
import type { Operation, OperationContext } from '@streambed/jobs'
import { type BackupTarget, isS3Location, openBackupTarget, subLocation } from './backup-target.js'
import {
  backupBatch,
  type BackupEntry,
  backupName,
  type BackupTotals,
  finishBackup,
  planBackup,
  pruneBackups,
  type PruneResult,
} from './backup.js'
import { allDocuments, inBatches, type RecoveryDeps } from './documents.js'
import { redisNowMs } from './inspect.js'
import {
  checkMaintenanceSettings,
  maintainHistory,
  type MaintenanceSettings,
  planMaintenance,
} from './maintenance.js'
import type { BackupProblem } from './manifest.js'
import { readManifest } from './manifest.js'
import { planRestore, restoreBatch, type RestoreBatchResult } from './restore.js'
import { planReplay, replayDocument, type ReplayResult } from './replay.js'
import { type DocumentVerdict, verifyBackupEntries, verifyDocument } from './verify.js'

export interface RecoveryOperationsDeps extends RecoveryDeps {
  /** S3 client settings for `s3://` locations: `s3ClientConfig(config)` of @streambed/storage. */
  readonly s3?: S3ClientConfig
}

/** Results and problems listed in a summary at most (the counts are complete). */
const LISTED = 100

/** Throws `AppError('CONFIG')` unless `location` is an S3 prefix or an absolute directory. */
export const checkJobLocation = (location: string, what: string): string => {
  if (typeof location !== 'string' || location === '')
    throw new AppError('CONFIG', `${what}: a location is required`)
  if (!isS3Location(location) && !isAbsolute(location))
    throw new AppError(
      'CONFIG',
      `${what} ${JSON.stringify(location)}: give s3://<bucket>/<prefix>/ or an absolute directory ` +
        '(the batches run on workers, in another working directory)',
    )
  return location
}

/** Runs `fn` with the target at `location`, closing it after. */
const withTarget = async <T>(
  deps: RecoveryOperationsDeps,
  location: string,
  fn: (target: BackupTarget) => Promise<T>,
): Promise<T> => {
  const target = openBackupTarget(location, deps.s3 ? { s3: deps.s3 } : {})
  try {
    return await fn(target)
  } finally {
    await target.close()
  }
}

/** Runs `fn` over `items` one after another, reporting progress. */
const eachWithProgress = async <T, R>(
  items: readonly T[],
  ctx: OperationContext,
  fn: (item: T) => Promise<R>,
): Promise<R[]> => {
  const out: R[] = []
  for (const item of items) {
    out.push(await fn(item))
    await ctx.progress(out.length / items.length)
  }
  return out
}

// --- backup -------------------------------------------------------------------------------------

export interface BackupParams {
  /** Where the backup goes; with `timestamped`, the root its dated folder goes under. */
  dest: string
  batchSize?: number
  /** Back up into `<dest>/<backupName(now)>/` (scheduled backups). */
  timestamped?: boolean
  /** With `timestamped`: keep the newest `keep` complete backups under `dest` (pruneBackups). */
  keep?: number
}
export interface BackupBatch {
  readonly dest: string
  readonly docs: string[]
}
export interface BackupBatchResult {
  readonly dest: string
  readonly entries: BackupEntry[]
}
export interface BackupSummary {
  readonly location: string
  readonly createdAt: string
  readonly totals: BackupTotals
  readonly pruned?: PruneResult
}

const backupOperation = (
  deps: RecoveryOperationsDeps,
): Operation<BackupParams, BackupBatch, BackupBatchResult, BackupSummary> => ({
  name: 'backup',
  plan: async (params) => {
    checkJobLocation(params.dest, 'backup destination')
    if (params.keep !== undefined && !params.timestamped)
      throw new AppError('CONFIG', 'backup: keep applies to timestamped backups only')
    const dest = params.timestamped ? subLocation(params.dest, backupName(Date.now())) : params.dest
    const batches = await withTarget(deps, dest, (target) =>
      planBackup(deps, target, { batchSize: params.batchSize }),
    )
    // At least one batch, so that finish learns the destination (and writes an empty manifest).
    return (batches.length > 0 ? batches : [[]]).map((docs) => ({ dest, docs }))
  },
  runBatch: async (batch) =>
    withTarget(deps, batch.dest, async (target) => ({
      dest: batch.dest,
      entries: await backupBatch(deps, target, batch.docs),
    })),
  finish: async (params, results) => {
    const dest = results[0]?.dest ?? params.dest
    const manifest = await withTarget(deps, dest, (target) =>
      finishBackup(
        target,
        results.flatMap((r) => r.entries),
        { redisPrefix: deps.keys.prefix },
      ),
    )
    const pruned =
      params.timestamped && params.keep !== undefined
        ? await withTarget(deps, params.dest, (root) => pruneBackups(root, params.keep as number))
        : undefined
    return {
      location: dest,
      createdAt: manifest.createdAt,
      totals: manifest.totals,
      ...(pruned ? { pruned } : {}),
    }
  },
})

// --- restore ------------------------------------------------------------------------------------

export interface RestoreParams {
  src: string
  force?: boolean
  batchSize?: number
}
export interface RestoreBatch {
  readonly src: string
  readonly force: boolean
  readonly entries: BackupEntry[]
}
export interface RestoreSummary {
  readonly src: string
  readonly documents: number
  readonly statesWritten: number
  readonly statesPresent: number
  /** Documents whose storage was ahead of the backup (forced restores): their state was kept. */
  readonly statesKeptNewer: string[]
  readonly logEntries: number
  readonly checkpoints: number
  readonly tailAdded: number
  readonly tailPresent: number
  readonly rebuilt: string[]
  readonly tasks: number
}

const restoreOperation = (
  deps: RecoveryOperationsDeps,
): Operation<RestoreParams, RestoreBatch, RestoreBatchResult, RestoreSummary> => ({
  name: 'restore',
  plan: async (params) => {
    checkJobLocation(params.src, 'backup to restore')
    const force = params.force === true
    const batches = await withTarget(deps, params.src, (src) =>
      planRestore(deps, src, { force, batchSize: params.batchSize }),
    )
    return batches.map((entries) => ({ src: params.src, force, entries }))
  },
  runBatch: async (batch) =>
    withTarget(deps, batch.src, (src) =>
      restoreBatch(deps, src, batch.entries, { force: batch.force }),
    ),
  finish: async (params, results) => {
    const sum = (f: (r: RestoreBatchResult) => number) => results.reduce((n, r) => n + f(r), 0)
    return {
      src: params.src,
      documents: sum((r) => r.documents),
      statesWritten: sum((r) => r.states.written),
      statesPresent: sum((r) => r.states.present),
      statesKeptNewer: results.flatMap((r) => r.states.keptNewer).slice(0, LISTED),
      logEntries: sum((r) => r.logEntries),
      checkpoints: sum((r) => r.checkpoints),
      tailAdded: sum((r) => r.tailAdded),
      tailPresent: sum((r) => r.tailPresent),
      rebuilt: results.flatMap((r) => r.rebuilt).slice(0, LISTED),
      tasks: sum((r) => r.tasks),
    }
  },
})

// --- replay -------------------------------------------------------------------------------------

export interface ReplayParams {
  /** `log` (the update log in storage) or a backup's location. */
  source: string
  docs?: string[]
  untilMs?: number
  batchSize?: number
}
export type ReplayBatch =
  | { readonly source: 'log'; readonly docs: string[]; readonly untilMs?: number }
  | { readonly source: string; readonly entries: BackupEntry[]; readonly untilMs?: number }
export interface ReplayBatchResult {
  readonly documents: number
  readonly candidates: number
  readonly appended: number
  /** Documents that got entries appended. */
  readonly changed: ReplayResult[]
}
export interface ReplaySummary extends ReplayBatchResult {
  readonly source: string
}

const replayOperation = (
  deps: RecoveryOperationsDeps,
): Operation<ReplayParams, ReplayBatch, ReplayBatchResult, ReplaySummary> => ({
  name: 'replay',
  plan: async (params) => {
    const untilMs = params.untilMs
    const until = untilMs === undefined ? {} : { untilMs }
    if (params.source === 'log') {
      const batches = await planReplay(deps, { docs: params.docs, batchSize: params.batchSize })
      return batches.map((docs) => ({ source: 'log' as const, docs, ...until }))
    }
    checkJobLocation(params.source, 'backup to replay from')
    const manifest = await withTarget(deps, params.source, readManifest)
    const wanted = params.docs ? new Set(params.docs) : null
    const entries = manifest.documents.filter((e) => !wanted || wanted.has(e.name))
    return inBatches(entries, params.batchSize ?? 50).map((batch) => ({
      source: params.source,
      entries: batch,
      ...until,
    }))
  },
  runBatch: async (batch, ctx) => {
    const until = batch.untilMs === undefined ? {} : { untilMs: batch.untilMs }
    let results: ReplayResult[]
    if ('docs' in batch) {
      results = await eachWithProgress(batch.docs, ctx, (doc) => replayDocument(deps, doc, until))
    } else {
      results = await withTarget(deps, batch.source, (src) =>
        eachWithProgress(batch.entries, ctx, (entry) =>
          replayDocument(deps, entry.name, { ...until, fromBackup: { src, entry } }),
        ),
      )
    }
    return {
      documents: results.length,
      candidates: results.reduce((n, r) => n + r.candidates, 0),
      appended: results.reduce((n, r) => n + r.appended, 0),
      changed: results.filter((r) => r.appended > 0),
    }
  },
  finish: async (params, results) => ({
    source: params.source,
    documents: results.reduce((n, r) => n + r.documents, 0),
    candidates: results.reduce((n, r) => n + r.candidates, 0),
    appended: results.reduce((n, r) => n + r.appended, 0),
    changed: results.flatMap((r) => r.changed).slice(0, LISTED),
  }),
})

// --- verify -------------------------------------------------------------------------------------

export interface VerifyParams {
  docs?: string[]
  /** Verify this backup's files instead of the deployment's documents. */
  backup?: string
  batchSize?: number
}
export type VerifyBatch =
  { readonly docs: string[] } | { readonly backup: string; readonly entries: BackupEntry[] }
export interface VerifyBatchResult {
  readonly documents: number
  readonly failed: number
  readonly failures: (DocumentVerdict | BackupProblem)[]
}
export interface VerifySummary extends VerifyBatchResult {
  readonly ok: boolean
  /** What was verified: `documents` or a backup's location. */
  readonly subject: string
}

const verifyOperation = (
  deps: RecoveryOperationsDeps,
): Operation<VerifyParams, VerifyBatch, VerifyBatchResult, VerifySummary> => ({
  name: 'verify',
  plan: async (params) => {
    const size = params.batchSize ?? 50
    if (params.backup !== undefined) {
      const backup = checkJobLocation(params.backup, 'backup to verify')
      const manifest = await withTarget(deps, backup, readManifest)
      const wanted = params.docs ? new Set(params.docs) : null
      const entries = manifest.documents.filter((e) => !wanted || wanted.has(e.name))
      return inBatches(entries, size).map((batch) => ({ backup, entries: batch }))
    }
    const docs = params.docs ? [...new Set(params.docs)].sort() : await allDocuments(deps)
    return inBatches(docs, size).map((batch) => ({ docs: batch }))
  },
  runBatch: async (batch, ctx) => {
    if ('docs' in batch) {
      const verdicts = await eachWithProgress(batch.docs, ctx, (doc) => verifyDocument(deps, doc))
      const failures = verdicts.filter((v) => !v.ok)
      return { documents: verdicts.length, failed: failures.length, failures }
    }
    const verdict = await withTarget(deps, batch.backup, (src) =>
      verifyBackupEntries(src, batch.entries),
    )
    const failedDocs = new Set(verdict.problems.map((p) => p.doc))
    return { documents: verdict.documents, failed: failedDocs.size, failures: verdict.problems }
  },
  finish: async (params, results) => {
    const failed = results.reduce((n, r) => n + r.failed, 0)
    return {
      subject: params.backup ?? 'documents',
      ok: failed === 0,
      documents: results.reduce((n, r) => n + r.documents, 0),
      failed,
      failures: results.flatMap((r) => r.failures).slice(0, LISTED),
    }
  },
})

// --- history maintenance ------------------------------------------------------------------------

export interface HistoryMaintenanceParams extends MaintenanceSettings {
  docs?: string[]
  batchSize?: number
}
export interface HistoryMaintenanceBatch extends MaintenanceSettings {
  readonly docs: string[]
}
export interface HistoryMaintenanceResult {
  readonly documents: number
  readonly checkpoints: number
  readonly packed: number
  readonly logsDropped: number
  readonly checkpointsDropped: number
}

const maintenanceOperation = (
  deps: RecoveryOperationsDeps,
): Operation<
  HistoryMaintenanceParams,
  HistoryMaintenanceBatch,
  HistoryMaintenanceResult,
  HistoryMaintenanceResult
> => ({
  name: 'history-maintenance',
  plan: async (params) => {
    const { checkpointEveryMs, retentionMs, packAfterMs } = params
    const settings = { checkpointEveryMs, retentionMs, packAfterMs }
    checkMaintenanceSettings(settings)
    const batches = params.docs
      ? inBatches([...new Set(params.docs)].sort(), params.batchSize ?? 100)
      : await planMaintenance(deps, { batchSize: params.batchSize })
    return batches.map((docs) => ({ ...settings, docs }))
  },
  runBatch: async (batch, ctx) => {
    const nowMs = await redisNowMs(deps.redis)
    const done = await eachWithProgress(batch.docs, ctx, (doc) =>
      maintainHistory(deps, doc, { ...batch, nowMs }),
    )
    return {
      documents: done.length,
      checkpoints: done.filter((d) => d.checkpoint !== null).length,
      packed: done.reduce((n, d) => n + d.packed, 0),
      logsDropped: done.filter((d) => d.droppedLogUpTo !== null).length,
      checkpointsDropped: done.reduce((n, d) => n + d.droppedCheckpoints.length, 0),
    }
  },
  finish: async (_params, results) => ({
    documents: results.reduce((n, r) => n + r.documents, 0),
    checkpoints: results.reduce((n, r) => n + r.checkpoints, 0),
    packed: results.reduce((n, r) => n + r.packed, 0),
    logsDropped: results.reduce((n, r) => n + r.logsDropped, 0),
    checkpointsDropped: results.reduce((n, r) => n + r.checkpointsDropped, 0),
  }),
})

/** Names of the recovery operations (what `createJobs(...).submit` takes). */
export const RECOVERY_OPERATIONS = [
  'backup',
  'restore',
  'replay',
  'verify',
  'history-maintenance',
] as const

/**
 * The recovery operations for `createJobs({ operations })`, every one bound to `deps` (the
 * process's Redis, storage and streams). Params and results are typed by BackupParams /
 * BackupSummary, RestoreParams / RestoreSummary, ReplayParams / ReplaySummary, VerifyParams /
 * VerifySummary, HistoryMaintenanceParams / HistoryMaintenanceResult.
 */
export const createRecoveryOperations = (
  deps: RecoveryOperationsDeps,
): Operation<never, never, never, never>[] =>
  [
    backupOperation(deps),
    restoreOperation(deps),
    replayOperation(deps),
    verifyOperation(deps),
    maintenanceOperation(deps),
  ] as unknown as Operation<never, never, never, never>[]
