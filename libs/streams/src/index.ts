export * from './keys.js'
export * from './redis.js'
export * from './channel.js'
export * from './tail.js'
export * from './doc-streams.js'
export * from './doc-read.js'
export * from './awareness-store.js'
export * from './node-registry.js'
export * from './task-queue.js'
export * from './restore-tail.js'
export * from './delete-doc.js'
export * from './config.js'
// Stream ids are defined in common (storage orders watermarks too); re-exported as part of the
// streams API.
export {
  type StreamId,
  ZERO_ID,
  compareIds,
  idTimeMs,
  isStreamId,
  maxId,
  nextId,
  parseStreamId,
} from '@streambed/common'
export * from './revocations.js'
