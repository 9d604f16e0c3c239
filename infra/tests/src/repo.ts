import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root (this file is infra/tests/src/repo.ts). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')

export const repoPath = (...parts: string[]): string => join(repoRoot, ...parts)

export const readRepoFile = (...parts: string[]): string => readFileSync(repoPath(...parts), 'utf8')

export type JsonObject = { [key: string]: unknown }

export const isObject = (v: unknown): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v)
