/**
 * `now` (a Redis TIME round trip) shared by the calls made in one turn of the event loop: the
 * deliveries of a batch reach their due check together (their stream reads are answered in one
 * socket read), so a batch asks Redis the time once instead of once per document. A caller may get
 * a time read a moment before its own call; a due check is a debounce, where that is harmless.
 */
export const sharedPerTurn = (now: () => Promise<number>): (() => Promise<number>) => {
  let current: Promise<number> | null = null
  return () => {
    if (current) return current
    const asked = now()
    current = asked
    // A later turn asks again; so does this one's next caller if the request failed.
    setImmediate(() => {
      if (current === asked) current = null
    })
    asked.catch(() => {
      if (current === asked) current = null
    })
    return asked
  }
}
