/// What a tenant asks for, in the spirit of SkyPilot and dstack task YAML:
/// ```yaml
/// name: train
/// resources:
///   accelerators: H100:8
///   cpus: 64            # per node, optional
///   memory: 512Gi       # per node, optional
/// num_nodes: 2
/// tier: on-demand
/// run: python train.py
/// envs: {EPOCHS: "3"}
/// max_duration: 2h
/// ```
public struct JobSpec: Codable, Equatable, Sendable {
    public var name: String
    /// Project name within the caller's org; nil means the org's default project.
    public var project: String?
    public var gpuModel: String
    public var gpusPerNode: Int
    public var numNodes: Int
    public var tier: Tier
    public var run: String
    public var envs: [String: String]
    public var maxDurationSeconds: Int64?
    /// When the job goes back to the queue instead of ending.
    public var retry: RetryPolicy
    /// The topology domain a gang must fit in (nil: the smallest that fits, within a site).
    public var topology: TopologyLevel?
    /// Where the job may run (data residency); empty means anywhere.
    public var placement: PlacementConstraints
    /// Other acceptable GPU models (with their own count per node), in order of preference
    /// after `gpuModel`.
    public var alternatives: [Accelerator]
    /// The capacity block the job runs in (tier reserved), if any.
    public var reservation: ReservationID?
    /// `on_budget: spot`: when an on-demand job's projected cost exceeds what the org or
    /// project may still spend, run it as spot (if that fits) instead of refusing it.
    public var budgetFallback: Tier?
    /// `max_price` (spot only): the most the job pays per GPU-hour. It waits while the spot
    /// price is higher, and is preempted with notice when the price rises above it.
    public var maxPrice: Money?
    /// CPU and memory the job needs on each of its nodes (`resources.cpus`,
    /// `resources.memory`); nil: none asked for.
    public var nodeResources: NodeResources?
    /// A fraction of one GPU, in thousandths (`accelerators: H100:0.25` is 250): the job
    /// shares that GPU with work of the same org and tier. nil: whole GPUs.
    public var gpuShareMilli: Int?

    public init(
        name: String, project: String? = nil, gpuModel: String, gpusPerNode: Int, numNodes: Int = 1,
        tier: Tier = .onDemand, run: String, envs: [String: String] = [:], maxDurationSeconds: Int64? = nil,
        retry: RetryPolicy? = nil, topology: TopologyLevel? = nil, placement: PlacementConstraints = .anywhere,
        alternatives: [Accelerator] = [], reservation: ReservationID? = nil
    ) {
        self.reservation = reservation
        self.name = name
        self.project = project
        self.gpuModel = gpuModel
        self.gpusPerNode = gpusPerNode
        self.numNodes = numNodes
        self.tier = tier
        self.run = run
        self.envs = envs
        self.maxDurationSeconds = maxDurationSeconds
        self.retry = retry ?? RetryPolicy.default(for: tier)
        self.topology = topology
        self.placement = placement
        self.alternatives = alternatives
    }

    /// Every acceptable (model, GPUs per node), most preferred first.
    public var acceptable: [Accelerator] { [Accelerator(model: gpuModel, count: gpusPerNode)] + alternatives }

    /// GPUs per node the job takes on nodes of `model`, or nil if it does not accept it.
    public func gpusPerNode(on model: String) -> Int? {
        // The first acceptable choice, without building the list.
        if model == gpuModel { return gpusPerNode }
        return alternatives.first { $0.model == model }?.count
    }

    public var totalGPUs: Int { gpusPerNode * numNodes }

