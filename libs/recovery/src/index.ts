// The recovery and history operations: see the modules for each.
export { parseTime, formatTime } from './time.js'
export { docToJSON, rootsToJSON, inferRootKind, type RootKind, type Json } from './doc-json.js'
export { restoreUpdate } from './restore-content.js'
export * from './history.js'
