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
        page(title(s), section(s, series, prefix: ""))
    }

    /// Two runs side by side: the figures that decide between them, then each run.
    public static func comparison(_ runs: [(label: String, summary: Simulation.Summary, series: Simulation.Series)])
        -> String
    {
        func row(_ name: String, _ value: (Simulation.Summary) -> String) -> String {
            "<tr><th>\(name)</th>" + runs.map { "<td>\(escape(value($0.summary)))</td>" }.joined() + "</tr>\n"
        }
        var table = "<table><tr><th></th>" + runs.map { "<th>\(escape($0.label))</th>" }.joined() + "</tr>\n"
        table += row("GPUs at the end") { "\($0.gpus)" }
        table += row("utilization") { percent($0.utilizationBasisPoints) }
        table += row("revenue (net of SLA credits)") { $0.economics.revenue }
        table += row("cost") { $0.economics.cost }
        table += row("margin") { $0.economics.margin }
        table += row("cost per installed GPU-hour") { $0.economics.costPerInstalledGpuHour }
        table += row("cost per used GPU-hour") { $0.economics.costPerUsedGpuHour ?? "-" }
        table += row("capex") { $0.finance.capex }
        table += row("net cash over the run") { $0.finance.netCash }
        table += row("payback") { payback($0.finance) }
        table += row("internal inference served") { $0.internalDemand.map { percent($0.inferenceServedBasisPoints) } ?? "-" }
        table += row("jobs refused") { "\($0.refused)" }
        table += row("preemptions") { "\($0.preemptions)" }
        table += "</table>\n"
        var body = "<h1>What-if: \(runs.map { escape($0.label) }.joined(separator: " vs "))</h1>\n\(table)"
        for (k, run) in runs.enumerated() {
            body += "<hr><h1>\(escape(run.label))</h1>\n" + section(run.summary, run.series, prefix: "r\(k)")
        }
        return page("Stratus what-if", body)
    }

    static func title(_ s: Simulation.Summary) -> String {
        s.name.map { "Simulation: \(escape($0))" } ?? "Simulation: \(s.gpus) GPUs, \(s.jobs) jobs"
    }

    static func page(_ title: String, _ body: String) -> String {
        """
        <!doctype html>
        <html><head><meta charset="utf-8"><title>Stratus simulation</title>
        <style>body{font-family:sans-serif;margin:2em;max-width:960px}table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}svg{border:1px solid #ccc}</style>
        </head><body>
        \(body.hasPrefix("<h1>") ? "" : "<h1>\(title)</h1>\n")\(body)
        </body></html>

        """
    }

    static func escape(_ text: String) -> String { HTML.escape(text) }

    static func percent(_ basisPoints: Int64) -> String {
        "\(basisPoints / 100).\(basisPoints % 100 < 10 ? "0" : "")\(basisPoints % 100)%"
    }

    static func payback(_ f: Simulation.FinanceSummary) -> String {
        guard let m = f.paybackMonths else { return "not in sight" }
        return f.paybackProjected ? "\(m) months (projected)" : "\(m) months"
    }

    static let colors: [Tier: String] = [.internal: "#6b4fbb", .reserved: "#1f77b4", .onDemand: "#2ca02c", .spot: "#ff7f0e"]

    /// One run: the tier chart, the cash chart, and the tables.
    static func section(_ s: Simulation.Summary, _ series: Simulation.Series, prefix: String) -> String {
        let width = 900
        let height = 240
        let buckets = max(1, series.busy.count)
        let peak = Int64(max(1, series.installed.max() ?? s.gpus, s.gpus))
        // Stacked area per tier, as a share of the most GPUs installed; a line for installed.
        var layers: [String] = []
        var base = [Int64](repeating: 0, count: buckets)
        let capacity = peak * series.bucketMillis
        for tier in Tier.allCases {
            let values = series.busy.map { $0[tier] ?? 0 }
            guard values.contains(where: { $0 > 0 }) else { continue }
            var top: [String] = []
            var bottom: [String] = []
            for i in 0..<series.busy.count {
                let x = i * width / buckets
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
        if series.installed.contains(where: { Int64($0) != peak }) {
            let points = series.installed.enumerated().map { i, g in
                "\(i * width / buckets),\(height - Int(Int64(g) * Int64(height) / peak))"
            }
            layers.append(
                ##"<polyline points="\##(points.joined(separator: " "))" fill="none" stroke="#000" stroke-width="1.5"><title>installed GPUs</title></polyline>"##
            )
        }
        var rows = ""
        for (tier, t) in s.tiers.sorted(by: { $0.key < $1.key }) {
            rows +=
                "<tr><td>\(tier)</td><td>\(t.jobs)</td><td>\(t.completed)</td><td>\(t.queueDelaySeconds.mean)</td><td>\(t.queueDelaySeconds.p50)</td><td>\(t.queueDelaySeconds.p99)</td><td>\(t.completionSeconds.p50)</td><td>\(t.completionSeconds.p99)</td><td>\(t.gpuHours)</td><td>\(t.revenue)</td></tr>\n"
        }
        let legend = Tier.allCases.map { #"<span style="color:\#(colors[$0]!)">&#9632; \#($0.rawValue)</span>"# }
            .joined(separator: " ")
        var out = """
            <p>\(s.start) to \(s.end) (\(s.simulatedDays) days), \(s.events) events. Completed \(s.completed), refused \(s.refused), unfinished \(s.unfinished), preemptions \(s.preemptions), node failures \(s.nodeFailures). Ledger balanced: \(s.ledgerBalanced).</p>
            <h2>Allocated GPUs by tier</h2>
            <p>Share of the most GPUs installed (\(peak)), one bucket per \(series.bucketMillis / 3_600_000) h; allocated over installed GPU time: \(percent(s.utilizationBasisPoints)). \(legend)\(series.installed.contains(where: { Int64($0) != peak }) ? " &#9644; installed" : "")</p>
            <svg width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)">
            \(layers.joined(separator: "\n"))
            </svg>
            <h2>Tiers</h2>
            <table><tr><th>tier</th><th>jobs</th><th>completed</th><th>queue mean s</th><th>queue p50 s</th><th>queue p99 s</th><th>completion p50 s</th><th>completion p99 s</th><th>GPU-hours</th><th>revenue</th></tr>
            \(rows)</table>
            <h2>Economics</h2>
            <table><tr><th>cost of the fleet</th><th>revenue</th><th>margin</th><th>cost per installed GPU-hour</th><th>cost per used GPU-hour</th></tr>
            <tr><td>\(s.economics.cost)</td><td>\(s.economics.revenue)</td><td>\(s.economics.margin)</td><td>\(s.economics.costPerInstalledGpuHour)</td><td>\(s.economics.costPerUsedGpuHour ?? "-")</td></tr></table>

            """
        out += cash(s.finance, width: width)
        if !s.contracts.isEmpty {
            out +=
                "<h2>Contracts</h2>\n<table><tr><th>contract</th><th>commitment</th><th>paid</th><th>drawdown</th><th>projected over the term</th><th>projected shortfall</th><th>take-or-pay</th></tr>\n"
            for c in s.contracts {
                out +=
                    "<tr><td>\(escape(c.name))</td><td>\(c.commitment)</td><td>\(c.paid)</td><td>\(percent(c.drawdownBasisPoints))</td><td>\(c.projectedTotal)</td><td>\(c.projectedShortfall)</td><td>\(c.takeOrPay)</td></tr>\n"
            }
            out += "</table>\n"
        }
        if let i = s.internalDemand {
            out += """
                <h2>Internal demand</h2>
                <table><tr><th>inference GPU-hours wanted</th><th>served</th><th>share served</th><th>training runs</th><th>started</th><th>training queue p50 s</th><th>p99 s</th></tr>
                <tr><td>\(i.inferenceDemandGpuHours)</td><td>\(i.inferenceServedGpuHours)</td><td>\(percent(i.inferenceServedBasisPoints))</td><td>\(i.trainingJobs)</td><td>\(i.trainingStarted)</td><td>\(i.trainingQueueDelaySeconds.p50)</td><td>\(i.trainingQueueDelaySeconds.p99)</td></tr></table>

                """
        }
        if !s.demand.isEmpty {
            out +=
                "<h2>External demand</h2>\n<table><tr><th>stream</th><th>tier</th><th>arrived</th><th>refused</th><th>gave up waiting</th></tr>\n"
            for d in s.demand {
                out +=
                    "<tr><td>\(escape(d.name))</td><td>\(d.tier)</td><td>\(d.arrived)</td><td>\(d.refused)</td><td>\(d.abandoned)</td></tr>\n"
            }
            out += "</table>\n"
        }
        if let p = s.packing {
            out += """
                <h2>Packing</h2>
                <table><tr><th>target</th><th>GPUs asked for</th><th>allocated</th><th>share allocated</th><th>free</th><th>stranded</th><th>jobs waiting</th></tr>
                <tr><td>\(percent(p.targetBasisPoints))</td><td>\(p.demandGpus)</td><td>\(p.allocatedGpus)</td><td>\(percent(p.allocatedBasisPoints))</td><td>\(p.freeGpus)</td><td>\(p.strandedGpus)</td><td>\(p.queuedJobs)</td></tr></table>

                """
        }
        return out
    }

    /// Cumulative net cash by month as a line over monthly net bars, and the table.
    static func cash(_ f: Simulation.FinanceSummary, width: Int) -> String {
        let height = 200
        let net = f.months.map { Money.parse($0.net)?.micros ?? 0 }
        let cumulative = f.months.map { Money.parse($0.cumulative)?.micros ?? 0 }
        let high = max(1, (net + cumulative).map { abs($0) }.max() ?? 1)
        let n = max(1, f.months.count)
        let mid = height / 2
        func y(_ v: Int64) -> Int { mid - Int(Int128(v) * Int128(mid - 4) / Int128(high)) }
        var shapes: [String] = [##"<line x1="0" y1="\##(mid)" x2="\##(width)" y2="\##(mid)" stroke="#999"/>"##]
        let w = max(1, width / n)
        for (i, v) in net.enumerated() {
            let top = min(y(v), mid)
            shapes.append(
                ##"<rect x="\##(i * w + w / 4)" y="\##(top)" width="\##(max(1, w / 2))" height="\##(abs(y(v) - mid))" fill="\##(v >= 0 ? "#2ca02c" : "#d62728")"><title>\##(f.months[i].month): \##(f.months[i].net)</title></rect>"##
            )
        }
        let line = cumulative.enumerated().map { "\($0 * w + w / 2),\(y($1))" }.joined(separator: " ")
        shapes.append(
            ##"<polyline points="\##(line)" fill="none" stroke="#000" stroke-width="2"><title>cumulative</title></polyline>"##)
        var out = """
            <h2>Cash flow and payback</h2>
            <p>Capex \(f.capex), operations \(f.operations), contract payments \(f.contractPayments), revenue \(f.revenue), SLA credits \(f.slaCredits): net \(f.netCash). Payback: \(payback(f)). Bars: net cash per month; line: cumulative.</p>
            <svg width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)">
            \(shapes.joined(separator: "\n"))
            </svg>
            <table><tr><th>month</th><th>GPUs</th><th>revenue</th><th>SLA credits</th><th>capex</th><th>operations</th><th>contracts</th><th>net</th><th>cumulative</th></tr>

            """
        for m in f.months {
            out +=
                "<tr><td>\(m.month)</td><td>\(m.installedGpus)</td><td>\(m.revenue)</td><td>\(m.slaCredits)</td><td>\(m.capex)</td><td>\(m.operations)</td><td>\(m.contracts)</td><td>\(m.net)</td><td>\(m.cumulative)</td></tr>\n"
        }
        return out + "</table>\n"
    }

    /// `month,installed_gpus,revenue,sla_credits,capex,operations,contracts,net,cumulative`.
    public static func monthsCSV(_ f: Simulation.FinanceSummary) -> String {
        var out = "month,installed_gpus,revenue,sla_credits,capex,operations,contracts,net,cumulative\n"
        for m in f.months {
            out +=
                "\(m.month),\(m.installedGpus),\(m.revenue),\(m.slaCredits),\(m.capex),\(m.operations),\(m.contracts),\(m.net),\(m.cumulative)\n"
        }
        return out
    }
}
