/** Per-process CPU time and memory from /proc (Linux), so results stay meaningful when the load
 * generator shares the cores with what it measures. */
import { readFileSync } from 'node:fs'

const CLOCK_TICKS = 100

/** User + system CPU seconds used so far by `pid` (NaN if unreadable). */
export const cpuSeconds = (pid: number): number => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return NaN
  }
}

/** Resident set size of `pid` in bytes (NaN if unreadable). */
export const rssBytes = (pid: number): number => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : NaN
  } catch {
    return NaN
  }
}

export interface CpuMeter {
  /** CPU seconds per named process since the meter started. */
  read(): Record<string, number>
}

/** Starts measuring the named processes' CPU time from now. */
export const meterCpu = (pids: Record<string, number | null | undefined>): CpuMeter => {
  const start = Object.fromEntries(
    Object.entries(pids).map(([name, pid]) => [name, pid ? cpuSeconds(pid) : NaN]),
  )
  return {
    read: () =>
      Object.fromEntries(
        Object.entries(pids).map(([name, pid]) => [
          name,
          pid ? cpuSeconds(pid) - (start[name] ?? NaN) : NaN,
        ]),
      ),
  }
}
