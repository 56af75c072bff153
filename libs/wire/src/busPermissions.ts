// The bus permission matrix of CONTRACT.md §9 as data, derived from the same
// subject builders the services use, so the shipped NATS configurations and
// the code cannot drift apart. Role names are the NATS user names.
import { inboxPrefix, subjects } from "./subjects.ts"

export type BusRole =
  | { readonly kind: "operator" }
  | { readonly kind: "admin" }
  | { readonly kind: "consensus"; readonly node: string }
  | { readonly kind: "keystore"; readonly node: string }

export interface BusPermissions {
  readonly user: string
  readonly publish: ReadonlyArray<string>
  readonly subscribe: ReadonlyArray<string>
  /** Whether the user may reply to requests it received (responders). */
  readonly allowResponses: boolean
}

export const busUser = (role: BusRole): string =>
  role.kind === "operator" || role.kind === "admin" ? role.kind : `${role.kind}-${role.node}`

/**
 * JetStream API subjects that read a stream: info, consumer create / info /
 * next and acks; never delete or purge. (The exact set a client library needs
 * is to be confirmed against a real server by the integration suite.)
 */
export const jetStreamReadApi = (stream: string): ReadonlyArray<string> => [
  "$JS.API.INFO",
  `$JS.API.STREAM.INFO.${stream}`,
  `$JS.API.CONSUMER.CREATE.${stream}`,
  `$JS.API.CONSUMER.CREATE.${stream}.>`,
  `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.>`,
  `$JS.API.CONSUMER.INFO.${stream}.>`,
  `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
  `$JS.ACK.${stream}.>`,
]

/** JetStream API subjects a publisher uses besides the event subjects themselves. */
export const jetStreamPublishApi = (stream: string): ReadonlyArray<string> => [
  "$JS.API.INFO",
  `$JS.API.STREAM.INFO.${stream}`,
]

export const jetStreamCreateApi = (stream: string): ReadonlyArray<string> => [
  `$JS.API.STREAM.CREATE.${stream}`,
]

/** CONTRACT.md §9, row by row. */
export const busPermissions = (prefix: string, role: BusRole): BusPermissions => {
  const s = subjects(prefix)
  const user = busUser(role)
  const inbox = `${inboxPrefix(user)}.>`
  const stream = s.events.stream
  switch (role.kind) {
    case "operator":
      return {
        user,
        publish: [
          s.admin.all,
          s.kv.all,
          s.nodes.health,
          s.nodes.capability,
          "$SRV.>",
          ...jetStreamReadApi(stream),
        ],
        subscribe: [inbox],
        allowResponses: false,
      }
    case "admin":
      return {
        user,
        publish: [
          s.internalAny.admin,
          s.internalAny.keystoreResync,
          s.nodes.all,
          "$SRV.>",
          ...jetStreamReadApi(stream),
        ],
        subscribe: [s.admin.all, "$SRV.>", inbox],
        allowResponses: true,
      }
    case "consensus": {
      const own = s.internal(role.node)
      return {
        user,
        publish: [
          s.internalAny.raft,
          own.keystore.all,
          s.internalAny.admin,
          s.events.cluster(role.node),
          ...jetStreamPublishApi(stream),
        ],
        subscribe: [own.raft.all, own.admin.all, s.kv.all, s.node(role.node).health, "$SRV.>", inbox],
        allowResponses: true,
      }
    }
    case "keystore": {
      const own = s.internal(role.node)
      return {
        user,
        publish: [
          s.events.encryption(role.node),
          s.events.cluster(role.node),
          s.internalAny.adminLog,
          ...jetStreamPublishApi(stream),
          ...jetStreamCreateApi(stream),
        ],
        subscribe: [own.keystore.all, s.node(role.node).capability, "$SRV.>", inbox],
        allowResponses: true,
      }
    }
  }
}
