/** Load pacing shared by the scenarios. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * Calls `tick(i)` `ratePerSec` times a second for `seconds`, spread over 10 ms slices so that a
 * high rate does not arrive in bursts. Returns how many calls were made.
 */
export const pace = async (
  ratePerSec: number,
  seconds: number,
  tick: (i: number) => void,
): Promise<number> => {
  const start = performance.now()
  const total = Math.round(ratePerSec * seconds)
  let done = 0
  while (done < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * ratePerSec))
    while (done < due) tick(done++)
    await sleep(10)
  }
  return done
}
