// At-rest audits for end-to-end suites (SPEC §2.4–§2.5, CONTRACT §7):
//
// - scanForBytes: every byte of every file under some directories, searched
//   for given byte strings. LevelDB files are also decoded (table data blocks
//   Snappy-decompressed and their prefix-compressed keys rebuilt; write-ahead
//   logs and manifests reassembled from their 32 KiB fragments), so a needle
//   hidden by compression or a block boundary is still found.
// - collectEnvelopes: every storage envelope of a node's state machine (its
//   LevelDB and its snapshot files) and every raft envelope of its Raft log,
//   with (key_id, nonce, bytes); checkNonceReuse finds a (key_id, nonce) pair
//   with two different envelopes.
// - registryRows / readSidecarFile / replicatedSidecar: the keystore's writer
//   registry and sidecar, for identity checks between nodes.
//
// LevelDB directories are copied to a temporary directory before they are
// opened (opening writes to a LevelDB), so the audited bytes stay untouched;
// stop the node's processes first for a consistent view.
import { createHash } from "node:crypto"
import { cp, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { envelopeHeader, fullNodeId, nodeId16 as nodeId16Of } from "@ekv/crypto"
import { ClassicLevel } from "classic-level"
import { Result } from "effect"
import { decompress as snappyDecompress } from "../../libs/crypto/src/snappy.ts"
import { decodeEntry } from "../../services/consensus/src/raftLog/logRecord.ts"
import { decodeVersionKey, VERSION_SPACE } from "../../services/consensus/src/stateMachine/versionKey.ts"

// ---------------------------------------------------------------------------
// byte scans

export interface Needle {
  /** What the needle is (shown in findings), e.g. the user key it belongs to. */
  readonly label: string
  readonly bytes: Uint8Array
}

export interface ByteHit {
  readonly needle: string
  readonly file: string
  /** Offset in the file (raw), or in the decoded unit named by `where`. */
  readonly offset: number
  /** "raw", or a decoded unit: "table-block@<file offset>", "table-entry@<block>#<n>", "log-record#<n>". */
  readonly where: string
}

export interface ScanReport {
  readonly files: number
  readonly bytes: number
  readonly hits: ByteHit[]
  /** LevelDB files whose structure did not parse (their raw bytes were still scanned). */
  readonly unparsed: string[]
}

/** Every regular file under `dir`, recursively (missing dir → none). */
export const listFiles = async (dir: string): Promise<string[]> => {
  const out: string[] = []
  const walk = async (d: string) => {
    let entries: import("node:fs").Dirent[]
    try {
      entries = await readdir(d, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      const p = join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile()) out.push(p)
    }
  }
  await walk(dir)
  return out.sort()
}

const findAll = (hay: Buffer, needle: Buffer): number[] => {
  const out: number[] = []
  if (needle.length === 0) return out
  let at = hay.indexOf(needle)
  while (at !== -1) {
    out.push(at)
    at = hay.indexOf(needle, at + 1)
  }
  return out
}

const readVarint = (b: Uint8Array, pos: number): [number, number] => {
  let v = 0
  for (let shift = 0; shift < 35; shift += 7) {
    const x = b[pos++]
    if (x === undefined) throw new Error("varint past end")
    v += (x & 0x7f) * 2 ** shift
    if (x < 0x80) return [v, pos]
  }
  throw new Error("varint too long")
}

class VarintReader {
  readonly bytes: Uint8Array
  pos: number
  constructor(bytes: Uint8Array, pos: number) {
    this.bytes = bytes
    this.pos = pos
  }
  next(): number {
    const [v, p] = readVarint(this.bytes, this.pos)
    this.pos = p
    return v
  }
}

const TABLE_MAGIC = Buffer.from([0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb])

/** Entries of one LevelDB block (keys rebuilt from their shared prefixes). */
const blockEntries = (block: Uint8Array): { key: Uint8Array; value: Uint8Array }[] => {
  if (block.length < 4) throw new Error("block too short")
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength)
  const restarts = view.getUint32(block.length - 4, true)
  const end = block.length - 4 - 4 * restarts
  if (end < 0) throw new Error("bad restart count")
  const out: { key: Uint8Array; value: Uint8Array }[] = []
  let pos = 0
  let last = new Uint8Array(0)
  while (pos < end) {
    const r = new VarintReader(block, pos)
    const shared = r.next()
    const unshared = r.next()
    const vlen = r.next()
    pos = r.pos
    if (shared > last.length || pos + unshared + vlen > end) throw new Error("bad block entry")
    const key = new Uint8Array(shared + unshared)
    key.set(last.subarray(0, shared), 0)
    key.set(block.subarray(pos, pos + unshared), shared)
    pos += unshared
    const value = block.subarray(pos, pos + vlen)
    pos += vlen
    out.push({ key, value })
    last = key
  }
  return out
}

