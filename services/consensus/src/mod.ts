// @ekv/consensus: what other packages (tests, runners, the lifecycle work)
// use of the consensus service. The process itself is main.ts.
export { ConfigError, type ConsensusConfig, loadConfig } from "./config.ts"
export { Applier, type ApplyResult, type EntryOutcome } from "./fsm/applier.ts"
export {
  type DispatchOutcome,
  type DispatchRequest,
  type EncryptionDispatcher,
  keystoreUnavailableDispatcher,
} from "./fsm/encryptionDispatcher.ts"
export { type FaultInjector, type HaltInfo, noFaults, testFaultInjector } from "./fsm/halt.ts"
export { cleartextSealer, OpenFailure, storageKeyOf, type ValueSealer } from "./fsm/valueSealer.ts"
export { FORWARDED_HEADER, internalAdminSubject } from "./kv/forward.ts"
export { type NodeStatus, NotLeader, RaftNode, type RaftNodeOptions } from "./node/raftNode.ts"
export { type OpenedStorage, openStorage, RefuseStart } from "./node/storage.ts"
export { decodeFrame, decodeMessage, encodeFrame, encodeMessage } from "./transport/raftMessageCodec.ts"
