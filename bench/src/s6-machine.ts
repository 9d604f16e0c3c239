/**
 * Machine-wide CPU time from /proc/stat (Linux), so a result can say how much of the cores other
 * processes on the machine took while it was measured (they share the cores with what we measure).
 */
import { readFileSync } from 'node:fs'

const CLOCK_TICKS = 100

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
 * other process on the machine used in the same time.
 */
export const withOthers = (ours: () => Record<string, number>): (() => Record<string, number>) => {
  const start = machineBusySeconds()
  return () => {
    const cpu = ours()
    const mine = Object.values(cpu).reduce((n, v) => n + (Number.isFinite(v) ? v : 0), 0)
    return { ...cpu, other: Math.max(0, machineBusySeconds() - start - mine) }
  }
}
