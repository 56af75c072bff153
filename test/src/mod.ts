export * from "./natsFixture.ts"
