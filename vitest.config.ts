import { defineConfig } from 'vitest/config'

export default defineConfig({
  // Workspace packages resolve to their TypeScript source: the "streambed-source" export condition,
  // a name of our own (@hocuspocus/provider publishes a "source" condition pointing at its .ts).
  resolve: { conditions: ['streambed-source'] },
  ssr: { resolve: { conditions: ['streambed-source'] } },
  test: {
    include: [
      '{apps,libs}/*/src/**/*.test.ts',
      'bench/src/**/*.test.ts',
      'infra/tests/src/**/*.test.ts',
    ],
    // Child processes and the native uWebSockets.js addon: processes, not worker threads.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
})
