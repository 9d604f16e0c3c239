/**
 * The environment variables the README's "Configuration" section documents, by table: shared by
 * server nodes and workers, server nodes only, workers only.
 */
export interface ConfigTables {
  readonly shared: ReadonlySet<string>
  readonly server: ReadonlySet<string>
  readonly worker: ReadonlySet<string>
}

const TABLE_OF: [RegExp, keyof ConfigTables][] = [
  [/^\*\*Shared by server nodes and workers\*\*/, 'shared'],
  [/^\*\*Server nodes\*\*/, 'server'],
  [/^\*\*Workers\*\*/, 'worker'],
]

export const parseConfigTables = (readme: string): ConfigTables => {
  const start = readme.search(/^## Configuration\s*$/m)
  if (start < 0) throw new Error('README.md has no "## Configuration" section')
  const rest = readme.slice(start + 1)
  const end = rest.search(/^## /m)
  const section = end < 0 ? rest : rest.slice(0, end)

  const tables: Record<keyof ConfigTables, Set<string>> = {
    shared: new Set(),
    server: new Set(),
    worker: new Set(),
  }
  let current: keyof ConfigTables | null = null
  for (const line of section.split('\n')) {
    const heading = TABLE_OF.find(([re]) => re.test(line))
    if (heading) {
      current = heading[1]
      continue
    }
    if (current === null || !line.startsWith('|')) continue
    // The first cell names the variable(s): `PORT` / `HOST`, `S3_ACCESS_KEY_ID` / `S3_SECRET_…`.
    const firstCell = line.split('|')[1] ?? ''
    for (const m of firstCell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) tables[current].add(m[1]!)
  }
  for (const [name, vars] of Object.entries(tables)) {
    if (vars.size === 0) throw new Error(`README.md: no variables found in the ${name} table`)
  }
  return tables
}
