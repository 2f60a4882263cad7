import Foundation
import HTTPTypes
import Hummingbird
import StratusControl
import StratusCore

extension API {
    static let idempotencyHeader = HTTPField.Name("Idempotency-Key")!

    /// Operator keys act in the internal org; every other key in its own.
    func actingOrg(_ p: Principal) -> OrgID { p.org ?? InternalOrg.id }

    func visibleJob(_ id: JobID, _ p: Principal) async throws -> Job {
        guard let job = await plane.read({ $0.jobs[id] }) else { throw StratusError.notFound("job", id.rawValue) }
        try p.requireRead(job.org, "job", id.rawValue)
        return job
    }

    func jobView(_ job: Job) async -> JobView {
        let position = await plane.read { $0.queuePosition(job.id) }
        let wait = job.state == .queued ? await plane.waitReasons(job.id)?.joined(separator: "; ") : nil
        return JobView(job, waitReason: wait, queuePosition: position)
    }

    func addJobs(_ v1: RouterGroup<StratusContext>) {
        v1.post("jobs") { req, ctx in
            let p = try ctx.caller()
            let org = actingOrg(p)
            try p.requireWrite(org, "job", "")
            let idempotencyKey = req.headers[Self.idempotencyHeader]
            let spec = try JobSpec.parse(try await JSON.body(req))
            let outcome = try await plane.execute(
                .submitJob(
                    SubmitJob(
                        org: org, spec: spec, idempotencyKey: idempotencyKey, by: p.key)))
            let job = try await visibleJob(JobID(outcome.id), p)
            if case .unchanged = outcome { return JSON.response(await jobView(job), status: .ok) }
            return JSON.response(await jobView(job), status: .created)
        }
        v1.post("quotes") { req, ctx in
            let p = try ctx.caller()
            let org = actingOrg(p)
            let spec = try JobSpec.parse(try await JSON.body(req))
            let rows = try await plane.quote(spec, org: org, by: p.key)
            struct Row: Encodable {
                let tier: String
                let startsNow: Bool
                let earliestStart: String?
                let reasons: [String]
                let pricePerGpuHour: String?
                let projectedCost: String?
                let currency: String
                /// Set when a submission would be refused for money (credit limit, budget).
                let refusedBecause: String?
            }
            let currency = await plane.read { $0.billing.currency.rawValue }
            return JSON.response(
                Page(
                    items: rows.map {
                        Row(
                            tier: $0.tier.rawValue, startsNow: $0.startsNow, earliestStart: $0.start?.description,
                            reasons: $0.reasons, pricePerGpuHour: $0.pricePerGPUHour?.description,
                            projectedCost: $0.projectedCost?.description, currency: currency, refusedBecause: $0.refusal)
                    }, nextCursor: nil))
        }
        v1.get("jobs") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let stateFilter = try req.query("state").map { text throws(StratusError) -> JobState in
                guard let s = JobState(rawValue: text) else {
                    throw StratusError(
                        .invalidArgument,
                        "state: '\(text)' is not one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return s
            }
            let project = req.query("project")
            let jobs = await plane.read { s in
                s.jobs.values.filter { j in
                    p.canRead(j.org) && (filter == nil || j.org == filter) && (stateFilter == nil || j.state == stateFilter)
                        && (project == nil || j.project.rawValue == project || j.spec.project == project
                            || (project == InternalOrg.defaultProject && j.spec.project == nil))
                }.sorted { Self.jobNumber($0.id) > Self.jobNumber($1.id) }
            }
            var views: [JobView] = []
            let page = try Pagination.page(jobs, key: \.id.rawValue, request: req, view: { $0 })
            for job in page.items { views.append(await jobView(job)) }
            return JSON.response(Page(items: views, nextCursor: page.nextCursor))
        }
        v1.get("jobs/:id") { _, ctx in
            let p = try ctx.caller()
            let job = try await visibleJob(JobID(try ctx.parameters.require("id")), p)
            return JSON.response(await jobView(job))
        }
        v1.post("jobs/:id/cancel") { _, ctx in
            let p = try ctx.caller()
            let id = JobID(try ctx.parameters.require("id"))
            let job = try await visibleJob(id, p)
            try p.requireWrite(job.org, "job", id.rawValue)
            try await plane.execute(.cancelJob(CancelJob(job: id, by: p.key)))
            return JSON.response(await jobView(try await visibleJob(id, p)))
        }
        v1.get("jobs/:id/explain") { _, ctx in
            let p = try ctx.caller()
            let job = try await visibleJob(JobID(try ctx.parameters.require("id")), p)
            return JSON.response(await explain(job))
        }
        v1.get("jobs/:id/logs") { req, ctx in
            let p = try ctx.caller()
            let job = try await visibleJob(JobID(try ctx.parameters.require("id")), p)
            return JSON.response(try await logs(job, req))
        }
    }

    struct Explanation: Encodable {
        let job: String
        let state: String
        let tier: String
        let summary: String
        /// One line per constraint that keeps the job from running, with counts.
        let reasons: [String]
        let queuePosition: Int?
        let queuedAhead: Int?
        let preempting: [String]?
        /// Earliest possible start from running work's time limits (jobs queued ahead
        /// are not counted); nil when running work has no time limit to go by.
        let estimatedStart: String?
    }

    /// "Why is my job not running?", from the latest scheduling round's decisions.
    func explain(_ job: Job) async -> Explanation {
        let position = await plane.read { $0.queuePosition(job.id) }
        let reasons = await plane.waitReasons(job.id) ?? []
        let preempting = await plane.read { s -> [String]? in
            guard s.nominations[job.id] != nil else { return nil }
            return s.jobs.values.filter { $0.preemptedBy == job.id && !$0.state.isTerminal }.map(\.id.rawValue).sorted()
        }
        let summary: String
        switch job.state {
        case .queued:
            summary =
                reasons.isEmpty
                ? "queued; not yet considered by the scheduler" : "waiting: \(reasons.first!)"
        case .starting: summary = "placed; the agents are starting its processes"
        case .running: summary = "running"
        default: summary = "ended: \(job.state.rawValue)\(job.reason.map { " (\($0))" } ?? "")"
        }
        let estimate = job.state == .queued ? await plane.estimatedStart(job.id) : nil
        return Explanation(
            job: job.id.rawValue, state: job.state.rawValue, tier: job.spec.tier.rawValue, summary: summary,
            reasons: job.state == .queued ? reasons : [], queuePosition: position, queuedAhead: position.map { $0 - 1 },
            preempting: preempting, estimatedStart: estimate?.description)
    }

    static func jobNumber(_ id: JobID) -> Int { Int(id.rawValue.dropFirst(4)) ?? 0 }

    struct LogChunk: Encodable {
        let job: String
        let node: String?
        let offset: Int
        let nextOffset: Int
        let data: String
        /// True when the job has ended and `next_offset` is the end of its log.
        let complete: Bool
    }

    /// Job output is kept in files beside the database, not in the command log.
    func logs(_ job: Job, _ req: Request) async throws -> LogChunk {
        let offset = try req.queryInt("offset") ?? 0
        guard offset >= 0 else { throw StratusError(.invalidArgument, "offset: must not be negative") }
        let limit = try req.queryInt("limit") ?? Limits.maxLogBytesPerRequest
        guard limit >= 1, limit <= Limits.maxLogBytesPerRequest else {
            throw StratusError(.invalidArgument, "limit: must be between 1 and \(Limits.maxLogBytesPerRequest)")
        }
        let node: NodeID?
        if let name = req.query("node") {
            // Any fleet node (earlier attempts may have run elsewhere); the name is checked
            // against the inventory, so it cannot point outside the logs directory.
            guard await plane.read({ $0.nodes[NodeID(name)] != nil }) else {
                throw StratusError(.invalidArgument, "node: '\(name)' is not a node of the fleet")
            }
            node = NodeID(name)
        } else {
            node = job.allocations.first?.node
        }
        guard let node else {
            return LogChunk(job: job.id.rawValue, node: nil, offset: 0, nextOffset: 0, data: "", complete: job.state.isTerminal)
        }
        var bytes: [UInt8] = []
        if let handle = FileHandle(forReadingAtPath: files.logPath(job: job.id, node: node)) {
            defer { try? handle.close() }
            try handle.seek(toOffset: UInt64(offset))
            bytes = Array(try handle.read(upToCount: limit) ?? Data())
        }
        // Never split a UTF-8 sequence: stop before an incomplete trailing character.
        var end = bytes.count
        if end == limit {
            var back = 0
            while back < 4, end - back - 1 >= 0, bytes[end - back - 1] & 0xC0 == 0x80 { back += 1 }
            if end - back - 1 >= 0, bytes[end - back - 1] >= 0xC0 { end = end - back - 1 }
        }
        let text = String(decoding: bytes[0..<end], as: UTF8.self)
        let allocation = job.allocations.first { $0.node == node }
        return LogChunk(
            job: job.id.rawValue, node: node.rawValue, offset: offset, nextOffset: offset + end, data: text,
            complete: (allocation?.isEnded ?? true) && end < limit)
    }
}
