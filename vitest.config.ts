import { defineConfig } from "vitest/config"

// Three projects: `unit` (pure code, fast, no processes), `integration`
// (real nats-server / LevelDB / child processes) and `e2e` (the system from
// its Docker images, through Testcontainers).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "libs/*/test/**/*.test.ts",
            "services/*/test/unit/**/*.test.ts",
            "test/unit/**/*.test.ts",
          ],
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
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 600_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
    ],
  },
})
