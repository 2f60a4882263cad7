import StratusCore

/// GPU time used, from the control plane's own allocations or from an outside source
/// (posted as CloudEvents). `source` + `id` identify it: the same pair twice counts once.
public struct UsageEvent: Codable, Equatable, Sendable {
    public var source: String
    public var id: String
    public var org: OrgID
    /// Project name within the org.
    public var project: String
    public var gpuModel: String
    public var region: String
    public var tier: Tier
    public var gpus: Int
    public var start: Timestamp
    public var end: Timestamp
    /// What used it (a job ID, or the source's own name for it).
    public var subject: String?
    /// A fraction of one GPU (thousandths), billed as that share of its time; nil: whole GPUs.
    public var gpuShareMilli: Int?

    public init(
        source: String, id: String, org: OrgID, project: String, gpuModel: String, region: String, tier: Tier, gpus: Int,
        start: Timestamp, end: Timestamp, subject: String? = nil
    ) {
        self.source = source
        self.id = id
        self.org = org
        self.project = project
        self.gpuModel = gpuModel
        self.region = region
        self.tier = tier
        self.gpus = gpus
        self.start = start
        self.end = end
        self.subject = subject
    }

    /// The source of usage the control plane measures itself (allocations that ended).
    public static let allocationSource = "stratus/allocations"

    var key: EventKey { EventKey(source: source, id: id) }

    /// Checks what can be checked without state: sizes, order of times, the catalog.
    public func validate() throws(StratusError) {
        guard !id.isEmpty, id.utf8.count <= Limits.maxUsageIDBytes else {
            throw StratusError(.invalidArgument, "id: must be 1 to \(Limits.maxUsageIDBytes) bytes")
        }
        guard !source.isEmpty, source.utf8.count <= Limits.maxUsageIDBytes else {
            throw StratusError(.invalidArgument, "source: must be 1 to \(Limits.maxUsageIDBytes) bytes")
        }
        if let subject, subject.utf8.count > Limits.maxUsageIDBytes {
            throw StratusError(.invalidArgument, "subject: longer than \(Limits.maxUsageIDBytes) bytes")
        }
        _ = try GPUCatalog.require(gpuModel, field: "gpu_model")
        if region != SKU.anyRegion { try Name.validate(region, field: "region") }
        guard gpus >= 1, gpus <= Limits.maxGPUsPerUsageEvent else {
            throw StratusError(.invalidArgument, "gpus: must be 1 to \(Limits.maxGPUsPerUsageEvent), got \(gpus)")
        }
        guard start <= end else { throw StratusError(.invalidArgument, "end: \(end) is before start \(start)") }
        guard start.milliseconds(until: end) <= Limits.maxUsageEventSeconds * 1000 else {
            throw StratusError(
                .invalidArgument, "end: one event covers at most \(Limits.maxUsageEventSeconds / 86400) days; split it")
        }
    }

    /// A stable 64-bit digest of the content: a retry with the same id must carry the
    /// same digest. Independent of process and platform, so it survives replay.
    public var fingerprint: UInt64 {
        var h = WordDigest()
        h.add(org.rawValue)
        h.add(project)
        h.add(gpuModel)
        h.add(region)
        h.add(tier.rawValue)
        h.add(UInt64(gpus))
        h.add(UInt64(bitPattern: start.milliseconds))
        h.add(UInt64(bitPattern: end.milliseconds))
        h.add(subject ?? "")
        if let share = gpuShareMilli { h.add(UInt64(share)) }
        return h.a
    }

    /// Billed seconds: the event's span widened to whole seconds (per-second billing).
    public var startSecond: Int64 { Self.floorDiv(start.milliseconds, 1000) }
    public var endSecond: Int64 { -Self.floorDiv(-end.milliseconds, 1000) }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
}

/// What the meter remembers of an event it counted: enough to recognise a retry.
struct SeenEvent: Codable, Equatable, Sendable {
    var fingerprint: UInt64
    /// Seconds since the epoch of the event's end; ids are forgotten once this is
    /// older than the late window, when a resend would be refused as too late anyway.
    var endSecond: Int64
}

/// An event's identity (CloudEvents ids are unique within their source), kept as a
/// 128-bit digest of `source` and `id` (two independent 64-bit lanes of `WordDigest`):
/// 16 bytes however long the id, cheap to hash and to rehash as the set grows. Two
/// different ids share a digest with probability about n^2 / 2^129 (1e-15 after 10^12
/// events), and only operators post usage.
struct EventKey: Hashable, Codable, Sendable {
    var high: UInt64
    var low: UInt64

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    init(source: String, id: String) {
        var h = WordDigest()
        h.add(source)
        h.add(id)
        high = h.a
        low = h.b
    }
}
