import type pg from 'pg'
import { failure, guarded, type Logger, silentLogger } from '@streambed/common'
import {
  assertDistinctDocs,
  type CompareAndSetItem,
  compareWatermarks,
  type DocStorage,
  type LogEntry,
  type LogExtent,
  type Watermark,
} from './storage.js'

/**
 * Postgres storage: one row per document, one row per archived stream entry, one per checkpoint.
 *
 *   streambed_docs_v1         (name, state, watermark, version, updated_at)  compacted state
 *   streambed_log_v1          (name, id_ms, id_seq, "update")                 update log, by entry id
 *   streambed_checkpoints_v1  (name, up_ms, up_seq, state)                    checkpoints, by upTo
 *
 * A compare-and-set is one statement (compareAndSet is compareAndSetMany of one), so Postgres' row
 * locking decides races: of several writers starting from the same watermark exactly one succeeds
 * (a `next` below `expected` is refused without a statement). compareAndSetMany and appendLogMany
 * are one statement for many documents: one commit (a group commit), each row's condition checked
 * alone; compareAndSetMany first takes its documents' advisory locks in one order (LOCK_DOCS_SQL),
 * in the same transaction, so that batches sharing documents cannot deadlock. Log ids are stored
 * as numbers, so readLog orders them numerically and returns them in canonical form. Rows are not files: packLog has nothing to merge and
 * returns 0, and logExtent counts the whole log as one segment. listHistory finds the documents in
 * the log by walking its primary key index one name at a time (a loose index scan: a step per
 * document, not a row per entry), then sorts them by code point in SQL, since the log's name column
 * has the database's default collation. Unqualified table names resolve through the connection's
 * search_path (`?options=-c search_path=<schema>` in the URL selects a schema).
 *
 * Migrations run when a storage is created, inside one transaction holding an advisory lock (per
 * schema), so processes starting together apply each migration once. Append new migrations at the
 * end of `migrations`; never edit an applied one. Tables carry a version in their name: a change of
 * layout adds `_v2` tables, so processes still running the previous release keep working.
 */
export interface PostgresStorageOptions {
  /** `postgres://user:pass@host:5432/db`, optionally with `?options=-c search_path=<schema>`. */
  url: string
  /** Connections in the pool; default 10. */
  poolMax?: number
  /** Receives connection errors of idle pooled clients and applied migrations; default silent. */
  logger?: Logger
}

interface Migration {
  readonly version: number
  readonly name: string
  readonly sql: string
}

/** Applied in order, each at most once per schema. Append only. */
const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'documents and update log',
    // `COLLATE "C"`: list() pages by name in code point order (as the other backends do) whatever
    // the database's default collation, and can walk the primary key index to do so.
    sql: `
      CREATE TABLE streambed_docs_v1 (
        name text COLLATE "C" PRIMARY KEY,
        state bytea NOT NULL,
        watermark text NOT NULL,
        version bigint NOT NULL DEFAULT 1,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE streambed_log_v1 (
        name text NOT NULL,
        id_ms bigint NOT NULL,
        id_seq numeric(20, 0) NOT NULL,
        "update" bytea NOT NULL,
        PRIMARY KEY (name, id_ms, id_seq)
      );
    `,
  },
  {
    version: 2,
    name: 'checkpoints',
    sql: `
      CREATE TABLE streambed_checkpoints_v1 (
        name text COLLATE "C" NOT NULL,
        up_ms bigint NOT NULL,
        up_seq numeric(20, 0) NOT NULL,
        state bytea NOT NULL,
        PRIMARY KEY (name, up_ms, up_seq)
      );
    `,
  },
]

/** The first key of the documents' advisory locks (LOCK_DOCS_SQL): "sbdc". */
const DOC_LOCK_CLASS = 0x73626463

/** The two parts of a watermark as decimal strings (Postgres casts them; seq may exceed 2^53). */
const splitId = (id: Watermark): [string, string] => {
  const m = /^(\d+)-(\d+)$/.exec(id)
  if (!m) throw new TypeError(`not a stream id: ${JSON.stringify(id)}`)
  return [m[1] as string, m[2] as string]
}

/** Runs `fn` in a transaction on one pooled connection; a connection that failed is discarded. */
const inTransaction = async <T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> => {
  const client = await pool.connect()
  let result: T
  try {
    await client.query('BEGIN')
    result = await fn(client)
    await client.query('COMMIT')
  } catch (err) {
    const rolledBack = await client.query('ROLLBACK').then(
      () => true,
      () => false,
    )
    client.release(!rolledBack)
    throw err
  }
  client.release()
  return result
}