/** Reads the block at a handle: contents (decompressed when type 1 = Snappy). */
const readTableBlock = (file: Uint8Array, offset: number, size: number): Uint8Array => {
  if (offset + size + 5 > file.length) throw new Error("block handle past end of file")
  const raw = file.subarray(offset, offset + size)
  const type = file[offset + size]
  if (type === 0) return raw
  if (type === 1) {
    const d = snappyDecompress(raw)
    if (d === undefined) throw new Error(`block at ${offset} does not decompress`)
    return d
  }
  throw new Error(`unknown block compression ${type}`)
}

/** The decoded units of a LevelDB table (.ldb/.sst): each data block and each of its entries. */
const tableUnits = (file: Uint8Array): { where: string; bytes: Uint8Array }[] => {
  if (file.length < 48) throw new Error("table shorter than its footer")
  const footer = file.subarray(file.length - 48)
  if (!Buffer.from(footer.subarray(40)).equals(TABLE_MAGIC)) throw new Error("no table magic")
  const fr = new VarintReader(footer, 0)
  const metaOff = fr.next()
  const metaSize = fr.next()
  const idxOff = fr.next()
  const idxSize = fr.next()
  const units: { where: string; bytes: Uint8Array }[] = []
  const addBlock = (off: number, size: number) => {
    const block = readTableBlock(file, off, size)
    units.push({ where: `table-block@${off}`, bytes: block })
    blockEntries(block).forEach((e, i) => {
      const both = new Uint8Array(e.key.length + e.value.length)
      both.set(e.key, 0)
      both.set(e.value, e.key.length)
      units.push({ where: `table-entry@${off}#${i}`, bytes: both })
    })
  }
  addBlock(metaOff, metaSize)
  const index = readTableBlock(file, idxOff, idxSize)
  for (const e of blockEntries(index)) {
    const hr = new VarintReader(e.value, 0)
    const off = hr.next()
    addBlock(off, hr.next())
  }
  return units
}

/** Logical records of a LevelDB log-format file (write-ahead .log, MANIFEST), fragments reassembled. */
const logRecords = (file: Uint8Array): { where: string; bytes: Uint8Array }[] => {
  const BLOCK = 32_768
  const out: { where: string; bytes: Uint8Array }[] = []
  let pending: Uint8Array[] = []
  let pos = 0
  let n = 0
  while (pos + 7 <= file.length) {
    const left = BLOCK - (pos % BLOCK)
    if (left < 7) {
      pos += left
      continue
    }
    const len = file[pos + 4]! | (file[pos + 5]! << 8)
    const type = file[pos + 6]!
    if (type === 0 && len === 0) {
      // zero padding (preallocated or the rest of a block)
      pos += left
      continue
    }
    const data = file.subarray(pos + 7, pos + 7 + len)
    pos += 7 + len
    if (type === 1) out.push({ where: `log-record#${n++}`, bytes: data })
    else if (type === 2) pending = [data]
    else if (type === 3) pending.push(data)
    else if (type === 4) {
      pending.push(data)
      out.push({ where: `log-record#${n++}`, bytes: Buffer.concat(pending) })
      pending = []
    } else throw new Error(`log record type ${type} at ${pos}`)
  }
  return out
}

/**
 * Scans every file under `dirs` (recursively) for every needle: the raw
 * bytes, and for LevelDB tables and logs also their decoded units.
 */
export const scanForBytes = async (
  dirs: readonly string[],
  needles: readonly Needle[],
): Promise<ScanReport> => {
  const hits: ByteHit[] = []
  const unparsed: string[] = []
  let files = 0
  let bytes = 0
  const ns = needles.map((n) => ({ label: n.label, bytes: Buffer.from(n.bytes) }))
  for (const dir of dirs) {
    for (const file of await listFiles(dir)) {
      const content = await readFile(file).catch(() => null)
      if (content === null) continue
      files++
      bytes += content.length
      const seen = new Set<string>()
      const scan = (where: string, buf: Buffer) => {
        for (const n of ns)
          for (const offset of findAll(buf, n.bytes)) {
            // one finding per needle per file and unit kind is enough to act on
            const k = `${n.label}|${where === "raw" ? "raw" : where.split("@")[0]?.split("#")[0]}`
            if (seen.has(k)) continue
            seen.add(k)
            hits.push({ needle: n.label, file, offset, where })
          }
      }
      scan("raw", content)
      const base = file.split("/").pop() ?? ""
      try {
        if (/\.(ldb|sst)$/.test(base))
          for (const u of tableUnits(content)) scan(u.where, Buffer.from(u.bytes))
        else if (/\.log$/.test(base) || /^MANIFEST-/.test(base))
          for (const u of logRecords(content)) scan(u.where, Buffer.from(u.bytes))
      } catch (e) {
        unparsed.push(`${file}: ${e instanceof Error ? e.message : String(e)}`)
      }
    }
  }
  return { files, bytes, hits, unparsed }
}

