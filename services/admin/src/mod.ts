export * from "./busConfig.ts"