    /// Parses and validates a job document (YAML or JSON, already a tree). Checks that
    /// need the fleet (does any node have that many GPUs?) happen in the state machine.
    public static func parse(_ value: SpecValue) throws(StratusError) -> JobSpec {
        var o = try SpecObject(value, path: "")
        let name = try o.string("name") ?? "job"
        guard !name.isEmpty, name.utf8.count <= Limits.maxNameLength else {
            throw StratusError(.invalidArgument, "name: must be 1 to \(Limits.maxNameLength) characters")
        }
        let project = try o.string("project")
        if let project { try Name.validate(project, field: "project") }

        guard var resources = try o.object("resources") else {
            throw StratusError(.invalidArgument, "resources.accelerators: required (e.g. H100:8)")
        }
        guard let acceleratorsValue = resources.value("accelerators") else {
            throw StratusError(.invalidArgument, "resources.accelerators: required (e.g. H100:8)")
        }
        let perNode = try NodeResources.parse(&resources, limit: Limits.maxNodeResources)
        try resources.finish()
        let share = try parseShare(acceleratorsValue)
        let choices: [Accelerator]
        if let share { choices = [share.0] } else { choices = try parseAcceleratorChoices(acceleratorsValue) }
        let (model, count) = (GPUCatalog.model(named: choices[0].model)!, choices[0].count)

        let numNodes = try o.int("num_nodes") ?? 1
        guard numNodes >= 1 else { throw StratusError(.invalidArgument, "num_nodes: must be at least 1, got \(numNodes)") }
        guard numNodes <= Int64(Limits.maxNodesPerJob) else {
            throw StratusError(.limitExceeded, "num_nodes: at most \(Limits.maxNodesPerJob), got \(numNodes)")
        }

        if share != nil, numNodes != 1 {
            throw StratusError(.invalidArgument, "num_nodes: a fraction of a GPU runs on one node, got \(numNodes)")
        }
        let reservation = try o.string("reservation").map { ReservationID($0) }
        if share != nil, reservation != nil {
            throw StratusError(.invalidArgument, "reservation: capacity blocks hold whole GPUs, not a fraction of one")
        }
        if let reservation { try Name.validate(reservation.rawValue, field: "reservation") }
        let tierText = try o.string("tier") ?? (reservation == nil ? Tier.onDemand : Tier.reserved).rawValue
        guard let tier = Tier(rawValue: tierText) else {
            throw StratusError(
                .invalidArgument, "tier: '\(tierText)' is not one of \(Tier.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if reservation != nil {
            guard tier == .reserved else {
                throw StratusError(
                    .invalidArgument, "tier: a job in a reservation runs in the reserved tier, not \(tier.rawValue)")
            }
            guard choices.count == 1 else {
                throw StratusError(
                    .invalidArgument, "resources.accelerators: a job in a reservation takes the reservation's GPU model only")
            }
        }

        let run = try o.requiredString("run")
        guard !run.trimmingSpaces().isEmpty else { throw StratusError(.invalidArgument, "run: must not be empty") }
        guard run.utf8.count <= Limits.maxRunCommandBytes else {
            throw StratusError(.limitExceeded, "run: longer than \(Limits.maxRunCommandBytes) bytes")
        }

        let envs = try o.stringMap("envs") ?? [:]
        guard envs.count <= Limits.maxJobEnvs else {
            throw StratusError(.limitExceeded, "envs: more than \(Limits.maxJobEnvs) variables")
        }
        for (key, value) in envs {
            guard isEnvName(key) else {
                throw StratusError(.invalidArgument, "envs.\(key): not a valid environment variable name")
            }
            guard !key.hasPrefix("STRATUS_"), key != "CUDA_VISIBLE_DEVICES", key != "NVIDIA_VISIBLE_DEVICES" else {
                throw StratusError(.invalidArgument, "envs.\(key): reserved, set by Stratus")
            }
            guard value.utf8.count <= Limits.maxEnvValueBytes else {
                throw StratusError(.limitExceeded, "envs.\(key): longer than \(Limits.maxEnvValueBytes) bytes")
            }
        }

        var maxDuration: Int64?
        if let v = o.value("max_duration") {
            switch v {
            case .int(let seconds): maxDuration = seconds
            case .string(let text): maxDuration = try DurationText.parseSeconds(text, field: "max_duration")
            default: throw StratusError(.invalidArgument, "max_duration: expected a duration like 2h, got \(v.kindName)")
            }
            guard let d = maxDuration, d > 0 else {
                throw StratusError(.invalidArgument, "max_duration: must be positive")
            }
            guard d <= Limits.maxJobDurationSeconds else {
                throw StratusError(
                    .limitExceeded, "max_duration: at most \(DurationText.format(seconds: Limits.maxJobDurationSeconds))")
            }
        }
        let retry = try o.value("retry").map { v throws(StratusError) in try RetryPolicy.parse(v, tier: tier) }
        var topology: TopologyLevel?
        if let text = try o.string("topology") {
            guard let level = TopologyLevel(rawValue: text) else {
                throw StratusError(
                    .invalidArgument,
                    "topology: '\(text)' is not one of \(TopologyLevel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            topology = level
        }
        var placement = PlacementConstraints.anywhere
        placement.regions = try o.nameList("regions")
        placement.sites = try o.nameList("sites")
        (placement.nodeSelector, placement.nodeSelectorAnyOf) = try o.selector("node_selector")
        var budgetFallback: Tier?
        switch try o.string("on_budget") {
        case nil, "refuse": budgetFallback = nil
        case "spot":
            guard tier == .onDemand else {
                throw StratusError(.invalidArgument, "on_budget: spot is a fallback for on-demand jobs")
            }
            budgetFallback = .spot
        case let other?: throw StratusError(.invalidArgument, "on_budget: '\(other)' is not refuse or spot")
        }
        var maxPrice: Money?
        if let micros = try o.decimal("max_price", scale: Money.microsPerUnit) {
            let price = Money(micros: micros)
            try price.checkAmount(field: "max_price")
            guard tier == .spot || budgetFallback == .spot else {
                throw StratusError(.invalidArgument, "max_price: only spot jobs bid a maximum price")
            }
            maxPrice = price
        }
        try o.finish()
        var spec = JobSpec(
            name: name, project: project, gpuModel: model.name, gpusPerNode: count, numNodes: Int(numNodes),
            tier: tier, run: run, envs: envs, maxDurationSeconds: maxDuration, retry: retry, topology: topology,
            placement: placement, alternatives: Array(choices.dropFirst()), reservation: reservation)
        spec.budgetFallback = budgetFallback
        spec.maxPrice = maxPrice
        spec.nodeResources = perNode.isZero ? nil : perNode
        spec.gpuShareMilli = share?.1
        return spec
    }

    /// `H100:0.25`: a fraction of one GPU (thousandths, 0.001 to 0.999), or nil when the
    /// text asks for whole GPUs.
    static func parseShare(_ value: SpecValue) throws(StratusError) -> (Accelerator, Int)? {
        guard case .string(let text) = value else { return nil }
        let parts = text.trimmingSpaces().split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].contains("."), let milli = DecimalText.parse(String(parts[1]), scale: 1000) else {
            return nil
        }
        let model = try GPUCatalog.require(String(parts[0]), field: "resources.accelerators")
        guard milli >= 1, milli < 1000 else {
            throw StratusError(
                .invalidArgument,
                "resources.accelerators: '\(text)': a fraction of a GPU is 0.001 to 0.999; whole GPUs are written without decimals"
            )
        }
        return (Accelerator(model: model.name, count: 1), Int(milli))
    }

    /// One choice (`H100:8`), a list in order of preference (`[H100:8, H200:8]`) or a
    /// mapping (`{H100: 8, H200: 8}`, in the order written).
    static func parseAcceleratorChoices(_ value: SpecValue) throws(StratusError) -> [Accelerator] {
        var choices: [Accelerator] = []
        switch value {
        case .string(let text):
            let (m, n) = try parseAccelerators(text)
            choices = [Accelerator(model: m.name, count: n)]
        case .array(let items):
            for item in items {
                guard case .string(let text) = item else {
                    throw StratusError(.invalidArgument, "resources.accelerators: each choice must be TYPE:COUNT (e.g. H100:8)")
                }
                let (m, n) = try parseAccelerators(text)
                choices.append(Accelerator(model: m.name, count: n))
            }
        case .object(let pairs):
            for pair in pairs {
                let count: String
                switch pair.value {
                case .int(let i): count = String(i)
                case .string(let s): count = s
                default:
                    throw StratusError(.invalidArgument, "resources.accelerators.\(pair.key): expected a GPU count")
                }
                let (m, n) = try parseAccelerators("\(pair.key):\(count)")
                choices.append(Accelerator(model: m.name, count: n))
            }
        default:
            throw StratusError(.invalidArgument, "resources.accelerators: expected TYPE:COUNT, a list or a mapping")
        }
        guard !choices.isEmpty else { throw StratusError(.invalidArgument, "resources.accelerators: empty") }
        guard Set(choices.map(\.model)).count == choices.count else {
            throw StratusError(.invalidArgument, "resources.accelerators: a GPU model is listed twice")
        }
        return choices
    }

    /// `H100:8`, `h100:8` or `H100` (one GPU).
    static func parseAccelerators(_ text: String) throws(StratusError) -> (GPUModel, Int) {
        let parts = text.trimmingSpaces().split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else {
            throw StratusError(.invalidArgument, "resources.accelerators: '\(text)' is not TYPE:COUNT (e.g. H100:8)")
        }
        let model = try GPUCatalog.require(String(parts[0]), field: "resources.accelerators")
        var count = 1
        if parts.count == 2 {
            guard let n = Int(parts[1]) else {
                throw StratusError(.invalidArgument, "resources.accelerators: count '\(parts[1])' is not an integer")
            }
            count = n
        }
        guard count >= 1 else {
            throw StratusError(.invalidArgument, "resources.accelerators: count must be at least 1, got \(count)")
        }
        guard count <= Limits.maxGPUsPerNode else {
            throw StratusError(
                .invalidArgument, "resources.accelerators: at most \(Limits.maxGPUsPerNode) GPUs per node, got \(count)")
        }
        return (model, count)
    }

    static func isEnvName(_ s: String) -> Bool {
        guard let first = s.utf8.first, !(first >= 0x30 && first <= 0x39) else { return false }
        return s.utf8.allSatisfy { c in
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F
        }
    }
}

public enum JobState: String, Codable, Sendable, CaseIterable {
    /// Waiting for capacity.
    case queued
    /// GPUs are allocated; the agents are starting the processes.
    case starting
    case running
    case succeeded
    case failed
    case cancelled
    /// Stopped to make room for higher-tier work, with no retry left.
    case preempted

    public var isTerminal: Bool {
        self == .succeeded || self == .failed || self == .cancelled || self == .preempted
    }
}

/// One node's share of a job: which GPUs it holds there and how its process fared.
public struct Allocation: Codable, Equatable, Sendable {
    public init(
        node: NodeID, gpus: [Int], rank: Int, startedAt: Timestamp? = nil, endedAt: Timestamp? = nil,
        exitCode: Int32? = nil, endReason: String? = nil, stopRequested: Bool = false, stopDeadline: Timestamp? = nil
    ) {
        self.node = node
        self.gpus = gpus
        self.rank = rank
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.exitCode = exitCode
        self.endReason = endReason
        self.stopRequested = stopRequested
        self.stopDeadline = stopDeadline
    }

    public let node: NodeID
    /// GPU indices on the node, ascending.
    public let gpus: [Int]
    /// Rank of this node within the job (0 for the first).
    public let rank: Int
    public var startedAt: Timestamp?
    public var endedAt: Timestamp?
    public var exitCode: Int32?
    /// Why the process ended, when it was not a plain exit ("max_duration exceeded", "cancelled").
    public var endReason: String?
    /// Set when the control plane asked the agent to stop this process.
    public var stopRequested: Bool
    /// For a preemption: when the agent kills the process if it has not exited.
    public var stopDeadline: Timestamp?
    /// For a preemption: when the notice was given (the SLA on spot notice measures from it).
    public var noticeAt: Timestamp?

    @inlinable public var isEnded: Bool { endedAt != nil }
}

/// A job: what was asked for and what became of it. A value, like every record of the
/// state, but its fields live in one shared box that is copied only when a copy that
/// shares it is changed (copy on write, as `Array` does): a job is read and copied far
/// more often than it changes, and copying a box is one reference count, not one per
/// string and list of the job.
public struct Job: Codable, Equatable, Sendable {
    public init(
        id: JobID, org: OrgID, project: ProjectID, spec: JobSpec, submittedBy: KeyID, submittedAt: Timestamp,
        idempotencyKey: String?, state: JobState = .queued, allocations: [Allocation] = [], startedAt: Timestamp? = nil,
        endedAt: Timestamp? = nil, reason: String? = nil, cancelRequested: Bool = false, attempt: Int = 0,
        preemptedBy: JobID? = nil, events: [JobEvent] = []
    ) {
        box = Box(
            id: id, org: org, project: project, spec: spec, submittedBy: submittedBy, submittedAt: submittedAt,
            idempotencyKey: idempotencyKey, state: state, allocations: allocations, placedAt: nil,
            startedAt: startedAt, endedAt: endedAt, reason: reason, cancelRequested: cancelRequested,
            attempt: attempt, preemptedBy: preemptedBy, lostNode: nil, movedBy: nil, events: events)
    }

    /// Whether allocation `i` is on `node`, of run `attempt`, and has not ended.
    @inlinable
    public func isLive(_ i: Int, on node: NodeID, attempt: Int) -> Bool {
        let b = box
        return b.attempt == attempt && i < b.allocations.count && b.allocations[i].node == node
            && !b.allocations[i].isEnded
    }

    /// Appends an event, dropping the oldest beyond `Limits.maxJobEvents`.
    public mutating func record(_ kind: String, _ message: String, at: Timestamp) {
        // Room for a job's usual life (submitted, placed, started, ended) at once.
        if events.isEmpty { events.reserveCapacity(4) }
        events.append(JobEvent(at: at, kind: kind, message: message))
        if events.count > Limits.maxJobEvents { events.removeFirst(events.count - Limits.maxJobEvents) }
    }

    /// The fields; shared by copies of the job until one of them changes.
    @usableFromInline var box: Box

    /// Makes the box this job's own before a change.
    @inlinable mutating func own() {
        if !isKnownUniquelyReferenced(&box) { box = box.copy() }
    }
    public var id: JobID {
        @inlinable _read { yield box.id }
    }

    public var org: OrgID {
        @inlinable _read { yield box.org }
    }

    public var project: ProjectID {
        @inlinable _read { yield box.project }
    }

    /// What was asked for; it never changes.
    public var spec: JobSpec {
        @inlinable _read { yield box.spec }
    }

    public var submittedBy: KeyID {
        @inlinable _read { yield box.submittedBy }
    }

    @inlinable public var submittedAt: Timestamp { box.submittedAt }

    public var idempotencyKey: String? {
        @inlinable _read { yield box.idempotencyKey }
        @inlinable _modify {
            own()
            yield &box.idempotencyKey
        }
    }

    public var state: JobState {
        @inlinable get { box.state }
        @inlinable _modify {
            own()
            yield &box.state
        }
    }

    public var allocations: [Allocation] {
        @inlinable _read { yield box.allocations }
        @inlinable _modify {
            own()
            yield &box.allocations
        }
    }

    /// When the scheduler last placed it (its current run's placement).
    public var placedAt: Timestamp? {
        @inlinable get { box.placedAt }
        @inlinable _modify {
            own()
            yield &box.placedAt
        }
    }

    public var startedAt: Timestamp? {
        @inlinable get { box.startedAt }
        @inlinable _modify {
            own()
            yield &box.startedAt
        }
    }

    public var endedAt: Timestamp? {
        @inlinable get { box.endedAt }
        @inlinable _modify {
            own()
            yield &box.endedAt
        }
    }

    /// Why the job is in its state, in words ("exit code 3 on node-2", "cancelled by key k-2").
    public var reason: String? {
        @inlinable _read { yield box.reason }
        @inlinable _modify {
            own()
            yield &box.reason
        }
    }

    public var cancelRequested: Bool {
        @inlinable get { box.cancelRequested }
        @inlinable _modify {
            own()
            yield &box.cancelRequested
        }
    }

    /// Runs so far that ended in a requeue (0 for the first run).
    public var attempt: Int {
        @inlinable get { box.attempt }
        @inlinable _modify {
            own()
            yield &box.attempt
        }
    }

    /// Set while the job is being preempted: by whom.
    public var preemptedBy: JobID? {
        @inlinable _read { yield box.preemptedBy }
        @inlinable _modify {
            own()
            yield &box.preemptedBy
        }
    }

    /// Set when a node it ran on was lost (its retry policy's `node_lost` decides what follows).
    public var lostNode: NodeID? {
        @inlinable _read { yield box.lostNode }
        @inlinable _modify {
            own()
            yield &box.lostNode
        }
    }

    /// Set when an operator drained a node it ran on with `requeue`: it goes back to the
    /// queue whatever its retry policy says.
    public var movedBy: String? {
        @inlinable _read { yield box.movedBy }
        @inlinable _modify {
            own()
            yield &box.movedBy
        }
    }

    /// What happened to the job, oldest first, at most `Limits.maxJobEvents`.
    public var events: [JobEvent] {
        @inlinable _read { yield box.events }
        @inlinable _modify {
            own()
            yield &box.events
        }
    }

}

extension Job {
    /// A job's fields. Changed only through a job that holds the only reference to it
    /// (`own()`), so sharing it between threads is safe, as with `Array`'s buffer.
    @usableFromInline final class Box: Codable, @unchecked Sendable {
        @usableFromInline let id: JobID
        @usableFromInline let org: OrgID
        @usableFromInline let project: ProjectID
        @usableFromInline let spec: JobSpec
        @usableFromInline let submittedBy: KeyID
        @usableFromInline let submittedAt: Timestamp
        @usableFromInline @exclusivity(unchecked) var idempotencyKey: String?
        @usableFromInline @exclusivity(unchecked) var state: JobState
        @usableFromInline @exclusivity(unchecked) var allocations: [Allocation]
        @usableFromInline @exclusivity(unchecked) var placedAt: Timestamp?
        @usableFromInline @exclusivity(unchecked) var startedAt: Timestamp?
        @usableFromInline @exclusivity(unchecked) var endedAt: Timestamp?
        @usableFromInline @exclusivity(unchecked) var reason: String?
        @usableFromInline @exclusivity(unchecked) var cancelRequested: Bool
        @usableFromInline @exclusivity(unchecked) var attempt: Int
        @usableFromInline @exclusivity(unchecked) var preemptedBy: JobID?
        @usableFromInline @exclusivity(unchecked) var lostNode: NodeID?
        @usableFromInline @exclusivity(unchecked) var movedBy: String?
        @usableFromInline @exclusivity(unchecked) var events: [JobEvent]

        @usableFromInline init(
            id: JobID, org: OrgID, project: ProjectID, spec: JobSpec, submittedBy: KeyID, submittedAt: Timestamp,
            idempotencyKey: String?, state: JobState, allocations: [Allocation], placedAt: Timestamp?, startedAt: Timestamp?,
            endedAt: Timestamp?, reason: String?, cancelRequested: Bool, attempt: Int, preemptedBy: JobID?, lostNode: NodeID?,
            movedBy: String?, events: [JobEvent]
        ) {
            self.id = id
            self.org = org
            self.project = project
            self.spec = spec
            self.submittedBy = submittedBy
            self.submittedAt = submittedAt
            self.idempotencyKey = idempotencyKey
            self.state = state
            self.allocations = allocations
            self.placedAt = placedAt
            self.startedAt = startedAt
            self.endedAt = endedAt
            self.reason = reason
            self.cancelRequested = cancelRequested
            self.attempt = attempt
            self.preemptedBy = preemptedBy
            self.lostNode = lostNode
            self.movedBy = movedBy
            self.events = events
        }

        @usableFromInline func copy() -> Box {
            Box(
                id: id, org: org, project: project, spec: spec, submittedBy: submittedBy, submittedAt: submittedAt,
                idempotencyKey: idempotencyKey, state: state, allocations: allocations, placedAt: placedAt, startedAt: startedAt,
                endedAt: endedAt, reason: reason, cancelRequested: cancelRequested, attempt: attempt, preemptedBy: preemptedBy,
                lostNode: lostNode, movedBy: movedBy, events: events)
        }
    }

    public static func == (a: Job, b: Job) -> Bool {
        let (x, y) = (a.box, b.box)
        if x === y { return true }
        return x.id == y.id
            && x.org == y.org
            && x.project == y.project
            && x.spec == y.spec
            && x.submittedBy == y.submittedBy
            && x.submittedAt == y.submittedAt
            && x.idempotencyKey == y.idempotencyKey
            && x.state == y.state
            && x.allocations == y.allocations
            && x.placedAt == y.placedAt
            && x.startedAt == y.startedAt
            && x.endedAt == y.endedAt
            && x.reason == y.reason
            && x.cancelRequested == y.cancelRequested
            && x.attempt == y.attempt
            && x.preemptedBy == y.preemptedBy
            && x.lostNode == y.lostNode
            && x.movedBy == y.movedBy
            && x.events == y.events
    }

    /// A job encodes as its fields (the box's, in their order), as when they were the job's own.
    public init(from decoder: any Decoder) throws { box = try Box(from: decoder) }

    public func encode(to encoder: any Encoder) throws { try box.encode(to: encoder) }
}

/// A notable moment in a job's life, for people and the API.
public struct JobEvent: Codable, Equatable, Sendable {
    public let at: Timestamp
    public let kind: String
    public let message: String

    public init(at: Timestamp, kind: String, message: String) {
        self.at = at
        self.kind = kind
        self.message = message
    }
}

/// Topology domains, smallest first.
/// The domains of the topology tree, smallest first: a rack (one NVLink domain), a block
/// (racks on one spine), a site.
public enum TopologyLevel: String, Codable, Sendable, CaseIterable {
    case rack
    case block
    case site
}

/// When a job returns to the queue instead of ending (like dstack's `retry.on_events`).
public struct RetryPolicy: Codable, Equatable, Sendable {
    public enum Event: String, Codable, Sendable, CaseIterable {
        /// Stopped to make room for higher-tier work.
        case preemption
        /// A process exited non-zero or was stopped by its deadline.
        case error
        /// A node it ran on stopped heartbeating and was declared lost.
        case nodeLost = "node_lost"
    }

    public var onEvents: [Event]
    public var limit: Int

    public init(onEvents: [Event], limit: Int) {
        self.onEvents = onEvents
        self.limit = limit
    }

    public static let never = RetryPolicy(onEvents: [], limit: 0)

    /// Every tier requeues work whose node was lost (as Slurm requeues batch jobs on node
    /// failure); spot work also requeues when preempted.
    public static func `default`(for tier: Tier) -> RetryPolicy {
        tier == .spot
            ? RetryPolicy(onEvents: [.preemption, .nodeLost], limit: Limits.maxRetries)
            : RetryPolicy(onEvents: [.nodeLost], limit: Limits.defaultNodeLostRetries)
    }

    public func allows(_ event: Event, attempt: Int) -> Bool { onEvents.contains(event) && attempt < limit }

    /// `retry: false`, `retry: true` (on preemption and node loss) or
    /// `retry: {on_events: [preemption, error, node_lost], limit: 3}`.
    static func parse(_ value: SpecValue, tier: Tier) throws(StratusError) -> RetryPolicy {
        if case .bool(let on) = value {
            return on ? RetryPolicy(onEvents: [.preemption, .nodeLost], limit: Limits.maxRetries) : .never
        }
        var o = try SpecObject(value, path: "retry")
        var events: [Event] = [.preemption, .nodeLost]
        if let list = try o.array("on_events") {
            events = []
            for item in list {
                guard case .string(let text) = item, let e = Event(rawValue: text == "interruption" ? "preemption" : text)
                else {
                    throw StratusError(
                        .invalidArgument, "retry.on_events: each must be one of preemption, error, node_lost")
                }
                if !events.contains(e) { events.append(e) }
            }
        }
        let limit = try o.int("limit") ?? Int64(Limits.maxRetries)
        guard limit >= 0, limit <= Int64(Limits.maxRetries) else {
            throw StratusError(.invalidArgument, "retry.limit: must be between 0 and \(Limits.maxRetries)")
        }
        try o.finish()
        return RetryPolicy(onEvents: events, limit: Int(limit))
    }
}

/// Where a job may run: allowed regions and sites (data residency) and node labels that
/// must match. Empty lists allow everything.
public struct PlacementConstraints: Codable, Equatable, Sendable {
    public var regions: [String]
    public var sites: [String]
    /// Labels a node must have, with these values.
    public var nodeSelector: [String: String]
    /// Labels a node must have with one of several values (`node_selector: {gpu: [a, b]}`,
    /// like Kubernetes' `In`): key -> the values accepted.
    public var nodeSelectorAnyOf: [String: [String]]

    public init(
        regions: [String] = [], sites: [String] = [], nodeSelector: [String: String] = [:],
        nodeSelectorAnyOf: [String: [String]] = [:]
    ) {
        self.regions = regions
        self.sites = sites
        self.nodeSelector = nodeSelector
        self.nodeSelectorAnyOf = nodeSelectorAnyOf
    }

    enum CodingKeys: String, CodingKey { case regions, sites, nodeSelector, nodeSelectorAnyOf }

    /// Specs logged before any-of selectors existed decode with none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        regions = try c.decode([String].self, forKey: .regions)
        sites = try c.decode([String].self, forKey: .sites)
        nodeSelector = try c.decode([String: String].self, forKey: .nodeSelector)
        nodeSelectorAnyOf = try c.decodeIfPresent([String: [String]].self, forKey: .nodeSelectorAnyOf) ?? [:]
    }

    /// Encodes any-of selectors only when there are some, so specs without them encode as before.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(regions, forKey: .regions)
        try c.encode(sites, forKey: .sites)
        try c.encode(nodeSelector, forKey: .nodeSelector)
        if !nodeSelectorAnyOf.isEmpty { try c.encode(nodeSelectorAnyOf, forKey: .nodeSelectorAnyOf) }
    }

