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

/** A `<field>: <n> kB` line of /proc/<pid>/status, in bytes (NaN if unreadable). */
export const statusBytes = (pid: number, field: string): number => {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : NaN
  } catch {
    return NaN
  }
}

/** Resident set size of `pid` in bytes (NaN if unreadable). */
export const rssBytes = (pid: number): number => statusBytes(pid, 'VmRSS')

/** CPU seconds all cores spent busy (user, nice, system, irq, softirq) since boot; NaN if unknown. */
export const machineBusySeconds = (): number => {
  try {
    const [user, nice, system, , , irq, softirq] = (
      readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    )
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number)
    return (
      ((user ?? NaN) + (nice ?? NaN) + (system ?? NaN) + (irq ?? NaN) + (softirq ?? NaN)) /
      CLOCK_TICKS
    )
  } catch {
    return NaN
  }
}

/**
 * Meters `ours` (CPU seconds per named process since its own start) and adds `other`: what every
 * other process on the machine used in the same time (they share the cores with what we measure).
 */
export const withOthers = (ours: () => Record<string, number>): (() => Record<string, number>) => {
  const start = machineBusySeconds()
  return () => {
    const cpu = ours()
    const mine = Object.values(cpu).reduce((n, v) => n + (Number.isFinite(v) ? v : 0), 0)
    return { ...cpu, other: Math.max(0, machineBusySeconds() - start - mine) }
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