/** A readable summary of hits (for assertion messages). */
export const describeHits = (hits: readonly ByteHit[], max = 20): string =>
  hits
    .slice(0, max)
    .map((h) => `${h.needle} in ${h.file} at ${h.where} offset ${h.offset}`)
    .join("\n") + (hits.length > max ? `\n... and ${hits.length - max} more` : "")

// ---------------------------------------------------------------------------
// LevelDB access (on a copy)

/** Copies a LevelDB directory to a temp dir, opens the copy, runs `f`, removes the copy. */
export const withLevelCopy = async <A>(
  dir: string,
  encoding: "view" | "utf8",
  f: (db: ClassicLevel<Uint8Array | string, Uint8Array | string>) => Promise<A>,
): Promise<A> => {
  const tmp = await mkdtemp(join(tmpdir(), "ekv-audit-"))
  try {
    const copy = join(tmp, "db")
    await cp(dir, copy, { recursive: true })
    await rm(join(copy, "LOCK"), { force: true })
    const db = new ClassicLevel<Uint8Array | string, Uint8Array | string>(copy, {
      keyEncoding: encoding,
      valueEncoding: encoding,
      createIfMissing: false,
    })
    await db.open()
    try {
      return await f(db)
    } finally {
      await db.close()
    }
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

const exists = async (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  )

// ---------------------------------------------------------------------------
// envelopes

export interface EnvelopeRecord {
  readonly kind: "storage" | "raft"
  /** Node whose files hold it. */
  readonly node: string
  /** Where: `state-db <key>@<version>`, `snapshot <file> <key>@<version>`, `raft-log #<index>`. */
  readonly source: string
  readonly keyId: number
  readonly nonce: string
  readonly nodeId16: number
  readonly localEpoch: number
  readonly writeCount: bigint
  /** SHA-256 of the envelope bytes (hex). */
  readonly digest: string
  readonly length: number
  /** The storage key / version (storage envelopes) or log index (raft envelopes). */
  readonly userKey?: string
  readonly index: number
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

const envelopeRecord = (
  kind: "storage" | "raft",
  node: string,
  source: string,
  envelope: Uint8Array,
  index: number,
  userKey?: string,
): EnvelopeRecord | string => {
  const h = envelopeHeader(envelope)
  if (Result.isFailure(h)) return `${source}: ${h.failure.message}`
  const n = h.success.nonce
  const view = new DataView(n.buffer, n.byteOffset, n.byteLength)
  return {
    kind,
    node,
    source,
    keyId: h.success.keyId,
    nonce: hex(n),
    nodeId16: view.getUint16(0, false),
    localEpoch: view.getUint16(2, false),
    writeCount: view.getBigUint64(4, false),
    digest: createHash("sha256").update(envelope).digest("hex"),
    length: envelope.length,
    index,
    ...(userKey === undefined ? {} : { userKey }),
  }
}

export interface StoredVersion {
  readonly key: string
  readonly index: number
  /** The header's encryption_state (0 cleartext, 1 storage envelope), or -1 for a tombstone. */
  readonly state: number
  /** Bytes after the header (an envelope when state = 1). */
  readonly payload: Uint8Array
}

/** Every MVCC version record in the state-machine LevelDB at `dbDir` (read from a copy). */
export const stateVersions = async (dbDir: string): Promise<StoredVersion[]> => {
  if (!(await exists(dbDir))) return []
  return withLevelCopy(dbDir, "view", async (db) => {
    const out: StoredVersion[] = []
    for await (const [k, v] of db.iterator({
      gte: Uint8Array.of(VERSION_SPACE),
      lt: Uint8Array.of(VERSION_SPACE + 1),
    })) {
      out.push(versionOf(k as Uint8Array, v as Uint8Array))
    }
    return out
  })
}

const versionOf = (k: Uint8Array, v: Uint8Array): StoredVersion => {
  const d = decodeVersionKey(k)
  const h = v[0] ?? 0
  return {
    key: d.key,
    index: d.index,
    state: (h & 1) === 1 ? -1 : (h >> 1) & 3,
    payload: Uint8Array.from(v.subarray(1)),
  }
}

/** Version records of a state-machine snapshot file (CONTRACT: consensus/state/snapshots). */
export const snapshotVersions = async (file: string): Promise<StoredVersion[]> => {
  const b = await readFile(file)
  if (b.length < 24 + 40 || b.subarray(0, 8).toString("latin1") !== "EKVSNAP\0") return []
  const out: StoredVersion[] = []
  let pos = 24
  for (;;) {
    if (pos + 4 > b.length) break
    const klen = b.readUInt32BE(pos)
    pos += 4
    if (klen === 0) break
    const key = b.subarray(pos, pos + klen)
    pos += klen
    const vlen = b.readUInt32BE(pos)
    pos += 4
    const value = b.subarray(pos, pos + vlen)
    pos += vlen
    if (key[0] === VERSION_SPACE) out.push(versionOf(key, value))
  }
  return out
}

/** The applied index the state machine persisted (`0x00 0x01` → BE u64), read from a copy; 0 when absent. */
export const stateAppliedIndex = async (stateDir: string): Promise<number> => {
  const dbDir = join(stateDir, "db")
  if (!(await exists(dbDir))) return 0
  return withLevelCopy(dbDir, "view", async (db) => {
    const v = (await db.get(Uint8Array.of(0x00, 0x01))) as Uint8Array | undefined
    if (v === undefined || v.length !== 8) return 0
    return Number(new DataView(v.buffer, v.byteOffset, v.byteLength).getBigUint64(0))
  })
}

export interface RaftLogEntry {
  readonly index: number
  readonly term: number
  /** 0 Normal, 1 Empty, 2 ConfChange (services/consensus/src/node/storage.ts). */
  readonly type: number
  readonly data: Uint8Array
}

/** Every entry of the Raft log LevelDB at `raftDir` (read from a copy; checksums verified). */
export const raftLogEntries = async (raftDir: string): Promise<RaftLogEntry[]> => {
  if (!(await exists(raftDir))) return []
  return withLevelCopy(raftDir, "view", async (db) => {
    const out: RaftLogEntry[] = []
    for await (const [k, v] of db.iterator({ gte: Uint8Array.of(0x65), lt: Uint8Array.of(0x66) })) {
      const key = k as Uint8Array
      const index = Number(new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(1))
      const e = decodeEntry(index, v as Uint8Array)
      out.push({ index, term: e.term, type: e.type, data: e.data })
    }
    return out
  })
}

export interface NodeDirs {
  readonly node: string
  /** `<data>/<node>/consensus/state` */
  readonly stateDir: string
  /** `<data>/<node>/consensus/raft` */
  readonly raftDir: string
}

export interface EnvelopeCollection {
  readonly envelopes: EnvelopeRecord[]
  /** Records whose header did not parse (each a finding by itself). */
  readonly malformed: string[]
  /** Cleartext versions per node (state = 0), with their index. */
  readonly cleartext: { node: string; key: string; index: number; source: string }[]
  /** Unsealed user entries (tag 0x00/0x01) per node, with their index. */
  readonly unsealedEntries: { node: string; index: number; tag: number }[]
}

/** Every storage envelope (state DB + snapshot files) and raft envelope (Raft log) of the given nodes. */
export const collectEnvelopes = async (nodes: readonly NodeDirs[]): Promise<EnvelopeCollection> => {
  const envelopes: EnvelopeRecord[] = []
  const malformed: string[] = []
  const cleartext: EnvelopeCollection["cleartext"] = []
  const unsealedEntries: EnvelopeCollection["unsealedEntries"] = []
  const add = (r: EnvelopeRecord | string) => {
    if (typeof r === "string") malformed.push(r)
    else envelopes.push(r)
  }
  for (const n of nodes) {
    const dbDir = join(n.stateDir, "db")
    for (const v of await stateVersions(dbDir)) {
      const src = `state-db ${JSON.stringify(v.key)}@${v.index}`
      if (v.state === 1) add(envelopeRecord("storage", n.node, src, v.payload, v.index, v.key))
      else if (v.state === 0) cleartext.push({ node: n.node, key: v.key, index: v.index, source: src })
    }
    for (const f of await listFiles(join(n.stateDir, "snapshots"))) {
      for (const v of await snapshotVersions(f).catch(() => [])) {
        const src = `snapshot ${f} ${JSON.stringify(v.key)}@${v.index}`
        if (v.state === 1) add(envelopeRecord("storage", n.node, src, v.payload, v.index, v.key))
      }
    }
    for (const e of await raftLogEntries(n.raftDir)) {
      if (e.type !== 0 || e.data.length === 0) continue
      const tag = e.data[0]!
      if (tag === 0x06)
        add(envelopeRecord("raft", n.node, `raft-log #${e.index}`, e.data.subarray(1), e.index))
      else if (tag === 0x00 || tag === 0x01) unsealedEntries.push({ node: n.node, index: e.index, tag })
    }
  }
  return { envelopes, malformed, cleartext, unsealedEntries }
}

export interface NonceReuse {
  readonly keyId: number
  readonly nonce: string
  readonly first: EnvelopeRecord
  readonly second: EnvelopeRecord
}

/** Every (key_id, nonce) pair that occurs with two different envelopes (same bytes = a copy, allowed). */
export const checkNonceReuse = (envelopes: readonly EnvelopeRecord[]): NonceReuse[] => {
  const seen = new Map<string, EnvelopeRecord>()
  const out: NonceReuse[] = []
  for (const e of envelopes) {
    const k = `${e.keyId}:${e.nonce}`
    const prev = seen.get(k)
    if (prev === undefined) seen.set(k, e)
    else if (prev.digest !== e.digest) out.push({ keyId: e.keyId, nonce: e.nonce, first: prev, second: e })
  }
  return out
}

export const describeReuse = (r: readonly NonceReuse[], max = 10): string =>
  r
    .slice(0, max)
    .map(
      (x) =>
        `key ${x.keyId} nonce ${x.nonce}: ${x.first.node} ${x.first.source} vs ${x.second.node} ${x.second.source}`,
    )
    .join("\n")

// ---------------------------------------------------------------------------
// keystore state

export interface RegistryRow {
  readonly dek_id: number
  readonly node_id16: number
  readonly full_node_id: string
  readonly first_seen_local_epoch: number
  readonly last_seen_local_epoch: number
  readonly last_session_id: string | null
  readonly raft_index: number
}

/** The writer registry rows (`!encryption|writers|<dek>|<id16>`) of the keystore dir (read from a copy), sorted. */
export const registryRows = async (keystoreDir: string): Promise<RegistryRow[]> => {
  const dir = join(keystoreDir, "registry")
  if (!(await exists(dir))) return []
  const prefix = "!encryption|writers|"
  return withLevelCopy(dir, "utf8", async (db) => {
    const out: RegistryRow[] = []
    for await (const [k, v] of db.iterator({ gte: prefix, lt: `${prefix}\uffff` })) {
      const [dek, id16] = (k as string).slice(prefix.length).split("|")
      const row = JSON.parse(v as string) as Omit<RegistryRow, "dek_id" | "node_id16">
      out.push({ dek_id: Number(dek), node_id16: Number(id16), ...row })
    }
    return out.sort((a, b) => a.dek_id - b.dek_id || a.node_id16 - b.node_id16)
  })
}

export interface SidecarFile {
  readonly version: number
  readonly raft_applied_index: number
  readonly storage_envelope_active: boolean
  readonly raft_envelope_cutover_index: number
  readonly active: { readonly storage: number; readonly raft: number }
  readonly keys: Readonly<
    Record<
      string,
      { purpose: "storage" | "raft"; wrapped: string; created: string; local_epoch: number; retired: boolean }
    >
  >
}

export const readSidecarFile = async (path: string): Promise<SidecarFile | undefined> => {
  const text = await readFile(path, "utf8").catch(() => undefined)
  return text === undefined ? undefined : (JSON.parse(text) as SidecarFile)
}

/**
 * The replicated part of a sidecar (SPEC §4.2/§4.6): everything but each
 * DEK's local_epoch (node-local, §6) and its `created` stamp.
 */
export const replicatedSidecar = (s: SidecarFile) => ({
  raft_applied_index: s.raft_applied_index,
  storage_envelope_active: s.storage_envelope_active,
  raft_envelope_cutover_index: s.raft_envelope_cutover_index,
  active: s.active,
  keys: Object.fromEntries(
    Object.keys(s.keys)
      .sort()
      .map((id) => {
        const k = s.keys[id]!
        return [id, { purpose: k.purpose, wrapped: k.wrapped, retired: k.retired }]
      }),
  ),
})

/** node_id16 of a node id (CONTRACT §7). */
export const nodeId16 = (node: string): number => nodeId16Of(fullNodeId(node))
