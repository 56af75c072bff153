// One Endpoint (request + reply codecs, built once) per subject of
// CONTRACT.md §2–§4, keyed like `subjects(prefix)`.
import { Result } from "effect"
import * as A from "./admin.ts"
import * as K from "./kv.ts"
import * as F from "./kvFastCodec.ts"
import * as N from "./node.ts"
import { checkFullNodeId, checkWriterIds, makeEndpoint } from "./requestDecoder.ts"

export const kvApi = {
  put: makeEndpoint(K.KvPutRequest, K.KvPutReply, { fast: F.fastPutRequest, fastReply: F.fastIndexReply }),
  get: makeEndpoint(K.KvGetRequest, K.KvGetReply, { fast: F.fastGetRequest, fastReply: F.fastGetReply }),
  delete: makeEndpoint(K.KvDeleteRequest, K.KvDeleteReply, { fast: F.fastDeleteRequest }),
  batch: makeEndpoint(K.KvBatchRequest, K.KvBatchReply, { fastReply: F.fastIndexReply }),
  scan: makeEndpoint(K.KvScanRequest, K.KvScanReply),
}

export const encryptionApi = {
  status: makeEndpoint(A.EncryptionStatusRequest, A.EncryptionStatusReply),
  capability: makeEndpoint(A.CapabilityRequest, A.CapabilityReply),
  sidecarState: makeEndpoint(A.SidecarStateRequest, A.SidecarStateReply),
  bootstrap: makeEndpoint(A.BootstrapRequest, A.BootstrapReply, {
    check: (r) => ("writers" in r ? checkWriterIds(r.writers) : Result.succeed(undefined)),
  }),
  registerWriter: makeEndpoint(A.RegisterWriterRequest, A.RegisterWriterReply, {
    check: (r) => checkFullNodeId(r.full_node_id),
  }),
  rotateDek: makeEndpoint(A.RotateDekRequest, A.RotateDekReply),
  rewrapDeks: makeEndpoint(A.RewrapDeksRequest, A.RewrapDeksReply),
  retireDek: makeEndpoint(A.RetireDekRequest, A.RetireDekReply),
  enableStorageEnvelope: makeEndpoint(A.EnableStorageEnvelopeRequest, A.EnableStorageEnvelopeReply),
  enableRaftEnvelope: makeEndpoint(A.EnableRaftEnvelopeRequest, A.EnableRaftEnvelopeReply),
  resyncSidecar: makeEndpoint(A.ResyncSidecarRequest, A.ResyncSidecarReply),
  rewrite: makeEndpoint(A.RewriteRequest, A.RewriteReply),
}

export const clusterApi = {
  status: makeEndpoint(A.ClusterStatusRequest, A.ClusterStatusReply),
  addLearner: makeEndpoint(A.AddLearnerRequest, A.AddLearnerReply),
  promote: makeEndpoint(A.PromoteRequest, A.PromoteReply),
  remove: makeEndpoint(A.RemoveRequest, A.RemoveReply),
  transferLeader: makeEndpoint(A.TransferLeaderRequest, A.TransferLeaderReply),
  snapshot: makeEndpoint(A.SnapshotRequest, A.SnapshotReply),
}

export const nodeApi = {
  health: makeEndpoint(N.NodeHealthRequest, N.NodeHealthReply),
  capability: makeEndpoint(N.NodeCapabilityRequest, N.NodeCapabilityReply),
}