    public static let anywhere = PlacementConstraints()

    public var isAnywhere: Bool { regions.isEmpty && sites.isEmpty && !selectsLabels }

    /// Whether the job asks for node labels (so nodes must be checked one by one).
    public var selectsLabels: Bool { !nodeSelector.isEmpty || !nodeSelectorAnyOf.isEmpty }

    public func allows(region: String, site: String) -> Bool {
        (regions.isEmpty || regions.contains(region)) && (sites.isEmpty || sites.contains(site))
    }

    public func matches(_ labels: [String: String]) -> Bool {
        nodeSelector.allSatisfy { labels[$0.key] == $0.value }
            && nodeSelectorAnyOf.allSatisfy { key, values in labels[key].map(values.contains) ?? false }
    }

    /// The labels asked for, in words ("fabric=infiniband,gpu in (a|b)").
    public var labelsDescription: String {
        let exact = nodeSelector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let anyOf = nodeSelectorAnyOf.sorted { $0.key < $1.key }.map { "\($0.key) in (\($0.value.joined(separator: "|")))" }
        return (exact + anyOf).joined(separator: ",")
    }
}

/// One acceptable GPU model and how many of them a job takes per node.
public struct Accelerator: Codable, Equatable, Sendable, CustomStringConvertible {
    public let model: String
    public let count: Int

    public init(model: String, count: Int) {
        self.model = model
        self.count = count
    }

    public var description: String { "\(model):\(count)" }
}
