import { describe, expect, it } from 'vitest'
import { CloseCode, silentLogger } from '@streambed/common'
import { createSyncBaseline, encodeSyncUpdate, keepaliveMessage } from '@streambed/protocol'
import type { StreamEntry } from '@streambed/streams'
import { Connection, type ConnectionOptions } from './connection.js'
import { FakeSocket } from './testing/fake-socket.js'

const connect = (over: Partial<ConnectionOptions> = {}) => {
  const socket = new FakeSocket()
  const closes: number[] = []
  const conn = new Connection({
    id: 7,
    originPrefix: 'node~abc',
    doc: 'd',
    grant: { access: 'write', mayDelete: false, subject: undefined },
    socket,
    logger: silentLogger(),
    maxBufferedEntries: 3,
    maxBufferedBytes: 1000,
    onServerClose: (code) => closes.push(code),
    ...over,
  })
  socket.onEnd = () => conn.markClosed()
  return { conn, socket, closes }
}

const entry = (id: string, byte: number, origin = 'other~x/1'): StreamEntry => ({
  id,
  update: new Uint8Array([byte]),
  origin,
})
const deliver = (conn: Connection, entries: StreamEntry[]) =>
  conn.deliver(
    entries,
    entries.map((e) => encodeSyncUpdate(e.update)),
  )

/** A connection whose first sync covered everything up to `upTo`. */
const goLive = (conn: Connection, upTo: string) => {
  conn.beginJoin()
  conn.synced(upTo)
}

describe('Connection', () => {
  it('ignores entries before its first sync read starts', () => {
    const { conn, socket } = connect()
    deliver(conn, [entry('1-0', 1)])
    expect(conn.state).toBe('joining')
    goLive(conn, '0-0')
    expect(socket.sent).toHaveLength(0)
    expect(conn.state).toBe('live')
  })

  it('buffers entries during its first sync and sends those the answer did not cover', () => {
    const { conn, socket } = connect()
    conn.beginJoin()
    deliver(conn, [entry('1-0', 1), entry('2-0', 2), entry('3-0', 3, conn.origin)])
    expect(socket.sent).toHaveLength(0)
    // The answer covered 1-0; 2-0 came after it; 3-0 is the connection's own.
    conn.synced('1-0')
    expect(socket.updates()).toEqual([new Uint8Array([2])])
    expect(conn.state).toBe('live')
    expect(conn.syncedUpTo).toBe('1-0')
  })

  it('closes with 4508 when too many entries wait for the first sync', () => {
    const { conn, socket, closes } = connect()
    conn.beginJoin()
    deliver(conn, [entry('1-0', 1), entry('2-0', 2), entry('3-0', 3), entry('4-0', 4)])
    expect(socket.ended?.code).toBe(CloseCode.slowConsumer)
    expect(closes).toEqual([CloseCode.slowConsumer])
    expect(conn.closed).toBe(true)
  })

  it('delivers live entries except its own and those its last sync covered', () => {
    const { conn, socket } = connect()
    goLive(conn, '5-0')
    deliver(conn, [entry('4-0', 4), entry('6-0', 6, conn.origin), entry('7-0', 7)])
    expect(socket.updates()).toEqual([new Uint8Array([7])])
    // A later sync (a resync step 1 while live) raises the bar, never lowers it.
    conn.synced('9-0')
    conn.synced('8-0')
    deliver(conn, [entry('9-0', 9), entry('10-0', 10)])
    expect(socket.updates()).toEqual([new Uint8Array([7]), new Uint8Array([10])])
  })

  it('closes with 4508 when the socket drops a message (send buffer full)', () => {
    const { conn, socket } = connect()
    goLive(conn, '0-0')
    socket.accepting = false
    deliver(conn, [entry('1-0', 1)])
    expect(socket.ended?.code).toBe(CloseCode.slowConsumer)
    deliver(conn, [entry('2-0', 2)])
    expect(socket.sent).toHaveLength(1)
  })

  it('coalesces step 1s arriving while one runs to the newest', () => {
    const { conn } = connect()
    const sv = (n: number) => new Uint8Array([n])
    expect(conn.syncRequests.offer(sv(1))).toBe(true)
    expect(conn.syncRequests.offer(sv(2))).toBe(false)
    expect(conn.syncRequests.offer(sv(3))).toBe(false)
    expect(conn.syncRequests.done()).toEqual(sv(3))
    // The coalesced one is now running.
    expect(conn.syncRequests.offer(sv(4))).toBe(false)
    expect(conn.syncRequests.done()).toEqual(sv(4))
    expect(conn.syncRequests.done()).toBeNull()
    expect(conn.syncRequests.offer(sv(5))).toBe(true)
  })

  it('counts write slots and hands the queue over once', () => {
    const { conn } = connect()
    expect(conn.writes.tryAcquire(1)).toBe(true)
    expect(conn.writes.tryAcquire(1)).toBe(false)
    const queued = (bytes: number) => ({
      update: new Uint8Array(bytes),
      shape: { clients: new Map(), hasDeletes: false },
    })
    expect(conn.writes.enqueue(queued(10))).toBe(10)
    expect(conn.writes.enqueue(queued(5))).toBe(15)
    expect(conn.writes.takeQueued()).toHaveLength(2)
    expect(conn.writes.queuedBytes).toBe(0)
    expect(conn.writes.takeQueued()).toHaveLength(0)
    conn.writes.release()
    expect(conn.writes.tryAcquire(1)).toBe(true)
  })

  it('gives its baseline to the first step 2 only', () => {
    const { conn } = connect()
    const baseline = createSyncBaseline(new Uint8Array([0, 0]))
    conn.setBaseline(baseline, 60_000)
    expect(conn.takeBaseline()).toBe(baseline)
    expect(conn.takeBaseline()).toBeNull()
  })

  it('tells a read-only client once that its updates are not stored', () => {
    const { conn, socket } = connect({ grant: { access: 'read', mayDelete: false, subject: 'r' } })
    conn.notifyReadOnly()
    conn.notifyReadOnly()
    expect(socket.messages()).toEqual([
      { kind: 'auth', reason: 'read-only access: updates are not stored' },
    ])
  })

  it('sends a keepalive only when nothing was sent for the quiet period', () => {
    const { conn, socket } = connect()
    const now = Date.now()
    conn.sendKeepaliveIfQuiet(now, 60_000)
    expect(socket.sent).toHaveLength(0)
    conn.sendKeepaliveIfQuiet(now + 60_000, 60_000)
    expect(socket.sent).toEqual([keepaliveMessage])
  })

  it('does nothing once closed, and cuts close reasons to 123 bytes', () => {
    const { conn, socket, closes } = connect()
    conn.close(4400, 'x'.repeat(500))
    expect(socket.ended?.reason).toHaveLength(123)
    conn.close(4500, 'again')
    conn.send([new Uint8Array([1])])
    expect(closes).toEqual([4400])
    expect(socket.sent).toHaveLength(0)
  })
})
