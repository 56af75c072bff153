// What every benchmark target provides once started, and what starting one
// needs: a run directory, free loopback ports, a place for process output.
import { spawnSync } from "node:child_process"
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"
import type { SupervisorOptions } from "../../localCluster.ts"
import type { ClientConfig } from "../clients.ts"

export const TARGET_NAMES = ["etcd", "nats-kv", "ekv-plaintext", "ekv-storage", "ekv-raft"] as const
export type TargetName = (typeof TARGET_NAMES)[number]

export interface RunningTarget {
  readonly name: TargetName
  /** One line: what runs. */
  readonly description: string
  /** When an acknowledged write is on disk (stated in the report). */
  readonly durability: string
  /** Server software version(s). */
  readonly version: string
  /** Extra facts for the report (e.g. the ekv encryption phase reached). */
  readonly facts: Readonly<Record<string, string>>
  readonly client: ClientConfig
  /** Every server process by name (their CPU time is measured per run). */
  serverProcesses(): ReadonlyArray<{ readonly name: string; readonly pid: number }>
  stop(): Promise<void>
}

export interface TargetContext {
  /** A fresh directory for this target's data and logs. */
  readonly dir: string
  readonly ports: PortAllocator
  /** Supervisor options that send process output to `<dir>/logs/<name>.log`. */
  readonly supervisor: SupervisorOptions
  readonly say: (message: string) => void
}

/** Free TCP ports on 127.0.0.1, never the same one twice in a run. */
export class PortAllocator {
  private readonly used = new Set<number>()

  async next(): Promise<number> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = await new Promise<number>((resolve, reject) => {
        const server = createServer()
        server.once("error", reject)
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          const p = typeof address === "object" && address !== null ? address.port : 0
          server.close(() => resolve(p))
        })
      })
      if (port > 0 && !this.used.has(port)) {
        this.used.add(port)
        return port
      }
    }
    throw new Error("no free loopback port")
  }
}

const TAIL_LINES = 40

export interface ProcessLogs extends SupervisorOptions {
  /** The last error-looking line a process printed (for a failure report), if any. */
  lastError(name: string): string | undefined
  close(): void
}

/** Supervisor options writing each process's lines to `<dir>/logs/<name>.log`. */
export const logToFiles = (dir: string, say: (m: string) => void): ProcessLogs => {
  const logs = join(dir, "logs")
  mkdirSync(logs, { recursive: true })
  const streams = new Map<string, WriteStream>()
  const tails = new Map<string, string[]>()
  return {
    onLine: (name, line) => {
      let s = streams.get(name)
      if (s === undefined) {
        s = createWriteStream(join(logs, `${name}.log`), { flags: "a" })
        streams.set(name, s)
      }
      s.write(`${line}\n`)
      const tail = tails.get(name) ?? []
      tail.push(line)
      if (tail.length > TAIL_LINES) tail.shift()
      tails.set(name, tail)
    },
    lastError: (name) =>
      tails
        .get(name)
        ?.findLast((l) => /error|fatal|refus|panic/i.test(l))
        ?.trim()
        .slice(0, 300),
    onUnexpectedExit: (name, how) =>
      say(`${name} exited unexpectedly (${how}); see ${join(logs, `${name}.log`)}`),
    log: () => undefined,
    close: () => {
      for (const s of streams.values()) s.end()
    },
  }
}

/** The first line `command args` prints, or `fallback`. */
export const versionLine = (command: string, args: ReadonlyArray<string>, fallback = "unknown"): string => {
  const r = spawnSync(command, [...args], { encoding: "utf8" })
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n")[0]
  return r.status === 0 && out !== undefined && out !== "" ? out.trim() : fallback
}

const onPath = (command: string): boolean => spawnSync("sh", ["-c", `command -v ${command}`]).status === 0

/**
 * Installs Debian packages when `command` is missing (the bench provisions what
 * it needs); `apt-get update` only when the plain install fails.
 */
export const ensureCommand = (
  command: string,
  packages: ReadonlyArray<string>,
  say: (m: string) => void,
): void => {
  if (onPath(command)) return
  say(`${command} is missing: apt-get install -y ${packages.join(" ")}`)
  const install = () => spawnSync("apt-get", ["install", "-y", ...packages], { stdio: "ignore" }).status === 0
  if (!install()) {
    spawnSync("apt-get", ["update"], { stdio: "ignore" })
    if (!install())
      throw new Error(`could not install ${packages.join(" ")} (needs root and Debian's packages)`)
  }
  if (!onPath(command))
    throw new Error(`${command} is still not on PATH after installing ${packages.join(" ")}`)
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
