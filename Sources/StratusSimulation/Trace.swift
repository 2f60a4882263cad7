import StratusCore

/// One job of a workload trace: when it arrives, how long it runs, how many GPUs.
public struct TraceJob: Codable, Equatable, Sendable {
    public var submit: Timestamp
    public var durationSeconds: Int64
    public var gpus: Int
    /// Who submits it (an org of the simulated cloud).
    public var org: String
    public var tier: Tier
    /// CPU and memory it needs on each node; nil: none asked for.
    public var resources: NodeResources?
    /// A fraction of one GPU (thousandths, with `gpus` 1); nil: whole GPUs.
    public var gpuShareMilli: Int?
    /// Where it may run (node labels, e.g. the GPU types an Alibaba pod accepts); nil: anywhere.
    public var placement: PlacementConstraints?

    public init(
        submit: Timestamp, durationSeconds: Int64, gpus: Int, org: String, tier: Tier = .onDemand,
        resources: NodeResources? = nil
    ) {
        self.resources = resources
        self.submit = submit
        self.durationSeconds = durationSeconds
        self.gpus = gpus
        self.org = org
        self.tier = tier
    }

    /// As a gang of whole nodes of `perNode` GPUs, or one node when it fits on one:
    /// (GPUs per node, nodes); nil when the count does not split evenly.
    public func shape(perNode: Int) -> (gpusPerNode: Int, nodes: Int)? {
        if gpus <= perNode { return (gpus, 1) }
        let nodes = (gpus + perNode - 1) / perNode
        guard gpus % nodes == 0 else { return nil }
        return (gpus / nodes, nodes)
    }
}

/// The Microsoft Philly trace as the AdaptDL authors published it:
/// `timestamp,duration,num_gpus,gpu_time,cluster`, with the timestamp as
/// `2017-10-09 07:01:55` (UTC) and the duration in seconds. The virtual cluster becomes
/// the org (`vc-<cluster>`). Jobs come out in submission order.
public enum PhillyTrace {
    public static let header = "timestamp,duration,num_gpus,gpu_time,cluster"

    public static func parse(_ text: String) throws(StratusError) -> [TraceJob] {
        var jobs: [TraceJob] = []
        for (n, line, f) in try CSVTable.rows(text, header: header, name: "philly trace") {
            guard f.count == 5, let at = parseTime(f[0]), let duration = Double(f[1]), duration.isFinite, duration >= 0,
                let gpus = Int(f[2]), gpus >= 1, !f[4].isEmpty
            else {
                throw StratusError(.invalidArgument, "philly trace: line \(n) is malformed: '\(line.prefix(120))'")
            }
            jobs.append(
                TraceJob(submit: at, durationSeconds: max(1, Int64(duration.rounded(.up))), gpus: gpus, org: "vc-\(f[4])"))
        }
        // A stable sort: equal times keep the file's order.
        return jobs.enumerated().sorted { ($0.element.submit, $0.offset) < ($1.element.submit, $1.offset) }.map(\.element)
    }

