// The recovery and history operations: see the modules for each.
export { parseTime, formatTime } from './time.js'
export {
  docToJSON,
  rootsToJSON,
  inferRootKind,
  type RootKind,
  type Json,
} from '@streambed/protocol'
export { restoreUpdate } from './restore-content.js'
export * from './history.js'
export * from './documents.js'
export * from './inspect.js'
export * from './backup-target.js'
export * from './backup.js'
export * from './manifest.js'
export * from './restore.js'
export * from './verify.js'
export * from './replay.js'
export * from './export.js'
export * from './maintenance.js'
export * from './operations.js'
