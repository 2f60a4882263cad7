/// A capacity block: `gpus` GPUs of one model (in one site, or anywhere in the fleet)
/// held for one project from `start` until `end`. Only jobs that name it run in it, in
/// the reserved tier; while its jobs do not use it, spot work may, and is preempted when
/// they need it.
/// GPUs of a capacity block whose work a lost node interrupted, from the loss until the
/// work ran again (or ended): capacity not delivered, for the availability SLA.
public struct Outage: Codable, Equatable, Sendable {
    public let job: JobID
    public let gpus: Int
    public let from: Timestamp
    public var to: Timestamp?

    public init(job: JobID, gpus: Int, from: Timestamp, to: Timestamp? = nil) {
        self.job = job
        self.gpus = gpus
        self.from = from
        self.to = to
    }
}

public struct Reservation: Codable, Equatable, Sendable {
    public let id: ReservationID
    public let org: OrgID
    public let project: ProjectID
    public let gpuModel: String
    public let gpus: Int
    /// For a block of whole racks (NVLink domains): the racks, chosen when it was accepted;
    /// only its jobs (and spot) run on them during the block. Empty: any GPUs of the model.
    public let racks: [RackID]
    /// nil: anywhere in the fleet.
    public let site: SiteID?
    public let start: Timestamp
    public let end: Timestamp
    /// Its GPUs are held from this long before the start (the deployment's preemption
    /// notice when it was accepted), so that spot work can be stopped with notice in time.
    public let leadSeconds: Int64
    public let createdAt: Timestamp
    public var cancelledAt: Timestamp?

    public init(
        id: ReservationID, org: OrgID, project: ProjectID, gpuModel: String, gpus: Int, site: SiteID?, start: Timestamp,
        end: Timestamp, leadSeconds: Int64 = Limits.defaultPreemptionNoticeSeconds, createdAt: Timestamp,
        racks: [RackID] = []
    ) {
        self.racks = racks
        self.leadSeconds = leadSeconds
        self.id = id
        self.org = org
        self.project = project
        self.gpuModel = gpuModel
        self.gpus = gpus
        self.site = site
        self.start = start
        self.end = end
        self.createdAt = createdAt
    }

    /// When its GPUs start being held: `leadSeconds` before the start.
    public var holdFrom: Timestamp { start.adding(seconds: -leadSeconds) }

    /// Whether it holds capacity at some moment of [from, to).
    public func overlaps(from: Timestamp, to: Timestamp) -> Bool { cancelledAt == nil && holdFrom < to && from < end }

    public func status(at now: Timestamp) -> String {
        if cancelledAt != nil { return "cancelled" }
        return now < start ? "scheduled" : now < end ? "active" : "ended"
    }
}

/// A reservation request as people write it:
/// `{gpu: H100, gpus: 64, start: 2026-12-01T00:00:00Z, duration: 7d, site: ams}`, or with
/// `racks: 2` instead of `gpus`, two whole racks (NVL72 domains) of the model.
/// `start` may be `now` or `+2h` (from the time of the request); `end` may replace `duration`.
public struct ReservationSpec: Codable, Equatable, Sendable {
    public enum Start: Codable, Equatable, Sendable {
        case at(Timestamp)
        case after(seconds: Int64)
    }
    public var project: String?
    public var gpuModel: String
    /// GPUs, or 0 when `racks` is given.
    public var gpus: Int
    /// Whole racks, or nil.
    public var racks: Int?
    public var site: SiteID?
    public var start: Start
    /// Either a length or an end time.
    public var durationSeconds: Int64?
    public var end: Timestamp?

    public init(
        project: String? = nil, gpuModel: String, gpus: Int, racks: Int? = nil, site: SiteID? = nil, start: Start,
        durationSeconds: Int64? = nil, end: Timestamp? = nil
    ) {
        self.project = project
        self.gpuModel = gpuModel
        self.racks = racks
        self.gpus = gpus
        self.site = site
        self.start = start
        self.durationSeconds = durationSeconds
        self.end = end
    }

    /// The window it asks for, with relative times taken from `now`.
    public func window(now: Timestamp) -> (start: Timestamp, end: Timestamp) {
        let s: Timestamp
        switch start {
        case .at(let t): s = t
        case .after(let seconds): s = now.adding(seconds: seconds)
        }
        return (s, end ?? s.adding(seconds: durationSeconds ?? 0))
    }

