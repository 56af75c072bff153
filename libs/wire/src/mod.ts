export * as ApiError from "./apiError.ts"
