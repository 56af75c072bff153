export * from "./errors.ts"
export * from "./kekProvider.ts"
export * from "./sidecarFile.ts"
