export * from "./endpoint.ts"
export * from "./registry.ts"