const migrate = (pool: pg.Pool, logger: Logger): Promise<void> =>
  inTransaction(pool, async (client) => {
    // Held until the transaction ends; keyed by schema so that schemas do not wait for each other.
    await client.query(
      `SELECT pg_advisory_xact_lock(hashtext('streambed_migrations:' || coalesce(current_schema(), '')))`,
    )
    await client.query(`
      CREATE TABLE IF NOT EXISTS streambed_migrations (
        version int PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`)
    const applied = await client.query<{ version: number }>(
      'SELECT version FROM streambed_migrations',
    )
    const done = new Set(applied.rows.map((r) => r.version))
    for (const m of migrations) {
      if (done.has(m.version)) continue
      await client.query(m.sql)
      await client.query('INSERT INTO streambed_migrations (version, name) VALUES ($1, $2)', [
        m.version,
        m.name,
      ])
      logger.info({ version: m.version, migration: m.name }, 'applied storage migration')
    }
  })

/**
 * Takes the advisory lock of every document named in $1 (text[]), until the transaction ends, in
 * the order of their keys. Every compare-and-set of several documents takes them before touching
 * a row, so transactions sharing documents take the shared locks in one order and cannot deadlock
 * (nor wait for each other at a row). Row locks alone cannot promise that: an UPDATE of many rows locks them in the order
 * of its plan, and a document not stored yet has no row to lock (`SELECT … FOR UPDATE` leaves its
 * INSERT racing). The volatile lock function runs after the sort (the plan sorts below it).
 * Colliding keys only make two documents wait for each other. The two-key form keeps these apart
 * from the migrations' one-key lock.
 */
const LOCK_DOCS_SQL = `
  SELECT pg_advisory_xact_lock(${DOC_LOCK_CLASS}, k)
  FROM (SELECT DISTINCT hashtext(name) AS k FROM unnest($1::text[]) AS name) AS keys
  ORDER BY k`

/**
 * The compare-and-set of each item (distinct documents, none going back) as one statement: a new
 * row for `expected` null unless one exists, else an update if the stored watermark is still
 * `expected`. Returns the names stored. Postgres decides each row alone; a failed statement stores
 * nothing.
 */
const storeRows = async (
  db: pg.Pool | pg.PoolClient,
  items: readonly CompareAndSetItem[],
): Promise<Set<string>> => {
  const res = await db.query<{ name: string }>(
    `WITH item AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
         AS i(name, expected, state, watermark)
     ), created AS (
       INSERT INTO streambed_docs_v1 (name, state, watermark)
       SELECT name, state, watermark FROM item WHERE expected IS NULL
       ON CONFLICT (name) DO NOTHING
       RETURNING name
     ), advanced AS (
       UPDATE streambed_docs_v1 AS d
       SET state = item.state, watermark = item.watermark, version = d.version + 1,
         updated_at = now()
       FROM item
       WHERE item.expected IS NOT NULL AND d.name = item.name AND d.watermark = item.expected
       RETURNING d.name
     )
     SELECT name FROM created UNION ALL SELECT name FROM advanced`,
    [
      items.map((i) => i.doc),
      items.map((i) => i.expected),
      items.map((i) => i.next.state),
      items.map((i) => i.next.watermark),
    ],
  )
  return new Set(res.rows.map((r) => r.name))
}

