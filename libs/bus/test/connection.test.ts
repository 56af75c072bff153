import { describe, expect, it } from "@effect/vitest"
import { DEFAULT_NATS_URL, inboxPrefixFor, natsOptionsFromEnv } from "../src/connection.ts"

describe("natsOptionsFromEnv", () => {
  it("defaults to the local server", () => {
    expect(natsOptionsFromEnv({})).toEqual({ servers: [DEFAULT_NATS_URL] })
    expect(natsOptionsFromEnv({ NATS_URL: " , " }).servers).toEqual([DEFAULT_NATS_URL])
  })

  it("splits NATS_URL and reads credentials", () => {
    expect(
      natsOptionsFromEnv(
        { NATS_URL: "nats://a:4222, nats://b:4222", NATS_USER: "admin", NATS_PASSWORD: "pw", NATS_CREDS: "" },
        { name: "ekv-admin" },
      ),
    ).toEqual({ servers: ["nats://a:4222", "nats://b:4222"], user: "admin", pass: "pw", name: "ekv-admin" })
    expect(natsOptionsFromEnv({ NATS_CREDS: "/etc/ekv/n1.creds" }).credsFile).toBe("/etc/ekv/n1.creds")
  })
})

describe("inboxPrefixFor", () => {
  it("uses the user's own inbox (CONTRACT §9) unless told otherwise", () => {
    expect(inboxPrefixFor({ servers: [], user: "consensus-n1" })).toBe("_INBOX.consensus-n1")
    expect(inboxPrefixFor({ servers: [], user: "operator", inboxPrefix: "_INBOX.custom" })).toBe(
      "_INBOX.custom",
    )
    expect(inboxPrefixFor({ servers: [] })).toBeUndefined()
  })
})
