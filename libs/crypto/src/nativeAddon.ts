// ekv's optional native addons (libs/crypto/native, built by scripts/setup.sh
// with the C compiler and the headers beside `node`). Each one only replaces a
// JS implementation it must match byte for byte, so a process uses it only
// when it loads and passes a self-test against that implementation, and runs
// the JS one otherwise, recording why for its start-up log.
import { createRequire } from "node:module"

export type Loaded<A> =
  | { readonly impl: A; readonly reason?: undefined }
  | { readonly impl?: undefined; readonly reason: string }

/** Where setup builds the addon named `file`. */
export const addonPath = (file: string): string =>
  new URL(`../native/build/${file}`, import.meta.url).pathname

/** The addon at `path` as `wrap` makes it, if it loads and `selfTest` finds nothing wrong. */
export const loadAddon = <Addon, A>(
  path: string,
  wrap: (addon: Addon) => A,
  selfTest: (candidate: A) => string | undefined,
): Loaded<A> => {
  let addon: Addon
  try {
    addon = createRequire(import.meta.url)(path) as Addon
  } catch (e) {
    return { reason: `${path} not loadable (${(e as Error).message.split("\n")[0]})` }
  }
  const impl = wrap(addon)
  try {
    const wrong = selfTest(impl)
    return wrong === undefined ? { impl } : { reason: `${path} failed its self-test: ${wrong}` }
  } catch (e) {
    return { reason: `${path} failed its self-test: ${String(e)}` }
  }
}

/** The native implementation unless `${envVar}=0` or it did not load; and why (its path, or the reason). */
export const chooseImpl = <A>(
  envVar: string,
  load: () => Loaded<A>,
  path: string,
  fallback: A,
): { readonly impl: A; readonly native: boolean; readonly why: string } => {
  if (process.env[envVar] === "0") return { impl: fallback, native: false, why: `${envVar}=0` }
  const loaded = load()
  if (loaded.impl !== undefined) return { impl: loaded.impl, native: true, why: path }
  return { impl: fallback, native: false, why: loaded.reason ?? "not loaded" }
}
