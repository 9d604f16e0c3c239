export * from './auth.js'
export * from './connection.js'
export * from './metrics.js'
export * from './runtime.js'
export * from './server.js'
export * from './uws.js'
export {
  describeRegistration,
  mountHttpApi,
  type HttpApiOptions,
  type HttpRoute,
} from './http-api.js'
export { OPENAPI_PATH, openApiDocument, type OpenApiDocument } from './openapi.js'
