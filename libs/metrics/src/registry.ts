// A small Prometheus registry (text exposition format 0.0.4) for the series of
// SPEC.md §9 / CONTRACT.md §6. Counters, gauges and histograms with labels;
// updates are plain field writes so they can sit on hot paths.

export type Labels = Readonly<Record<string, string | number>>

const escapeLabel = (v: string): string => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')

// Most updates on hot paths carry one label (`outcome`, `key_id`, …) with a
// handful of values: their rendered keys are kept, up to a bound per name, so
// an update does not build and escape the same string again.
const SINGLE_LABEL_CACHE_PER_NAME = 1024
const singleLabelKeys = new Map<string, Map<string, string>>()

const singleLabelKey = (name: string, value: string): string => {
  let byValue = singleLabelKeys.get(name)
  if (byValue === undefined) {
    byValue = new Map()
    singleLabelKeys.set(name, byValue)
  }
  let k = byValue.get(value)
  if (k === undefined) {
    k = `{${name}="${escapeLabel(value)}"}`
    if (byValue.size < SINGLE_LABEL_CACHE_PER_NAME) byValue.set(value, k)
  }
  return k
}

const labelKey = (labels: Labels | undefined): string => {
  if (labels === undefined) return ""
  const names = Object.keys(labels)
  if (names.length === 1) return singleLabelKey(names[0]!, String(labels[names[0]!]))
  if (names.length === 0) return ""
  names.sort()
  return `{${names.map((n) => `${n}="${escapeLabel(String(labels[n]))}"`).join(",")}}`
}

const formatNumber = (n: number): string =>
  Number.isNaN(n) ? "NaN" : n === Infinity ? "+Inf" : n === -Infinity ? "-Inf" : String(n)

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

interface Metric {
  readonly name: string
  readonly help: string
  readonly type: "counter" | "gauge" | "histogram"
  render(): string[]
}

/** A value per label set, rendered one line each: the storage of counters and gauges. */
abstract class ScalarMetric implements Metric {
  abstract readonly type: "counter" | "gauge"
  protected readonly values = new Map<string, number>()
  readonly name: string
  readonly help: string
  constructor(name: string, help: string) {
    this.name = name
    this.help = help
  }
  get(labels?: Labels): number | undefined {
    return this.values.get(labelKey(labels))
  }
  render(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${k} ${formatNumber(v)}`)
  }
}

export class Counter extends ScalarMetric {
  readonly type = "counter"
  inc(labels?: Labels, by = 1): void {
    if (by < 0) throw new RangeError(`counter ${this.name} cannot decrease`)
    const k = labelKey(labels)
    this.values.set(k, (this.values.get(k) ?? 0) + by)
  }
  override get(labels?: Labels): number {
    return super.get(labels) ?? 0
  }
}

export class Gauge extends ScalarMetric {
  readonly type = "gauge"
  set(value: number, labels?: Labels): void {
    this.values.set(labelKey(labels), value)
  }
  /** Removes a labelled series (e.g. a retired key id). */
  remove(labels?: Labels): void {
    this.values.delete(labelKey(labels))
  }
}

/** Default buckets in seconds: 50µs … 10s, enough for fsync and apply latencies. */
export const DEFAULT_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]

interface HistogramSeries {
  readonly counts: number[]
  sum: number
  count: number
}

export class Histogram implements Metric {
  readonly type = "histogram"
  readonly #series = new Map<string, { labels: Labels | undefined; s: HistogramSeries }>()
  readonly name: string
  readonly help: string
  readonly buckets: ReadonlyArray<number>
  constructor(name: string, help: string, buckets: ReadonlyArray<number> = DEFAULT_BUCKETS) {
    this.name = name
    this.help = help
    this.buckets = [...buckets].sort((a, b) => a - b)
  }
  observe(value: number, labels?: Labels): void {
    const k = labelKey(labels)
    let entry = this.#series.get(k)
    if (entry === undefined) {
      entry = { labels, s: { counts: this.buckets.map(() => 0), sum: 0, count: 0 } }
      this.#series.set(k, entry)
    }
    const s = entry.s
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++
    s.sum += value
    s.count++
  }
  count(labels?: Labels): number {
    return this.#series.get(labelKey(labels))?.s.count ?? 0
  }
  render(): string[] {
    const lines: string[] = []
    for (const { labels, s } of this.#series.values()) {
      this.buckets.forEach((b, i) => {
        lines.push(`${this.name}_bucket${labelKey({ ...labels, le: formatNumber(b) })} ${s.counts[i]}`)
      })
      lines.push(`${this.name}_bucket${labelKey({ ...labels, le: "+Inf" })} ${s.count}`)
      lines.push(`${this.name}_sum${labelKey(labels)} ${formatNumber(s.sum)}`)
      lines.push(`${this.name}_count${labelKey(labels)} ${s.count}`)
    }
    return lines
  }
}

export class Registry {
  readonly #metrics = new Map<string, Metric>()

  #register<M extends Metric>(m: M): M {
    if (!NAME.test(m.name)) throw new Error(`invalid metric name ${m.name}`)
    const existing = this.#metrics.get(m.name)
    if (existing !== undefined) {
      if (existing.type !== m.type) throw new Error(`metric ${m.name} registered as ${existing.type}`)
      return existing as M
    }
    this.#metrics.set(m.name, m)
    return m
  }

  counter(name: string, help: string): Counter {
    return this.#register(new Counter(name, help))
  }
  gauge(name: string, help: string): Gauge {
    return this.#register(new Gauge(name, help))
  }
  histogram(name: string, help: string, buckets?: ReadonlyArray<number>): Histogram {
    return this.#register(new Histogram(name, help, buckets))
  }

  /** The text exposition of every registered metric. */
  render(): string {
    const out: string[] = []
    for (const m of this.#metrics.values()) {
      out.push(`# HELP ${m.name} ${m.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`)
      out.push(`# TYPE ${m.name} ${m.type}`)
      out.push(...m.render())
    }
    return `${out.join("\n")}\n`
  }
}
