// Nemesis runs against a real multi-process ekv system (see run.ts for what a
// run does and checks, faults.ts for the fault mix, natsCluster.ts for how
// partitions are made). docs/reliability.md describes how to run them.
export * from "./checks.ts"
export * from "./faults.ts"
export * from "./natsCluster.ts"
export * from "./run.ts"
export * from "./system.ts"
export * from "./workload.ts"
