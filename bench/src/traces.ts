/**
 * Editing traces for benchmarks. Real traces (automerge-paper, josephg/editing-traces) are on
 * GitHub, which this machine cannot reach; `paperLikeTrace` reproduces the shape of the
 * automerge-paper trace instead: single-character edits around a cursor that mostly moves a
 * little and sometimes jumps, with 30 % of the edits deleting (that trace: 182k inserts, 77k
 * deletes).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { repoRoot } from './stats.js'

/** A typing trace: `n` small text edits (inserts with some deletions), as separate updates. */
export const typingTrace = (n: number): Uint8Array[] => {
  const doc = new Y.Doc()
  const text = doc.getText('t')
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  let seed = 42
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  for (let i = 0; i < n; i++) {
    if (i % 7 === 6 && text.length > 10) text.delete(Math.floor(rand() * (text.length - 3)), 2)
    else
      text.insert(
        Math.floor(rand() * text.length),
        String.fromCharCode(97 + (i % 26)) + (i % 13 === 0 ? ' ' : ''),
      )
  }
  return updates
}

/** Seeded pseudo-random numbers in [0, 1). */
const random = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31

/**
 * A paper-like editing trace whose final document encodes to about `targetBytes`; one update per
 * edit. Generated once and cached in bench/.cache.
 */
export const paperLikeTrace = (targetBytes: number): Uint8Array[] => {
  const cacheDir = `${repoRoot}bench/.cache`
  const cacheFile = `${cacheDir}/paper-like-${targetBytes}.bin`
  if (existsSync(cacheFile)) {
    const decoder = decoding.createDecoder(readFileSync(cacheFile))
    const n = decoding.readVarUint(decoder)
    return Array.from({ length: n }, () => decoding.readVarUint8Array(decoder))
  }
  const doc = new Y.Doc()
  const text = doc.getText('content')
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  const rand = random(7)
  const letters = 'etaoin shrdlu cmfwyp vbgkjq xz\n'
  let cursor = 0
  for (let i = 0; ; i++) {
    const r = rand()
    if (r < 0.03)
      cursor = Math.floor(rand() * (text.length + 1)) // jump
    else if (r < 0.1)
      cursor = Math.max(0, Math.min(text.length, cursor + Math.floor(rand() * 21) - 10))
    if (rand() < 0.3 && cursor > 0) {
      text.delete(cursor - 1, 1)
      cursor--
    } else {
      text.insert(cursor, letters[Math.floor(rand() * letters.length)] as string)
      cursor++
    }
    if (i % 5000 === 4999 && Y.encodeStateAsUpdate(doc).length >= targetBytes) break
  }
  mkdirSync(cacheDir, { recursive: true })
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, updates.length)
  for (const u of updates) encoding.writeVarUint8Array(encoder, u)
  writeFileSync(cacheFile, encoding.toUint8Array(encoder))
  return updates
}

/** A document of about `bytes` bytes as one update (large paste-like inserts, for size tests). */
export const bulkDocument = (bytes: number): Uint8Array => {
  const doc = new Y.Doc()
  const text = doc.getText('content')
  const line = 'The quick brown fox jumps over the lazy dog; '.repeat(20)
  while (text.length < bytes) text.insert(text.length, line)
  return Y.encodeStateAsUpdate(doc)
}
