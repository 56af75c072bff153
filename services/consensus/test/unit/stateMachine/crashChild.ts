// Child process for crash.test.ts: applies batches (or installs a snapshot)
// until the parent SIGKILLs it. Not a test file.
import { MvccStore } from "../../../src/stateMachine/mvccStore.ts"
import { EncryptionState, encodeStoredValue } from "../../../src/stateMachine/valueHeader.ts"

const [mode, location, arg] = process.argv.slice(2)
if (location === undefined) throw new Error("usage: crashChild apply|install <db> [snapshot]")
const store = await MvccStore.open(location, { allowIncompleteInstall: true })

if (mode === "apply") {
  const value = new Uint8Array(200).fill(7)
  let i = store.appliedIndex()
  let first = true
  for (;;) {
    const b = store.batch()
    for (let e = 0; e < 20; e++) {
      i++
      for (let k = 0; k < 10; k++) b.put(`k${k}`, i, encodeStoredValue(EncryptionState.Cleartext, value))
      b.setApplied(i)
    }
    await b.commit({ sync: i % 40 === 0 })
    if (first) {
      process.stdout.write("ready\n")
      first = false
    }
  }
} else if (mode === "install" && arg !== undefined) {
  process.stdout.write("ready\n")
  await store.installSnapshot(arg)
  process.stdout.write("installed\n")
  await store.close()
}
