#!/usr/bin/env node
// The `streambed` command: runs the compiled CLI (npm run build). During development and in tests
// the TypeScript source runs directly: node --conditions=streambed-source --import tsx apps/cli/src/main.ts
import '../dist/main.js'
