import { describe, expect, it } from "@effect/vitest"
import { errors } from "@nats-io/transport-node"
import { requestFailure } from "../src/client.ts"

describe("requestFailure", () => {
  it("maps no responders and timeouts to Unavailable", () => {
    const noResponders = new errors.RequestError("no responders", {
      cause: new errors.NoRespondersError("s"),
    })
    expect(requestFailure("s", noResponders)).toMatchObject({
      _tag: "Unavailable",
      details: { reason: "NoResponders", subject: "s" },
    })
    expect(requestFailure("s", new errors.TimeoutError())).toMatchObject({
      _tag: "Unavailable",
      details: { reason: "Timeout" },
    })
    expect(requestFailure("s", new errors.ClosedConnectionError())._tag).toBe("Unavailable")
  })

  it("maps a rejected payload (over max_payload) to InvalidArgument", () => {
    const e = errors.InvalidArgumentError.format("payload", "max_payload size exceeded")
    expect(requestFailure("s", e)._tag).toBe("InvalidArgument")
  })

  it("maps a permission violation to Internal (a deployment bug, not retryable)", () => {
    const e = new errors.PermissionViolationError("denied", "publish", "ekv.internal.x")
    expect(requestFailure("ekv.internal.x", e)).toMatchObject({
      _tag: "Internal",
      details: { reason: "PermissionViolation" },
    })
  })
})