    public static func parse(_ value: SpecValue) throws(StratusError) -> ReservationSpec {
        var o = try SpecObject(value, path: "")
        let project = try o.string("project")
        if let project { try Name.validate(project, field: "project") }
        guard let modelName = try o.string("gpu") else {
            throw StratusError(.invalidArgument, "gpu: required (a GPU model, e.g. H100)")
        }
        let model = try GPUCatalog.require(modelName, field: "gpu")
        let racks = try o.int("racks")
        if let racks {
            guard racks >= 1, racks <= Int64(Limits.maxReservationRacks) else {
                throw StratusError(.invalidArgument, "racks: must be between 1 and \(Limits.maxReservationRacks), got \(racks)")
            }
        }
        let gpusValue = try o.int("gpus")
        guard (gpusValue == nil) != (racks == nil) else {
            throw StratusError(.invalidArgument, "gpus: give either gpus or racks")
        }
        let gpus = gpusValue ?? 0
        guard racks != nil || gpus >= 1 else { throw StratusError(.invalidArgument, "gpus: must be at least 1, got \(gpus)") }
        guard gpus <= Limits.maxReservationGPUs else {
            throw StratusError(.limitExceeded, "gpus: at most \(Limits.maxReservationGPUs), got \(gpus)")
        }
        let site = try o.string("site").map { SiteID($0) }
        let startText = try o.string("start") ?? "now"
        let start: Start
        if startText == "now" {
            start = .after(seconds: 0)
        } else if startText.hasPrefix("+") {
            start = .after(seconds: try DurationText.parseSeconds(String(startText.dropFirst()), field: "start"))
        } else if let t = ISO8601.parse(startText) {
            start = .at(t)
        } else {
            throw StratusError(
                .invalidArgument, "start: '\(startText)' is not now, +DURATION or an RFC 3339 time like 2026-12-01T00:00:00Z")
        }
        var duration: Int64?
        if let v = o.value("duration") {
            switch v {
            case .int(let seconds): duration = seconds
            case .string(let text): duration = try DurationText.parseSeconds(text, field: "duration")
            default: throw StratusError(.invalidArgument, "duration: expected a duration like 7d, got \(v.kindName)")
            }
        }
        var end: Timestamp?
        if let text = try o.string("end") {
            guard let t = ISO8601.parse(text) else {
                throw StratusError(.invalidArgument, "end: '\(text)' is not an RFC 3339 time like 2026-12-08T00:00:00Z")
            }
            end = t
        }
        guard (duration == nil) != (end == nil) else {
            throw StratusError(.invalidArgument, "duration: give either duration or end")
        }
        if let duration {
            guard duration > 0 else { throw StratusError(.invalidArgument, "duration: must be positive") }
            guard duration <= Limits.maxReservationSeconds else {
                throw StratusError(
                    .limitExceeded, "duration: at most \(DurationText.format(seconds: Limits.maxReservationSeconds))")
            }
        }
        try o.finish()
        return ReservationSpec(
            project: project, gpuModel: model.name, gpus: Int(gpus), racks: racks.map { Int($0) }, site: site, start: start,
            durationSeconds: duration,
            end: end)
    }
}

extension ISO8601 {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)`; nil if it is not that.
    public static func parse(_ text: String) -> Timestamp? {
        let b = Array(text.utf8)
        func num(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= b.count else { return nil }
            var v: Int64 = 0
            for i in from..<(from + count) {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                v = v * 10 + Int64(b[i] - 48)
            }
            return v
        }
        guard b.count >= 20, b[4] == 45, b[7] == 45, b[10] == 84 || b[10] == 116, b[13] == 58, b[16] == 58,
            let y = num(0, 4), let m = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2),
            let s = num(17, 2), (1...12).contains(m), (1...31).contains(d), h < 24, mi < 60, s < 61
        else { return nil }
        var i = 19
        var ms: Int64 = 0
        if i < b.count, b[i] == 46 {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 3 { ms = ms * 10 + Int64(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            if digits < 3 { for _ in digits..<3 { ms *= 10 } }
        }
        var offset: Int64 = 0
        guard i < b.count else { return nil }
        if b[i] == 90 || b[i] == 122 {
            i += 1
        } else if b[i] == 43 || b[i] == 45, let oh = num(i + 1, 2), b.count > i + 3, b[i + 3] == 58, let om = num(i + 4, 2) {
            offset = (oh * 60 + om) * 60_000 * (b[i] == 43 ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        // days from civil (H. Hinnant)
        let yy = m <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let mp = (m + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Timestamp(milliseconds: ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms - offset)
    }
}
