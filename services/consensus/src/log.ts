// Structured JSON log lines (SPEC §9): one object per line on stdout, with
// the node and component; never key bytes.
export interface Log {
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
  child(component: string): Log
}

export const makeLog = (node: string, component = "consensus"): Log => {
  const write = (level: string, message: string, fields?: Record<string, unknown>) => {
    const line = JSON.stringify({
      at: new Date().toISOString(),
      level,
      node,
      component,
      msg: message,
      ...fields,
    })
    process.stdout.write(`${line}\n`)
  }
  return {
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (c) => makeLog(node, c),
  }
}

/** A log that drops everything (tests). */
export const silentLog: Log = {
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLog,
}
