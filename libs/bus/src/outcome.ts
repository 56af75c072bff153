// The reply computed for one request, and the Internal error of a defect.
import { randomUUID } from "node:crypto"
import { ApiError } from "@ekv/wire"

/** The reply computed for one message. */
export type Outcome =
  | { readonly _tag: "Success"; readonly data: Uint8Array }
  | { readonly _tag: "Failure"; readonly error: ApiError.ApiError }

/** A fresh correlation id for an Internal reply (CONTRACT §1: `details.id`). */
export const correlationId = (): string => randomUUID()

/** The Internal error for a bug, carrying its correlation id. */
export const internalError = (id: string, message = "internal error"): ApiError.Internal =>
  new ApiError.Internal({ message, details: { id } })
