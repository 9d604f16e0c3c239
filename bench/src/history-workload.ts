/**
 * The edit history of one document over simulated days, for the HISTORY bench: real Yjs updates
 * (one per keystroke: a character typed or deleted), archived the way a worker archives them, and
 * the times history maintenance runs at.
 *
 * A document is edited on most weekdays and some weekend days, in one to three sessions a day of
 * 150–600 keystrokes: words typed 80–300 ms a key, a pause to think now and then (2.5–15 s), some
 * backspaces, the cursor moved into the text at times. Entry ids are `<ms>-0`, the ms being the
 * simulated time of the keystroke. Compaction archives the entries not yet archived when they are
 * due as the worker decides it (compactor.ts): COMPACT_IDLE_MS after the last of them, or
 * COMPACT_INTERVAL_MS after the first, whichever comes first (defaults 2 s and 30 s); each such run
 * is one appendLog call.
 *
 * Maintenance runs on the default schedule (`17 * * * *`, hourly). A run in an hour where the
 * document did not change since the previous run does nothing that a later run would not do as
 * well (no checkpoint is due without a change; packing and folding only catch up), so the
 * timeline holds the runs at :17 after each change, one a day at 01:17 (the first run that may
 * pack the day before: HISTORY_PACK_AFTER is 1 h), and one at the end.
 */
import * as prng from 'lib0/prng'
import * as Y from 'yjs'
import { idTimeMs } from '@streambed/common'
import type { LogEntry, StoredDoc } from '@streambed/storage'

export const HOUR_MS = 3_600_000
export const DAY_MS = 24 * HOUR_MS
/** Maintenance runs at this minute of each hour (HISTORY_MAINTENANCE_SCHEDULE `17 * * * *`). */
const RUN_MINUTE_MS = 17 * 60_000
const COMPACT_IDLE_MS = 2_000
const COMPACT_INTERVAL_MS = 30_000

export interface WorkloadOptions {
  /** A UTC midnight: the history starts on this day. */
  readonly startMs: number
  readonly days: number
  readonly seed: number
}

/** One compaction's archive (`appendLog(doc, entries)` at atMs), or a maintenance run at atMs. */
export type HistoryEvent =
  | { readonly kind: 'archive'; readonly atMs: number; readonly entries: readonly LogEntry[] }
  | {
      readonly kind: 'maintain'
      readonly atMs: number
      /** What compaction stored by then, when it changed since the previous run. */
      readonly stored: StoredDoc | null
    }

export interface DocHistory {
  /** In time order. */
  readonly events: readonly HistoryEvent[]
  /** Every archived entry, ascending. */
  readonly entries: readonly LogEntry[]
  /** The last maintenance run (the bench's "now"). */
  readonly endMs: number
  readonly sessions: number
  /** encodeStateAsUpdate of the final document. */
  readonly finalBytes: number
}

