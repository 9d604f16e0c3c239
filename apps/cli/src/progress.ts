/**
 * Progress of a long command: a bar redrawn in place on a terminal; on anything else (a pipe, a
 * log file, CI) a plain line every 10 % and at the end. Silent with --json (stdout is the result).
 */
export interface Progress {
  update(done: number, total: number): void
  end(): void
}

export const createProgress = (
  label: string,
  opts: { json: boolean; stream?: NodeJS.WriteStream } = { json: false },
): Progress => {
  const stream = opts.stream ?? process.stderr
  if (opts.json) return { update: () => undefined, end: () => undefined }
  const tty = stream.isTTY === true
  let lastTenth = -1
  let drawn = false
  return {
    update: (done, total) => {
      const fraction = total === 0 ? 1 : done / total
      if (tty) {
        const width = 30
        const filled = Math.round(fraction * width)
        const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`
        stream.write(`\r${label} [${bar}] ${done}/${total}`)
        drawn = true
        return
      }
      const tenth = Math.floor(fraction * 10)
      if (tenth !== lastTenth || done === total) {
        lastTenth = tenth
        stream.write(`${label}: ${done}/${total} (${Math.round(fraction * 100)} %)\n`)
      }
    },
    end: () => {
      if (drawn) stream.write('\n')
    },
  }
}
