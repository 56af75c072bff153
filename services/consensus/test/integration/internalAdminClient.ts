// The admin user's calls to a real cluster's internal subjects
// (`<p>.internal.<n>.admin.*`, CONTRACT §9), as the encryption integration
// tests drive them: a failed call throws with its Nats-Service-Error-Code.
import { fullNodeId } from "@ekv/crypto"
import { encodeEntry, Tag } from "@ekv/wire"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import type { EkvSystem } from "../../../../test/src/system.ts"

const enc = new TextEncoder()
const dec = new TextDecoder()

export interface Proposed {
  index: number
  status: string
}

/** Looks up one purpose's DEK of a `generate-dek` reply, as an entry's `NewDek`. */
export type GeneratedDeks = (purpose: string) => { key_id: never; wrapped: Buffer }

/** A batch that registers every one of `nodes` at local_epoch 0. */
export const writersAt0 = (nodes: readonly string[]) =>
  nodes.map((n) => ({ full_node_id: fullNodeId(n), local_epoch: 0 as never }))

export interface KeystoreExport {
  raft_applied_index: number
  active: { storage: number; raft: number }
  keys: { key_id: number; purpose: string; wrapped: string; retired: boolean; created: string }[]
  writers: { dek_id: number; node_id16: number; last_seen_local_epoch: number; full_node_id: string }[]
}

/** The replicated part of a keystore export (`log.state`): everything but `created`. */
export const replicatedExport = (e: KeystoreExport) => ({
  ...e,
  keys: e.keys
    .map((k) => ({ key_id: k.key_id, purpose: k.purpose, wrapped: k.wrapped, retired: k.retired }))
    .sort((a, b) => a.key_id - b.key_id),
  writers: [...e.writers].sort((a, b) => a.dek_id - b.dek_id || a.node_id16 - b.node_id16),
})

export class InternalAdminClient {
  readonly nc: NatsConnection

  constructor(nc: NatsConnection) {
    this.nc = nc
  }

  /** Connects to `sys`'s bus as the admin user. */
  static async connect(sys: EkvSystem): Promise<InternalAdminClient> {
    return new InternalAdminClient(
      await connect({
        servers: sys.nats.servers,
        user: "admin",
        pass: sys.passwords.admin ?? "",
        inboxPrefix: "_INBOX.admin",
      }),
    )
  }

  close(): Promise<void> {
    return this.nc.close()
  }

  /** The JSON reply and its service error code ("" on success). */
  async reply(
    subject: string,
    body: unknown,
    timeout = 20_000,
  ): Promise<{ code: string; json: Record<string, unknown> }> {
    const m = await this.nc.request(subject, enc.encode(JSON.stringify(body)), { timeout })
    const code = m.headers?.get("Nats-Service-Error-Code") ?? ""
    const json = JSON.parse(dec.decode(m.data)) as Record<string, unknown>
    return { code, json }
  }

  /** The JSON reply; an error reply throws `<label>: <code> <body>`. */
  async request(subject: string, body: unknown, timeout = 20_000, label = subject) {
    const { code, json } = await this.reply(subject, body, timeout)
    if (code !== "") throw new Error(`${label}: ${code} ${JSON.stringify(json)}`)
    return json
  }

  /** `<p>.internal.<node>.admin.<sub>`, e.g. `sub` = "encryption.state". */
  internal(node: string, sub: string, body: unknown, timeout = 20_000) {
    return this.request(`ekv.internal.${node}.admin.${sub}`, body, timeout, sub)
  }

  /** The keystore export `node` serves (`log.state`). */
  async logState(node: string): Promise<KeystoreExport> {
    return (await this.internal(node, "log.state", {})) as unknown as KeystoreExport
  }

  /** One `encryption.propose` of an encoded entry through `leader`. */
  async proposeOnce(leader: string, entry: Uint8Array, timeout = 20_000): Promise<Proposed> {
    const body = { entry: Buffer.from(entry).toString("base64") }
    return (await this.internal(leader, "encryption.propose", body, timeout)) as unknown as Proposed
  }

  /** Proposes through `leader`, retrying while its writer session opens (ApplierNotReady) or it is unavailable. */
  async propose(leader: string, entry: Uint8Array): Promise<Proposed> {
    for (let i = 0; ; i++) {
      try {
        return await this.proposeOnce(leader, entry, 60_000)
      } catch (e) {
        if (i > 50 || !/ApplierNotReady|503/.test(String(e))) throw e
        await new Promise((r) => setTimeout(r, 200))
      }
    }
  }

  async generate(leader: string, purposes: ("storage" | "raft")[]): Promise<GeneratedDeks> {
    const g = (await this.internal(leader, "encryption.generate-dek", { purposes })) as {
      deks: { purpose: string; key_id: number; wrapped: string }[]
    }
    return (p: string) => {
      const d = g.deks.find((x) => x.purpose === p)!
      return { key_id: d.key_id as never, wrapped: Buffer.from(d.wrapped, "base64") }
    }
  }

  /** Bootstrap (fresh storage and raft DEKs, `nodes` at epoch 0), then enable-storage-envelope. */
  async bootstrapWithStorageEnvelope(leader: string, nodes: readonly string[]) {
    const dek = await this.generate(leader, ["storage", "raft"])
    const writers = writersAt0(nodes)
    const bootstrap = await this.propose(
      leader,
      encodeEntry({ tag: Tag.Bootstrap, bootstrap: { storage: dek("storage"), raft: dek("raft"), writers } }),
    )
    const storageEnvelope = await this.propose(
      leader,
      encodeEntry({ tag: Tag.Control, control: { kind: "enable-storage-envelope" } }),
    )
    return { dek, writers, bootstrap, storageEnvelope }
  }

  /** A fresh DEK of `purpose` and its rotate-dek entry with `writers` as the batch. */
  async rotateDek(leader: string, purpose: "storage" | "raft", writers: ReturnType<typeof writersAt0>) {
    const dek = await this.generate(leader, [purpose])
    const proposed = await this.propose(
      leader,
      encodeEntry({ tag: Tag.Control, control: { kind: "rotate-dek", purpose, dek: dek(purpose), writers } }),
    )
    return { dek, proposed }
  }

  /** Moves leadership to `node`, asking whoever leads until it does. */
  async transferTo(sys: EkvSystem, node: string): Promise<void> {
    await sys.until(
      `leadership at ${node}`,
      async () => {
        const leader = await sys.waitForLeader()
        if (leader === node) return true
        await this.internal(leader, "cluster.transfer-leader", { node }, 30_000).catch(() => undefined)
        return undefined
      },
      60_000,
      500,
    )
  }
}