export const createPostgresStorage = async (opts: PostgresStorageOptions): Promise<DocStorage> => {
  const logger = opts.logger ?? silentLogger()
  // Loaded here, not at the top: a node on another backend never loads the driver.
  const { default: pgModule } = await import('pg')
  const pool = new pgModule.Pool({
    connectionString: opts.url,
    max: opts.poolMax ?? 10,
    connectionTimeoutMillis: 10_000,
  })
  // An idle client whose connection breaks (server restart) is dropped from the pool; without a
  // listener the 'error' event would crash the process.
  pool.on('error', (err) => logger.warn({ err }, 'idle Postgres connection failed'))
  try {
    await migrate(pool, logger)
  } catch (err) {
    await pool.end().catch(() => undefined)
    throw failure('STORAGE_UNAVAILABLE', 'cannot prepare the Postgres schema', err)
  }

  const storage: DocStorage = {
    kind: 'postgres',
    load: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read ${doc}`, async () => {
        const res = await pool.query<{ state: Buffer; watermark: string }>(
          'SELECT state, watermark FROM streambed_docs_v1 WHERE name = $1',
          [doc],
        )
        const row = res.rows[0]
        return row ? { state: row.state, watermark: row.watermark } : null
      }),
    loadMany: (docs) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read ${docs.length} documents`, async () => {
        if (docs.length === 0) return []
        const res = await pool.query<{ name: string; state: Buffer; watermark: string }>(
          'SELECT name, state, watermark FROM streambed_docs_v1 WHERE name = ANY($1::text[])',
          [docs],
        )
        const byName = new Map(res.rows.map((r) => [r.name, r]))
        return docs.map((doc) => {
          const row = byName.get(doc)
          return row ? { state: row.state, watermark: row.watermark } : null
        })
      }),
    watermark: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read ${doc}`, async () => {
        const res = await pool.query<{ watermark: string }>(
          'SELECT watermark FROM streambed_docs_v1 WHERE name = $1',
          [doc],
        )
        return res.rows[0]?.watermark ?? null
      }),
    compareAndSet: async (doc, expected, next) =>
      (await storage.compareAndSetMany([{ doc, expected, next }]))[0] ?? false,
    compareAndSetMany: async (items) => {
      // A caller's mistake, not the storage's: thrown as it is.
      assertDistinctDocs(items)
      const what = items.length === 1 ? items[0]?.doc : `${items.length} documents`
      return guarded('STORAGE_UNAVAILABLE', `cannot store ${what}`, async () => {
        // Storing a lower watermark would break "a stored watermark never decreases".
        const valid = items.filter(
          (i) => !(i.expected !== null && compareWatermarks(i.next.watermark, i.expected) < 0),
        )
        if (valid.length === 0) return items.map(() => false)
        // A lone row's statement never holds one lock while waiting for another: nothing to order.
        // Several rows take the documents' locks first.
        const stored =
          valid.length === 1
            ? await storeRows(pool, valid)
            : await inTransaction(pool, async (client) => {
                await client.query(LOCK_DOCS_SQL, [valid.map((i) => i.doc)])
                return storeRows(client, valid)
              })
        const asked = new Set(valid)
        return items.map((i) => asked.has(i) && stored.has(i.doc))
      })
    },
    appendLog: (doc, entries) => storage.appendLogMany([{ doc, entries }]),
    appendLogMany: async (items) => {
      if (items.every((i) => i.entries.length === 0)) return
      const what = items.length === 1 ? items[0]?.doc : `${items.length} documents`
      await guarded('STORAGE_UNAVAILABLE', `cannot archive ${what}`, async () => {
        const rows = items.flatMap(({ doc, entries }) =>
          entries.map((e) => ({ doc, id: splitId(e.id), update: e.update })),
        )
        await pool.query(
          `INSERT INTO streambed_log_v1 (name, id_ms, id_seq, "update")
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::numeric[], $4::bytea[])
           ON CONFLICT DO NOTHING`,
          [
            rows.map((r) => r.doc),
            rows.map((r) => r.id[0]),
            rows.map((r) => r.id[1]),
            rows.map((r) => r.update),
          ],
        )
      })
    },
    readLog: (doc, { after, upTo } = {}) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read the update log of ${doc}`, async () => {
        const [afterMs, afterSeq] = after === undefined ? [null, null] : splitId(after)
        const [upToMs, upToSeq] = upTo === undefined ? [null, null] : splitId(upTo)
        const res = await pool.query<{ ms: string; seq: string; update: Buffer }>(
          `SELECT id_ms::text AS ms, id_seq::text AS seq, "update" FROM streambed_log_v1
           WHERE name = $1
             AND ($2::bigint IS NULL OR (id_ms, id_seq) > ($2::bigint, $3::numeric))
             AND ($4::bigint IS NULL OR (id_ms, id_seq) <= ($4::bigint, $5::numeric))
           ORDER BY id_ms, id_seq`,
          [doc, afterMs, afterSeq, upToMs, upToSeq],
        )
        return res.rows.map((r): LogEntry => ({ id: `${r.ms}-${r.seq}`, update: r.update }))
      }),
    logExtent: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read the update log of ${doc}`, async () => {
        const edge = (order: string) =>
          `(SELECT id_ms::text || '-' || id_seq::text FROM streambed_log_v1
            WHERE name = $1 ORDER BY ${order} LIMIT 1)`
        const res = await pool.query<{
          entries: string
          bytes: string
          first: string
          last: string
        }>(
          `SELECT count(*)::text AS entries, coalesce(sum(octet_length("update")), 0)::text AS bytes,
             ${edge('id_ms, id_seq')} AS first, ${edge('id_ms DESC, id_seq DESC')} AS last
           FROM streambed_log_v1 WHERE name = $1`,
          [doc],
        )
        const row = res.rows[0]
        if (!row || row.entries === '0') return null
        const extent: LogExtent = {
          first: row.first,
          last: row.last,
          entries: Number(row.entries),
          bytes: Number(row.bytes),
          segments: 1,
        }
        return extent
      }),
    packLog: async () => 0,
    dropLog: (doc, upTo) =>
      guarded('STORAGE_UNAVAILABLE', `cannot drop the update log of ${doc}`, async () => {
        await pool.query(
          `DELETE FROM streambed_log_v1
           WHERE name = $1 AND (id_ms, id_seq) <= ($2::bigint, $3::numeric)`,
          [doc, ...splitId(upTo)],
        )
      }),
    putCheckpoint: (doc, { upTo, state }) =>
      guarded('STORAGE_UNAVAILABLE', `cannot store a checkpoint of ${doc}`, async () => {
        await pool.query(
          `INSERT INTO streambed_checkpoints_v1 (name, up_ms, up_seq, state) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name, up_ms, up_seq) DO UPDATE SET state = EXCLUDED.state`,
          [doc, ...splitId(upTo), state],
        )
      }),
    listCheckpoints: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot list the checkpoints of ${doc}`, async () => {
        const res = await pool.query<{ up: string }>(
          `SELECT up_ms::text || '-' || up_seq::text AS up FROM streambed_checkpoints_v1
           WHERE name = $1 ORDER BY up_ms, up_seq`,
          [doc],
        )
        return res.rows.map((r) => r.up)
      }),
    loadCheckpoint: (doc, upTo) =>
      guarded('STORAGE_UNAVAILABLE', `cannot read a checkpoint of ${doc}`, async () => {
        const res = await pool.query<{ up: string; state: Buffer }>(
          `SELECT up_ms::text || '-' || up_seq::text AS up, state FROM streambed_checkpoints_v1
           WHERE name = $1 AND up_ms = $2 AND up_seq = $3`,
          [doc, ...splitId(upTo)],
        )
        const row = res.rows[0]
        return row ? { upTo: row.up, state: row.state } : null
      }),
    dropCheckpoints: (doc, upTos) =>
      guarded('STORAGE_UNAVAILABLE', `cannot drop checkpoints of ${doc}`, async () => {
        if (upTos.length === 0) return
        const ids = upTos.map(splitId)
        await pool.query(
          `DELETE FROM streambed_checkpoints_v1
           WHERE name = $1 AND (up_ms, up_seq) IN (
             SELECT * FROM unnest($2::bigint[], $3::numeric[]))`,
          [doc, ids.map(([ms]) => ms), ids.map(([, seq]) => seq)],
        )
      }),
    delete: (doc) =>
      guarded('STORAGE_UNAVAILABLE', `cannot delete ${doc}`, async () => {
        await inTransaction(pool, async (client) => {
          await client.query('DELETE FROM streambed_docs_v1 WHERE name = $1', [doc])
          await client.query('DELETE FROM streambed_log_v1 WHERE name = $1', [doc])
          await client.query('DELETE FROM streambed_checkpoints_v1 WHERE name = $1', [doc])
        })
      }),
    list: ({ after, limit = 1000 } = {}) =>
      guarded('STORAGE_UNAVAILABLE', 'cannot list documents', async () => {
        const res = await pool.query<{ name: string }>(
          `SELECT name FROM streambed_docs_v1 WHERE $1::text IS NULL OR name > $1
           ORDER BY name LIMIT $2`,
          [after ?? null, limit],
        )
        return res.rows.map((r) => r.name)
      }),
    listHistory: ({ after, limit = 1000 } = {}) =>
      guarded('STORAGE_UNAVAILABLE', 'cannot list documents with history', async () => {
        // `logged` steps through the log's distinct names in its index order (the default
        // collation); the result is sorted by code point, like list().
        const res = await pool.query<{ name: string }>(
          `WITH RECURSIVE logged(name) AS (
             (SELECT name FROM streambed_log_v1 ORDER BY name LIMIT 1)
             UNION ALL
             SELECT (SELECT l.name FROM streambed_log_v1 l
                     WHERE l.name > logged.name ORDER BY l.name LIMIT 1)
             FROM logged WHERE logged.name IS NOT NULL
           )
           SELECT name FROM (
             SELECT name COLLATE "C" AS name FROM logged WHERE name IS NOT NULL
             UNION
             SELECT name FROM streambed_checkpoints_v1
           ) AS history
           WHERE $1::text IS NULL OR name > $1
           ORDER BY name LIMIT $2`,
          [after ?? null, limit],
        )
        return res.rows.map((r) => r.name)
      }),
    ping: () =>
      guarded('STORAGE_UNAVAILABLE', 'Postgres did not answer', async () => {
        await pool.query('SELECT 1')
      }),
    close: async () => {
      await pool.end()
    },
  }
  return storage
}
