export * from "./classify.ts"
export * from "./endpoints.ts"
export * from "./payloads.ts"
export * from "./runner.ts"
