export * from "./natsFixture.ts"
export * from "./processCluster.ts"
export * from "./system.ts"
