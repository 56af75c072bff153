// Build time only: trims <root>/node_modules to what the three services need
// at run time — the production dependency closure of @ekv/consensus,
// @ekv/keystore and @ekv/admin — and drops files Node never loads from
// node_modules (TypeScript sources and declarations, source maps, .bin).
//
//   node docker/prune-deps.ts /app
//   node docker/prune-deps.ts --manifests-only /app
//     deletes everything under /app but the package.json files and this
//     script (all the pruning needs), so that stage's output changes only
//     when a manifest does.
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, rmSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const manifestsOnly = process.argv[2] === "--manifests-only"
const root = process.argv[manifestsOnly ? 3 : 2] ?? "/app"
const modules = join(root, "node_modules")
const self = fileURLToPath(import.meta.url)
const SERVICES = ["@ekv/consensus", "@ekv/keystore", "@ekv/admin"]

interface Manifest {
  readonly dependencies?: Record<string, string>
  readonly optionalDependencies?: Record<string, string>
  readonly peerDependencies?: Record<string, string>
}

const manifest = (dir: string): Manifest =>
  JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Manifest

/** Node's lookup of `name` from a package at `from` (a path under node_modules or a workspace). */
const resolve = (name: string, from: string): string | undefined => {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name)
    if (existsSync(join(candidate, "package.json"))) return candidate
    if (dir === dirname(dir)) return undefined
  }
}

/** Paths (as found under node_modules, symlinks not followed) of the packages the services need. */
const productionClosure = (): Set<string> => {
  const found = new Set<string>()
  const queue: Array<[string, string]> = SERVICES.map((s) => [s, root])
  while (queue.length > 0) {
    const [name, from] = queue.pop()!
    const at = resolve(name, from)
    // Absent: an optional or peer dependency not installed for this platform.
    if (at === undefined || found.has(at)) continue
    found.add(at)
    // Dependencies resolve from the package's real location (workspaces are symlinks).
    const real = realpathSync(at)
    const m = manifest(real)
    for (const dep of Object.keys({ ...m.dependencies, ...m.optionalDependencies, ...m.peerDependencies }))
      queue.push([dep, real.startsWith(modules) ? at : real])
  }
  return found
}

let keep = new Set<string>()

const DROP_FILE = /\.(d\.[cm]?ts|[cm]?ts|map|md)$/i
let removed = 0

/** Removes every package under `dir` (a node_modules directory) that is not kept, and dead files. */
const prune = (dir: string): void => {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry)
    if (entry === ".bin" || entry === ".package-lock.json") {
      rmSync(path, { recursive: true, force: true })
    } else if (entry.startsWith("@")) {
      for (const sub of readdirSync(path)) prunePackage(join(path, sub))
      if (readdirSync(path).length === 0) rmSync(path, { recursive: true })
    } else prunePackage(path)
  }
}

const prunePackage = (path: string): void => {
  if (!keep.has(path)) {
    rmSync(path, { recursive: true, force: true })
    removed++
    return
  }
  if (lstatSync(path).isSymbolicLink()) return // a workspace: its sources are the app
  dropFiles(path)
}

const dropFiles = (dir: string): void => {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name === "node_modules") prune(path)
      else dropFiles(path)
    } else if (entry.isFile() && DROP_FILE.test(entry.name) && !/^readme|^license/i.test(entry.name)) {
      rmSync(path)
    }
  }
}

/** Keeps only package.json files (and this script) under `dir`; empty directories go. */
const keepManifests = (dir: string): void => {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      keepManifests(path)
      if (readdirSync(path).length === 0) rmSync(path, { recursive: true })
    } else if (entry.name !== "package.json" && path !== self) rmSync(path, { force: true })
  }
}

if (manifestsOnly) {
  keepManifests(root)
} else {
  keep = productionClosure()
  prune(modules)
  console.log(`prune-deps: kept ${keep.size} packages, removed ${removed}`)
}
