import StratusCore

/// The files a run writes: `series.csv` (allocated GPUs per tier and the queue, per
/// bucket of simulated time) and `report.html` (readable offline: the summary and a chart
/// as inline SVG). Both depend only on the run, so the same run gives the same bytes.
public enum SimulationReport {
    /// `time,allocated_internal,allocated_reserved,allocated_on_demand,allocated_spot,queued`,
    /// allocated GPUs as the bucket's mean, to two decimals.
    public static func csv(_ series: Simulation.Series) -> String {
        var out = "time,allocated_internal,allocated_reserved,allocated_on_demand,allocated_spot,queued\n"
        for (i, bucket) in series.busy.enumerated() {
            let at = series.start.adding(seconds: Int64(i) * series.bucketMillis / 1000)
            let cols = Tier.allCases.map { decimal2(bucket[$0] ?? 0, series.bucketMillis) }
            out += "\(at),\(cols.joined(separator: ",")),\(series.queued[i])\n"
        }
        return out
    }

    /// `millis / bucket` with two decimals, exactly (rounded down).
    static func decimal2(_ millis: Int64, _ bucket: Int64) -> String {
        let hundredths = millis * 100 / bucket
        let cents = hundredths % 100
        return "\(hundredths / 100).\(cents < 10 ? "0" : "")\(cents)"
    }

    public static func html(_ s: Simulation.Summary, _ series: Simulation.Series) -> String {
        let width = 900
        let height = 240
        let buckets = max(1, series.busy.count)
        let colors: [Tier: String] = [.internal: "#6b4fbb", .reserved: "#1f77b4", .onDemand: "#2ca02c", .spot: "#ff7f0e"]
        // Stacked area per tier, as the share of installed GPUs.
        var layers: [String] = []
        var base = [Int64](repeating: 0, count: buckets)
        for tier in Tier.allCases {
            let values = series.busy.map { $0[tier] ?? 0 }
            guard values.contains(where: { $0 > 0 }) else { continue }
            var top: [String] = []
            var bottom: [String] = []
            for i in 0..<series.busy.count {
                let x = i * width / buckets
                let capacity = max(1, Int64(s.gpus) * series.bucketMillis)
                let y0 = height - Int(base[i] * Int64(height) / capacity)
                base[i] += values[i]
                let y1 = height - Int(base[i] * Int64(height) / capacity)
                top.append("\(x),\(y1)")
                bottom.append("\(x),\(y0)")
            }
            let points = (top + bottom.reversed()).joined(separator: " ")
            layers.append(
                #"<polygon points="\#(points)" fill="\#(colors[tier]!)" fill-opacity="0.8"><title>\#(tier.rawValue)</title></polygon>"#
            )
        }
        var rows = ""
        for (tier, t) in s.tiers.sorted(by: { $0.key < $1.key }) {
            rows +=
                "<tr><td>\(tier)</td><td>\(t.jobs)</td><td>\(t.completed)</td><td>\(t.queueDelaySeconds.mean)</td><td>\(t.queueDelaySeconds.p50)</td><td>\(t.queueDelaySeconds.p99)</td><td>\(t.completionSeconds.p50)</td><td>\(t.completionSeconds.p99)</td><td>\(t.gpuHours)</td><td>\(t.revenue)</td></tr>\n"
        }
        let legend = Tier.allCases.map { #"<span style="color:\#(colors[$0]!)">&#9632; \#($0.rawValue)</span>"# }
            .joined(separator: " ")
        return """
            <!doctype html>
            <html><head><meta charset="utf-8"><title>Stratus simulation</title>
            <style>body{font-family:sans-serif;margin:2em;max-width:960px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}</style>
            </head><body>
            <h1>Simulation: \(s.gpus) GPUs, \(s.jobs) jobs</h1>
            <p>\(s.start) to \(s.end) (\(s.simulatedDays) days), \(s.events) events. Completed \(s.completed), refused \(s.refused), unfinished \(s.unfinished), preemptions \(s.preemptions). Ledger balanced: \(s.ledgerBalanced).</p>
            <h2>Allocated GPUs by tier</h2>
            <p>Share of installed GPUs, one bucket per \(series.bucketMillis / 3_600_000) h; mean \(Double(s.utilizationBasisPoints) / 100)%. \(legend)</p>
            <svg width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" style="border:1px solid #ccc">
            \(layers.joined(separator: "\n"))
            </svg>
            <h2>Tiers</h2>
            <table><tr><th>tier</th><th>jobs</th><th>completed</th><th>queue mean s</th><th>queue p50 s</th><th>queue p99 s</th><th>completion p50 s</th><th>completion p99 s</th><th>GPU-hours</th><th>revenue</th></tr>
            \(rows)</table>
            <h2>Economics</h2>
            <table><tr><th>cost of the installed fleet</th><th>revenue</th><th>margin</th><th>cost per installed GPU-hour</th><th>cost per used GPU-hour</th></tr>
            <tr><td>\(s.economics.cost)</td><td>\(s.economics.revenue)</td><td>\(s.economics.margin)</td><td>\(s.economics.costPerInstalledGpuHour)</td><td>\(s.economics.costPerUsedGpuHour ?? "-")</td></tr></table>
            </body></html>

            """
    }
}