/** The typing of one document, keystroke by keystroke, cut into compaction batches. */
const type = (opts: WorkloadOptions): { batches: HistoryEvent[]; sessions: number } => {
  const gen = prng.create(opts.seed)
  const ydoc = new Y.Doc()
  const text = ydoc.getText('t')
  let nowMs = 0
  let pending: LogEntry[] = []
  const batches: HistoryEvent[] = []
  ydoc.on('update', (update: Uint8Array) => pending.push({ id: `${nowMs}-0`, update }))
  const dueOf = (entries: readonly LogEntry[]) =>
    Math.min(
      idTimeMs((entries.at(-1) as LogEntry).id) + COMPACT_IDLE_MS,
      idTimeMs((entries[0] as LogEntry).id) + COMPACT_INTERVAL_MS,
    )
  /** Archives what is due by `ms` (before the keystroke at ms, or at the end of a session). */
  const compactBy = (ms: number) => {
    if (pending.length > 0 && dueOf(pending) <= ms) {
      batches.push({ kind: 'archive', atMs: dueOf(pending), entries: pending })
      pending = []
    }
  }
  let sessions = 0
  let lastMs = opts.startMs
  for (let day = 0; day < opts.days; day++) {
    const dayMs = opts.startMs + day * DAY_MS
    const weekday = [1, 2, 3, 4, 5].includes(new Date(dayMs).getUTCDay())
    if (prng.real53(gen) > (weekday ? 0.8 : 0.25)) continue
    const starts = Array.from(
      { length: prng.int32(gen, 1, 3) },
      () => dayMs + prng.int32(gen, 7 * HOUR_MS, 20 * HOUR_MS),
    ).sort((a, b) => a - b)
    for (const start of starts) {
      // Sessions of one document do not overlap: a late one starts 10 minutes after the last.
      nowMs = Math.max(start, lastMs + 600_000)
      if (nowMs >= dayMs + DAY_MS) break
      sessions++
      let cursor = prng.real53(gen) < 0.8 ? text.length : prng.int32(gen, 0, text.length)
      const keys = prng.int32(gen, 150, 600)
      for (let k = 0; k < keys; k++) {
        nowMs += prng.int32(gen, 80, 300)
        compactBy(nowMs)
        if (cursor > 0 && prng.real53(gen) < 0.08) {
          text.delete(cursor - 1, 1)
          cursor--
          continue
        }
        const wordEnd = prng.real53(gen) < 0.17
        text.insert(cursor, wordEnd ? ' ' : prng.letter(gen))
        cursor++
        if (wordEnd && prng.real53(gen) < 0.15) nowMs += prng.int32(gen, 2_500, 15_000)
        if (wordEnd && prng.real53(gen) < 0.03) cursor = prng.int32(gen, 0, text.length)
      }
      compactBy(Number.POSITIVE_INFINITY)
      lastMs = nowMs
    }
  }
  ydoc.destroy()
  return { batches, sessions }
}

/** The next maintenance run strictly after `ms`. */
const nextRun = (ms: number) => {
  const hour = Math.floor((ms - RUN_MINUTE_MS) / HOUR_MS) + 1
  return hour * HOUR_MS + RUN_MINUTE_MS
}

/** One document's history: its archives and maintenance runs in time order. */
export const docHistory = (opts: WorkloadOptions): DocHistory => {
  const { batches, sessions } = type(opts)
  const endMs = opts.startMs + opts.days * DAY_MS + HOUR_MS + RUN_MINUTE_MS
  const runs = new Set<number>([endMs])
  for (let day = 1; day <= opts.days; day++)
    runs.add(opts.startMs + day * DAY_MS + HOUR_MS + RUN_MINUTE_MS)
  for (const b of batches) runs.add(nextRun(b.atMs))
  const timeline = [
    ...batches,
    ...[...runs].map((atMs): HistoryEvent => ({ kind: 'maintain', atMs, stored: null })),
  ].sort((a, b) => a.atMs - b.atMs || (a.kind === 'archive' ? -1 : 1))

  // What compaction stored by each run: every archived entry merged, as the worker merges them.
  const ydoc = new Y.Doc()
  const entries: LogEntry[] = []
  let changed = false
  const events = timeline.map((e): HistoryEvent => {
    if (e.kind === 'archive') {
      for (const entry of e.entries) Y.applyUpdate(ydoc, entry.update)
      entries.push(...e.entries)
      changed = true
      return e
    }
    const last = entries.at(-1)
    const stored =
      changed && last ? { state: Y.encodeStateAsUpdate(ydoc), watermark: last.id } : null
    changed = false
    return { kind: 'maintain', atMs: e.atMs, stored }
  })
  const finalBytes = Y.encodeStateAsUpdate(ydoc).byteLength
  ydoc.destroy()
  return { events, entries, endMs, sessions, finalBytes }
}

/** The document holding every entry with an id time <= atMs, as the reference to compare with. */
export const referenceAt = (history: DocHistory, atMs: number): Y.Doc => {
  const ydoc = new Y.Doc()
  for (const e of history.entries) {
    if (idTimeMs(e.id) > atMs) break
    Y.applyUpdate(ydoc, e.update)
  }
  return ydoc
}
