export * from './config.js'
export * from './signature.js'
export * from './webhooks.js'
