// "@streambed/recovery/history": what a server node's history API needs (reading a document's
// versions, restoring one), without the backup, restore and job modules of the package's main
// entry, which load BullMQ and the S3 SDK.
export { parseTime, formatTime } from './time.js'
export * from './history.js'
