export * from './jobs.js'