    /// `YYYY-MM-DD HH:MM:SS` in UTC.
    static func parseTime(_ s: Substring) -> Timestamp? {
        let u = Array(s.utf8)
        guard u.count == 19, u[4] == 0x2D, u[7] == 0x2D, u[10] == 0x20, u[13] == 0x3A, u[16] == 0x3A else { return nil }
        func num(_ a: Int, _ b: Int) -> Int64? {
            var v: Int64 = 0
            for i in a..<b {
                guard u[i] >= 0x30, u[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(u[i] - 0x30)
            }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13), let mi = num(14, 16),
            let sec = num(17, 19), (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, sec < 61
        else { return nil }
        let days = Civil.days(year: y, month: mo, day: d)
        return Timestamp(seconds: days * 86400 + h * 3600 + mi * 60 + sec)
    }
}

/// Stratus' own trace format, CSV with a header:
/// `submit,duration_seconds,gpus,org,tier`, where `submit` is `2027-01-01T06:00:00Z` (or
/// `2027-01-01 06:00:00`), `tier` is `on_demand`, `spot` or `internal` (empty: on_demand)
/// and `org` is the submitting organization (`internal` for the operator's own work).
public enum StratusTrace {
    public static let header = "submit,duration_seconds,gpus,org,tier"

    public static func parse(_ text: String) throws(StratusError) -> [TraceJob] {
        var jobs: [TraceJob] = []
        for (n, line, f) in try CSVTable.rows(text, header: header, name: "stratus trace") {
            func bad(_ why: String) -> StratusError {
                StratusError(.invalidArgument, "stratus trace: line \(n): \(why): '\(line.prefix(120))'")
            }
            guard f.count == 5 else { throw bad("expected 5 fields") }
            let stamp = f[0].count == 20 && f[0].hasSuffix("Z") ? Substring(f[0].dropLast().map { $0 == "T" ? " " : $0 }) : f[0]
            guard let at = PhillyTrace.parseTime(stamp) else { throw bad("submit is not a UTC time") }
            guard let duration = Int64(f[1]), duration >= 1, duration <= Limits.maxJobDurationSeconds else {
                throw bad("duration_seconds must be 1 to \(Limits.maxJobDurationSeconds)")
            }
            guard let gpus = Int(f[2]), gpus >= 1, gpus <= Limits.maxReservationGPUs else { throw bad("gpus must be positive") }
            let org = String(f[3])
            do { try Name.validate(org, field: "org") } catch { throw bad("org is not a valid name") }
            let tierText = f[4].isEmpty ? "on-demand" : String(f[4].map { $0 == "_" ? "-" : $0 })
            guard let tier = Tier(rawValue: tierText), tier != .reserved else {
                throw bad("tier must be on_demand, spot or internal")
            }
            guard (tier == .internal) == (org == InternalOrg.id.rawValue) else {
                throw bad("the internal tier is the internal org's, and only its")
            }
            jobs.append(TraceJob(submit: at, durationSeconds: duration, gpus: gpus, org: org, tier: tier))
        }
        return jobs.enumerated().sorted { ($0.element.submit, $0.offset) < ($1.element.submit, $1.offset) }.map(\.element)
    }
}

/// Alibaba's cluster-trace-gpu-v2023 ("openb"): the pod table
/// `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time`
/// (times in seconds from the trace's start) and the node table
/// `sn,cpu_milli,memory_mib,gpu,model`.
///
/// What this importer does today, and does not: a pod becomes a job of `num_gpu` whole
/// GPUs, or of a fraction of one GPU (`gpu_milli` below 1000, shared with the org's
/// other work of its tier), with the pod's CPU and memory requests, that runs from its
/// scheduled time (or creation) to its deletion; pods without GPUs are skipped; `BE`
/// (best-effort) pods run as spot, the others on-demand; all pods belong to one org.
/// A pod's `gpu_spec` (the GPU types it accepts) becomes a node selector on the label
/// `alibaba-model`, which the node table's `model` sets: the pod runs only on those types.
/// The node table gives the fleet: one node per row with GPUs, with its GPU count, CPU and
/// memory, labelled with its Alibaba GPU type; the catalog's GPU model (power, prices) is
/// the one the caller names, since Alibaba's types (V100M16, T4, A10...) are not in it.
public enum AlibabaTrace {
    public static let podsHeader =
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"
    public static let nodesHeader = "sn,cpu_milli,memory_mib,gpu,model"

    public struct Import: Sendable {
        public var jobs: [TraceJob]
        /// Pods without GPUs, or that never ran (no deletion time).
        public var skipped: Int
        /// Pods on a fraction of one GPU (`gpu_milli` below 1000).
        public var fractional: Int
        /// Pods that accept only some GPU types (`gpu_spec`).
        public var typed = 0
    }

    /// The node label that carries a node's Alibaba GPU type.
    public static let modelLabel = "alibaba-model"

    /// `start` is the wall time the trace's second 0 maps to.
    public static func parsePods(_ text: String, start: Timestamp, org: String = "alibaba") throws(StratusError) -> Import {
        var out = Import(jobs: [], skipped: 0, fractional: 0)
        for (n, line, f) in try CSVTable.rows(text, header: podsHeader, name: "alibaba pods") {
            guard f.count == 11, let gpus = Int(f[3]), gpus >= 0, let milli = Int(f[4].isEmpty ? "0" : f[4]), milli >= 0,
                let created = Int64(f[8])
            else {
                throw StratusError(.invalidArgument, "alibaba pods: line \(n) is malformed: '\(line.prefix(120))'")
            }
            guard gpus > 0, let deleted = Int64(f[9]) else {
                out.skipped += 1
                continue
            }
            let began = Int64(f[10]) ?? created
            guard deleted > began else {
                out.skipped += 1
                continue
            }
            let resources = try resources(cpu: f[1], memory: f[2], line: n)
            var job = TraceJob(
                submit: start.adding(seconds: created), durationSeconds: deleted - began, gpus: gpus, org: org,
                tier: f[6] == "BE" ? .spot : .onDemand, resources: resources)
            if gpus == 1, milli > 0, milli < 1000 {
                out.fractional += 1
                job.gpuShareMilli = milli
            }
            // `gpu_spec`: the accepted types, `|`-separated (empty: any).
            let types = f[5].split(separator: "|").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
            if !types.isEmpty {
                guard types.count <= Limits.maxSelectorValues else {
                    throw StratusError(
                        .invalidArgument, "alibaba pods: line \(n): gpu_spec lists more than \(Limits.maxSelectorValues) types")
                }
                out.typed += 1
                var placement = PlacementConstraints()
                if types.count == 1 {
                    placement.nodeSelector = [modelLabel: types[0]]
                } else {
                    placement.nodeSelectorAnyOf = [modelLabel: types]
                }
                job.placement = placement
            }
            out.jobs.append(job)
        }
        out.jobs = out.jobs.enumerated().sorted { ($0.element.submit, $0.offset) < ($1.element.submit, $1.offset) }.map(
            \.element)
        return out
    }

    /// The fleet of the node table: nodes with GPUs, in racks of `nodesPerRack`.
    public static func parseNodes(_ text: String, model: String, nodesPerRack: Int = 4) throws(StratusError) -> FleetSpec {
        var spec = FleetSpec()
        spec.regions = ["sim"]
        var nodes: [(String, Int, NodeResources?, String)] = []
        for (n, line, f) in try CSVTable.rows(text, header: nodesHeader, name: "alibaba nodes") {
            guard f.count == 5, let gpus = Int(f[3]), gpus >= 0, gpus <= Limits.maxGPUsPerNode else {
                throw StratusError(.invalidArgument, "alibaba nodes: line \(n) is malformed: '\(line.prefix(120))'")
            }
            let resources = try resources(cpu: f[1], memory: f[2], line: n, table: "alibaba nodes")
            if gpus > 0 { nodes.append((String(f[0]), gpus, resources, String(f[4]).trimmingSpaces())) }
        }
        guard !nodes.isEmpty else { throw StratusError(.invalidArgument, "alibaba nodes: no node with GPUs") }
        let watts = Int64(nodes.reduce(0) { $0 + $1.1 }) * Int64(GPUCatalog.model(named: model)?.powerWatts ?? 1000) * 2
        spec.sites = [.init(id: "sim-dc", region: "sim", powerBudgetKW: max(1, watts / 1000), pueMilli: 1250)]
        for r in 0..<((nodes.count + nodesPerRack - 1) / nodesPerRack) {
            spec.racks.append(.init(id: RackID("rack-\(r + 1)"), site: "sim-dc"))
        }
        for (k, node) in nodes.enumerated() {
            var n = FleetSpec.NodeSpec(
                id: NodeID("node-\(k + 1)"), rack: RackID("rack-\(k / nodesPerRack + 1)"), gpuModel: model, gpuCount: node.1,
                labels: node.3.isEmpty ? ["alibaba-sn": node.0] : ["alibaba-sn": node.0, modelLabel: node.3])
            n.resources = node.2
            spec.nodes.append(n)
        }
        return spec
    }

    /// `cpu_milli` and `memory_mib` of a row: nil when both are 0 (or empty).
    static func resources(cpu: Substring, memory: Substring, line: Int, table: String = "alibaba pods") throws(StratusError)
        -> NodeResources?
    {
        let limit = Limits.maxNodeResources
        guard let c = Int(cpu.isEmpty ? "0" : cpu), let m = Int(memory.isEmpty ? "0" : memory), c >= 0, m >= 0,
            c <= limit.cpuMilli, m <= limit.memoryMiB
        else {
            throw StratusError(.invalidArgument, "\(table): line \(line): cpu_milli or memory_mib is not a valid amount")
        }
        let r = NodeResources(cpuMilli: c, memoryMiB: m)
        return r.isZero ? nil : r
    }
}

/// The rows of a CSV table that must start with `header`: each non-empty line after it,
/// numbered as the parsers' errors count them, with its comma-separated fields.
enum CSVTable {
    static func rows(_ text: String, header: String, name: String) throws(StratusError) -> [(
        number: Int, line: Substring, fields: [Substring]
    )] {
        var rows: [(number: Int, line: Substring, fields: [Substring])] = []
        var sawHeader = false
        var n = 0
        for line in text.split(whereSeparator: \.isNewline) {
            n += 1
            if !sawHeader {
                guard line == header[...] else { throw StratusError(.invalidArgument, "\(name): line 1 must be '\(header)'") }
                sawHeader = true
                continue
            }
            rows.append((n, line, line.split(separator: ",", omittingEmptySubsequences: false)))
        }
        guard sawHeader else { throw StratusError(.invalidArgument, "\(name): empty") }
        return rows
    }
}
