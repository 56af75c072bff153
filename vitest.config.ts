import { defineConfig } from "vitest/config"

// Two projects: `unit` (pure code, fast, no processes) and `integration`
// (real nats-server / LevelDB / child processes / containers).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["libs/*/test/**/*.test.ts", "services/*/test/unit/**/*.test.ts"],
          testTimeout: 120_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["services/*/test/integration/**/*.test.ts", "test/integration/**/*.test.ts"],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
})
