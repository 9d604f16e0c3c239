import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { silentLogger } from '@streambed/common'
import { HopTrace } from './hop-trace.js'

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})
const tempFile = async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hop-trace-'))
  dirs.push(dir)
  return join(dir, 'hops.csv')
}
const shape = { clients: new Map([[7, [{ from: 3, to: 5 }]]]), hasDeletes: false }

describe('HopTrace', () => {
  it('writes one line per append and per delivery, naming the node', async () => {
    const file = await tempFile()
    const trace = new HopTrace(file, 'n1', silentLogger(), 60_000)
    trace.appended('5-1', shape, 1000.5, 1000.75, 1001)
    trace.appended('5-2', shape, 0, 1002, 1003)
    trace.delivered('5-1', 1001.25, 1001.5, 1002)
    await trace.close()
    expect((await readFile(file, 'utf8')).split('\n')).toEqual([
      'w,n1,5-1,7,3,5,1000.500,1000.750,1001.000',
      // The frame waited in the rate limiter: its arrival is unknown.
      'w,n1,5-2,7,3,5,,1002.000,1003.000',
      'd,n1,5-1,1001.250,1001.500,1002.000',
      '',
    ])
  })

  it('flushes on its interval', async () => {
    const file = await tempFile()
    const trace = new HopTrace(file, 'n1', silentLogger(), 10)
    trace.delivered('1-1', 1, 2, 3)
    await vi.waitFor(async () =>
      expect(await readFile(file, 'utf8')).toBe('d,n1,1-1,1.000,2.000,3.000\n'),
    )
    await trace.close()
  })

  it('reads wall-clock milliseconds', () => {
    const trace = new HopTrace('/nonexistent/never-written', 'n1', silentLogger())
    expect(Math.abs(trace.now() - Date.now())).toBeLessThan(50)
    void trace.close()
  })
})
