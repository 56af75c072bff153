export * as ApiError from "./apiError.ts"
export * from "./entryPayload.ts"
export * from "./ids.ts"
