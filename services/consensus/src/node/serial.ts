// Runs async tasks one at a time, in submission order (a mutex for a
// resource several loops share: the Raft log store, the state machine).
export class Serial {
  private tail: Promise<unknown> = Promise.resolve()

  run<A>(task: () => Promise<A>): Promise<A> {
    const next = this.tail.then(task)
    this.tail = next.then(
      () => undefined,
      () => undefined,
    )
    return next
  }
}
