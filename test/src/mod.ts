export * from "./natsFixture.ts"
export * from "./processCluster.ts"
