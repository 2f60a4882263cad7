import Hummingbird
import StratusControl
import StratusCore
import StratusLedger
import StratusScheduler

/// The API's JSON shapes. Keys are snake_case, times are RFC 3339 strings.
struct Page<T: Encodable>: Encodable {
    let items: [T]
    let nextCursor: String?
}

enum Pagination {
    /// The request's `limit` (default `byDefault`), checked against `Limits.maxPageSize`.
    static func limit(_ request: Request, byDefault: Int = Limits.defaultPageSize) throws(StratusError) -> Int {
        let limit = try request.queryInt("limit") ?? byDefault
        guard limit >= 1, limit <= Limits.maxPageSize else {
            throw StratusError(.invalidArgument, "limit: must be between 1 and \(Limits.maxPageSize)")
        }
        return limit
    }

    /// Items after `cursor` (by `key`) in the given order, at most `limit`.
    static func page<T, V: Encodable>(
        _ items: [T], key: (T) -> String, request: Request, view: (T) -> V
    ) throws(StratusError) -> Page<V> {
        let limit = try Self.limit(request)
        var start = 0
        if let cursor = request.query("cursor") {
            guard let i = items.firstIndex(where: { key($0) == cursor }) else {
                throw StratusError(.invalidArgument, "cursor: '\(cursor)' is not in this list")
            }
            start = i + 1
        }
        let slice = items[min(start, items.count)..<min(start + limit, items.count)]
        let next = start + limit < items.count ? slice.last.map(key) : nil
        return Page(items: slice.map(view), nextCursor: next)
    }
}

struct OrgView: Encodable {
    let name: String
    let displayName: String
    let weight: Int
    let createdAt: String
    init(_ o: Org) {
        name = o.id.rawValue
        displayName = o.displayName
        weight = o.weight
        createdAt = o.createdAt.description
    }
}

struct FairShareView: Encodable {
    let org: String
    let weight: Int
    let usageGpuHours: Double
    let runningGpus: Int
    let score: Double
    let share: Double
    init(_ s: FairShare.Standing) {
        org = s.org.rawValue
        weight = s.weight
        usageGpuHours = s.usageGPUHours
        runningGpus = s.runningGPUs
        score = s.score
        share = s.share
    }
}

struct ProjectView: Encodable {
    let id: String
    let org: String
    let name: String
    let createdAt: String
    init(_ p: Project) {
        id = p.id.rawValue
        org = p.org.rawValue
        name = p.name
        createdAt = p.createdAt.description
    }
}

struct MemberView: Encodable {
    let id: String
    let org: String
    let email: String
    let role: String
    init(_ m: Member) {
        id = m.id.rawValue
        org = m.org.rawValue
        email = m.email
        role = m.role.rawValue
    }
}

struct KeyView: Encodable {
    let id: String
    let org: String?
    let role: String
    let name: String
    let hint: String
    let createdAt: String
    let revokedAt: String?
    /// Present only in the response that creates the key.
    let secret: String?
    init(_ k: APIKey, secret: String? = nil) {
        id = k.id.rawValue
        org = k.org?.rawValue
        role = k.role.rawValue
        name = k.name
        hint = k.hint
        createdAt = k.createdAt.description
        revokedAt = k.revokedAt?.description
        self.secret = secret
    }
}

struct AllocationView: Encodable {
    let node: String
    let rank: Int
    let gpus: [Int]
    let startedAt: String?
    let endedAt: String?
    let exitCode: Int32?
    let endReason: String?
}

struct JobView: Encodable {
    struct Resources: Encodable {
        let accelerators: String
        /// Every acceptable choice, most preferred first (when there is more than one).
        let anyOf: [String]?
        /// Per node, as asked for: cores (a decimal) and memory (e.g. 64Gi).
        let cpus: String?
        let memory: String?
    }
    let id: String
    let name: String
    let org: String
    let project: String
    let state: String
    let tier: String
    let resources: Resources
    let numNodes: Int
    let run: String
    let envs: [String: String]
    let maxDuration: String?
    let submittedAt: String
    /// When the scheduler placed its current run (its agents then start it).
    let placedAt: String?
    let startedAt: String?
    let endedAt: String?
    let reason: String?
    let waitReason: String?
    let queuePosition: Int?
    let allocations: [AllocationView]
    let attempt: Int
    let preemptedBy: String?
    let retry: RetryView
    let topology: String?
    let events: [EventView]

    struct RetryView: Encodable {
        let onEvents: [String]
        let limit: Int
    }
    struct EventView: Encodable {
        let at: String
        let kind: String
        let message: String
    }

