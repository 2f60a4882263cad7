import StratusCore

/// One job of a workload trace: when it arrives, how long it runs, how many GPUs.
public struct TraceJob: Codable, Equatable, Sendable {
    public var submit: Timestamp
    public var durationSeconds: Int64
    public var gpus: Int
    /// Who submits it (an org of the simulated cloud).
    public var org: String
    public var tier: Tier

    public init(submit: Timestamp, durationSeconds: Int64, gpus: Int, org: String, tier: Tier = .onDemand) {
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
        var sawHeader = false
        var n = 0
        for line in text.split(whereSeparator: \.isNewline) {
            n += 1
            if line.isEmpty { continue }
            if !sawHeader {
                guard line == header[...] else {
                    throw StratusError(.invalidArgument, "philly trace: line 1 must be '\(header)'")
                }
                sawHeader = true
                continue
            }
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            guard f.count == 5, let at = parseTime(f[0]), let duration = Double(f[1]), duration.isFinite, duration >= 0,
                let gpus = Int(f[2]), gpus >= 1, !f[4].isEmpty
            else {
                throw StratusError(.invalidArgument, "philly trace: line \(n) is malformed: '\(line.prefix(120))'")
            }
            jobs.append(
                TraceJob(submit: at, durationSeconds: max(1, Int64(duration.rounded(.up))), gpus: gpus, org: "vc-\(f[4])"))
        }
        guard sawHeader else { throw StratusError(.invalidArgument, "philly trace: empty") }
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
