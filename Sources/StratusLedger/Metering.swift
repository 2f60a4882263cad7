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

    /// A stable 64-bit digest of the content (FNV-1a): a retry with the same id must
    /// carry the same digest. Independent of process and platform, so it survives replay.
    public var fingerprint: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ s: String) {
            for b in s.utf8 {
                h ^= UInt64(b)
                h &*= 0x0100_0000_01b3
            }
            h ^= 0xff
            h &*= 0x0100_0000_01b3
        }
        func mix(_ v: Int64) {
            var x = UInt64(bitPattern: v)
            for _ in 0..<8 {
                h ^= x & 0xff
                h &*= 0x0100_0000_01b3
                x >>= 8
            }
        }
        mix(org.rawValue)
        mix(project)
        mix(gpuModel)
        mix(region)
        mix(tier.rawValue)
        mix(Int64(gpus))
        mix(start.milliseconds)
        mix(end.milliseconds)
        mix(subject ?? "")
        return h
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
/// 128-bit FNV-1a digest of `source` and `id`: 16 bytes however long the id, cheap to hash
/// and to rehash as the set grows. Two different ids share a digest with probability
/// about n^2 / 2^129 (1e-15 after 10^12 events), and only operators post usage.
struct EventKey: Hashable, Codable, Sendable {
    var high: UInt64
    var low: UInt64

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    init(source: String, id: String) {
        var h: UInt128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d
        let prime: UInt128 = 0x0000_0000_0100_0000_0000_0000_0000_013b
        for b in source.utf8 {
            h ^= UInt128(b)
            h &*= prime
        }
        h ^= 0xff
        h &*= prime
        for b in id.utf8 {
            h ^= UInt128(b)
            h &*= prime
        }
        high = UInt64(truncatingIfNeeded: h >> 64)
        low = UInt64(truncatingIfNeeded: h)
    }
}