    init(_ j: Job, waitReason: String? = nil, queuePosition: Int? = nil) {
        attempt = j.attempt
        preemptedBy = j.preemptedBy?.rawValue
        retry = RetryView(onEvents: j.spec.retry.onEvents.map(\.rawValue), limit: j.spec.retry.limit)
        topology = j.spec.topology?.rawValue
        events = j.events.map { EventView(at: $0.at.description, kind: $0.kind, message: $0.message) }
        id = j.id.rawValue
        name = j.spec.name
        org = j.org.rawValue
        project = j.project.rawValue
        state = j.state.rawValue
        tier = j.spec.tier.rawValue
        resources = Resources(
            accelerators:
                "\(j.spec.gpuModel):\(j.spec.gpuShareMilli.map { DecimalText.format(Int64($0), scale: 1000) } ?? String(j.spec.gpusPerNode))",
            anyOf: j.spec.alternatives.isEmpty ? nil : j.spec.acceptable.map(\.description),
            cpus: j.spec.nodeResources.flatMap { $0.cpuMilli > 0 ? DecimalText.format(Int64($0.cpuMilli), scale: 1000) : nil },
            memory: j.spec.nodeResources.flatMap { $0.memoryMiB > 0 ? "\($0.memoryMiB)Mi" : nil })
        numNodes = j.spec.numNodes
        run = j.spec.run
        envs = j.spec.envs
        maxDuration = j.spec.maxDurationSeconds.map { DurationText.format(seconds: $0) }
        submittedAt = j.submittedAt.description
        placedAt = j.placedAt?.description
        startedAt = j.startedAt?.description
        endedAt = j.endedAt?.description
        reason = j.reason
        self.waitReason = waitReason
        self.queuePosition = queuePosition
        allocations = j.allocations.map {
            AllocationView(
                node: $0.node.rawValue, rank: $0.rank, gpus: $0.gpus, startedAt: $0.startedAt?.description,
                endedAt: $0.endedAt?.description, exitCode: $0.exitCode, endReason: $0.endReason)
        }
    }
}

struct NodeView: Encodable {
    struct AgentView: Encodable {
        let address: String
        let version: String
        let registeredAt: String
        let lastHeartbeat: String?
        let gpus: [GPUDevice]
    }
    let name: String
    let rack: String
    let site: String
    let region: String
    let gpu: String
    let gpus: Int
    let gpusFree: Int
    /// ready, cordoned, draining, drained (draining with no work left) or lost.
    let state: String
    let stateReason: String?
    let lostAt: String?
    let jobs: [String]
    let labels: [String: String]
    /// CPU (cores, as a decimal) and memory (MiB) the node declares and what is free; absent
    /// when it declares none.
    let cpus: String?
    let cpusFree: String?
    let memoryMib: Int?
    let memoryFreeMib: Int?
    let agent: AgentView?

    init(_ s: State, _ id: NodeID, lastHeard: Timestamp?) {
        let n = s.nodes[id]!
        let site = s.racks[n.rack]!.site
        let jobs = s.jobs(on: id).map(\.rawValue)
        name = id.rawValue
        rack = n.rack.rawValue
        self.site = site.rawValue
        region = s.sites[site]!.region.rawValue
        gpu = n.gpuModel
        gpus = n.gpuCount
        gpusFree = n.gpuCount - s.busyGPUs(id)
        state = n.lostAt != nil ? "lost" : n.state == .draining && jobs.isEmpty ? "drained" : n.state.rawValue
        stateReason = n.stateReason
        lostAt = n.lostAt?.description
        self.jobs = jobs
        labels = n.labels
        let free = s.freeResources(n)
        cpus = n.resources.map { DecimalText.format(Int64($0.cpuMilli), scale: 1000) }
        cpusFree = free.map { DecimalText.format(Int64($0.cpuMilli), scale: 1000) }
        memoryMib = n.resources?.memoryMiB
        memoryFreeMib = free?.memoryMiB
        agent = n.agent.map {
            AgentView(
                address: $0.address, version: $0.version, registeredAt: $0.registeredAt.description,
                lastHeartbeat: lastHeard?.description, gpus: $0.gpus)
        }
    }
}

struct FleetSummary: Encodable {
    struct ModelRow: Encodable {
        let gpu: String
        let nodes: Int
        let gpus: Int
        let free: Int
        let allocated: Int
        let unavailable: Int
        let allocatedByTier: [String: Int]
        let nodesByState: [String: Int]
    }
    struct SiteRow: Encodable {
        let name: String
        let region: String
        let powerMw: String
        let pue: String
        let racks: Int
        let nodes: Int
        /// GPU power times PUE, in kW, of all installed GPUs.
        let gpuPowerKw: String
    }
    let regions: [String]
    let sites: [SiteRow]
    let models: [ModelRow]
}

struct UsageView: Encodable {
    struct Row: Encodable {
        let key: [String: String]
        let gpuMilliseconds: Int64
        let gpuSeconds: Double
        let gpuHours: Double
        let records: Int
    }
    let groupBy: [String]
    let items: [Row]
    let totalGpuMilliseconds: Int64
    let totalGpuSeconds: Double
}

extension State {
    /// Position (1-based) of a queued job in scheduling order: tier first, then submission.
    func queuePosition(_ id: JobID) -> Int? {
        guard let job = jobs[id], job.state == .queued else { return nil }
        var ahead = 0
        for other in queue {
            guard other != id, let o = jobs[other] else {
                if other == id { break }
                continue
            }
            if o.spec.tier.rank <= job.spec.tier.rank { ahead += 1 }
        }
        // Jobs of a higher tier queued after this one also go first.
        let afterHigher = queue.drop(while: { $0 != id }).dropFirst().filter {
            jobs[$0].map { $0.spec.tier.rank < job.spec.tier.rank } ?? false
        }.count
        return ahead + afterHigher + 1
    }
}
