export * from './messages.js'
export * from './awareness.js'
export * from './updates.js'
export * from './doc-name.js'
