import type { Floors } from './floors.js'

export interface BenchContext {
  /** Shorter runs: the whole suite in about a minute (smoke test). */
  readonly quick: boolean
  readonly floors: Floors
  /** Progress lines on stderr (tables go to stdout). */
  log(message: string): void
  /** Numbers one scenario publishes for later ones (e.g. S1's p99 for S2's comparison). */
  readonly shared: Map<string, number>
}

export interface Scenario {
  /** Short name on the command line: s1 … s7, memory. */
  readonly name: string
  readonly title: string
  /** Markdown: one or more tables and short notes. */
  run(ctx: BenchContext): Promise<string>
}
