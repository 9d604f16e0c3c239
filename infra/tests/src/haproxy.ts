/** One section of an HAProxy configuration: its header words and its directives' words. */
export interface CfgSection {
  kind: string
  name: string
  directives: string[][]
}

/** The sections of an HAProxy configuration (comments and blank lines dropped). */
export const parseHaproxyConfig = (text: string): CfgSection[] => {
  const sections: CfgSection[] = []
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '')
    if (line.trim() === '') continue
    const words = line.trim().split(/\s+/)
    if (/^\S/.test(line)) sections.push({ kind: words[0]!, name: words[1] ?? '', directives: [] })
    else sections.at(-1)?.directives.push(words)
  }
  return sections
}

/** An HAProxy time ("120s", "500ms", "2m"; bare numbers are milliseconds) in milliseconds. */
export const haproxyTimeMs = (value: string): number => {
  const m = /^(\d+)(us|ms|s|m|h|d)?$/.exec(value)
  if (!m) throw new Error(`not an HAProxy time: ${value}`)
  const unit = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
  return Number(m[1]) * unit[(m[2] ?? 'ms') as keyof typeof unit]
}
