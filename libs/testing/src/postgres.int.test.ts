import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { startPostgresServer, testDatabase } from './postgres.js'

const withClient = async <T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  client.on('error', () => {})
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

describe('startPostgresServer', () => {
  it('keeps committed rows across a stop and start on the same port', async () => {
    await using server = await startPostgresServer()
    expect(server.url).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`)
    await withClient(server.url, async (c) => {
      await c.query('CREATE TABLE kept (id int PRIMARY KEY, body text NOT NULL)')
      await c.query(`INSERT INTO kept VALUES (1, 'survives')`)
    })
    // A client still connected when the server stops is disconnected (fast shutdown), not waited for.
    const lingering = new pg.Client({ connectionString: server.url })
    lingering.on('error', () => {})
    await lingering.connect()

    await server.stop()
    await expect(withClient(server.url, (c) => c.query('SELECT 1'))).rejects.toThrow()
    await expect(lingering.query('SELECT 1')).rejects.toThrow()
    await lingering.end().catch(() => {})

    await server.start()
    const rows = await withClient(server.url, (c) => c.query('SELECT id, body FROM kept'))
    expect(rows.rows).toEqual([{ id: 1, body: 'survives' }])
  })

  it('recovers committed rows after an immediate shutdown and restarts', async () => {
    const server = await startPostgresServer()
    try {
      await withClient(server.url, async (c) => {
        await c.query('CREATE TABLE t (n int)')
        await c.query('INSERT INTO t SELECT generate_series(1, 1000)')
      })
      await server.kill()
      await expect(withClient(server.url, (c) => c.query('SELECT 1'))).rejects.toThrow()
      await server.start()
      await server.restart({ downMs: 50 })
      const sum = await withClient(server.url, (c) => c.query('SELECT sum(n)::int AS s FROM t'))
      expect(sum.rows[0]).toEqual({ s: 500_500 })
    } finally {
      await server.close()
    }
    await expect(withClient(server.url, (c) => c.query('SELECT 1'))).rejects.toThrow()
  })
})

describe('testDatabase', () => {
  it('puts unqualified tables in its own schema and drops it on close', async () => {
    // Disposed even when an assertion fails; the explicit close() below makes this a no-op.
    await using db = await testDatabase(undefined, 'Schema Test')
    expect(db.schema).toMatch(/^schema_test_\d+_[a-z0-9]+_\d+$/)
    expect(new URL(db.url).searchParams.get('options')).toBe(`-c search_path=${db.schema}`)
    await withClient(db.url, async (c) => {
      // pg passes `options` from the URL to the server: the search path is the schema.
      const path = await c.query<{ search_path: string }>('SHOW search_path')
      expect(path.rows[0]?.search_path).toBe(db.schema)
      await c.query('CREATE TABLE docs (name text PRIMARY KEY)')
      await c.query(`INSERT INTO docs VALUES ('a')`)
    })
    const placed = await withClient(db.url, (c) =>
      c.query<{ schema: string }>(
        `SELECT relnamespace::regnamespace::text AS schema FROM pg_class WHERE oid = 'docs'::regclass`,
      ),
    )
    expect(placed.rows).toEqual([{ schema: db.schema }])
    await db.close()
    const left = await withClient(db.url.split('?')[0]!, (c) =>
      c.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [db.schema]),
    )
    expect(left.rowCount).toBe(0)
  })

  it('gives two databases on one server separate tables', async () => {
    await using server = await startPostgresServer()
    await using a = await testDatabase(server.url)
    await using b = await testDatabase(server.url)
    expect(a.schema).not.toBe(b.schema)
    await withClient(a.url, (c) => c.query('CREATE TABLE only_in_a (x int)'))
    await expect(withClient(b.url, (c) => c.query('SELECT * FROM only_in_a'))).rejects.toThrow(
      /does not exist/,
    )
    const inA = await withClient(a.url, (c) => c.query('SELECT * FROM only_in_a'))
    expect(inA.rowCount).toBe(0)
  })
})
