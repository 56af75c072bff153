// Runs once at image build time, as root (the base image may have no shell):
// the fixed non-root user ekv 10001:10001 (the compose setup gives secrets to
// that uid, since compose outside swarm ignores secret modes), its home, and
// the data directory /data (a volume) owned by it, mode 0700.
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readFileSync } from "node:fs"

const UID = 10001
const GID = 10001

const hasId = (file: string, id: number): boolean =>
  existsSync(file) &&
  readFileSync(file, "utf8")
    .split("\n")
    .some((line) => line.split(":")[2] === String(id))

if (!hasId("/etc/group", GID)) appendFileSync("/etc/group", `ekv:x:${GID}:\n`)
if (!hasId("/etc/passwd", UID))
  appendFileSync("/etc/passwd", `ekv:x:${UID}:${GID}:ekv:/home/ekv:/sbin/nologin\n`)

for (const [dir, mode] of [
  ["/home/ekv", 0o700],
  ["/data", 0o700],
] as const) {
  mkdirSync(dir, { recursive: true })
  chownSync(dir, UID, GID)
  chmodSync(dir, mode)
}
