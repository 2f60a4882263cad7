import Foundation
import Hummingbird
import ServiceLifecycle
import StratusAgent
import StratusControl
import StratusCore

/// One run of a job on a node, as agents name it in reports.
struct RunRef: Codable, Hashable, Sendable {
    let job: String
    let attempt: Int
}

extension API {
    // MARK: the agent endpoints (agent tokens only)

    func addAgentEndpoints(_ agent: RouterGroup<StratusContext>) {
        agent.post("register") { req, ctx in
            var body = try SpecObject(try await JSON.body(req), path: "")
            let node = try agentNode(ctx, try body.requiredString("node"))
            let address = try body.requiredString("address")
            let rack = try body.string("rack").map { RackID($0) }
            let labels = try body.stringMap("labels") ?? [:]
            let declaredModel = try body.string("gpu_model")
            let version = try body.string("version") ?? ""
            var gpus: [GPUDevice] = []
            for (i, item) in (try body.array("gpus") ?? []).enumerated() {
                var g = try SpecObject(item, path: "gpus[\(i)]")
                gpus.append(
                    GPUDevice(
                        index: Int(clamping: try g.int("index") ?? Int64(i)), uuid: try g.requiredString("uuid"),
                        name: try g.string("name") ?? "", memoryMib: try g.int("memory_mib") ?? 0,
                        powerLimitWatts: try g.int("power_limit_w")))
                try g.finish()
            }
            let running = try runRefs(&body)
            let resources = try NodeResources.parse(&body, limit: Limits.maxNodeResources)
            try body.finish()
            let model = try registeredModel(declaredModel, gpus)
            let outcome = try await plane.execute(
                .registerNode(
                    RegisterNode(
                        node: node, token: ctx.agentToken!.id, address: address, rack: rack, labels: labels,
                        gpuModel: model, gpus: gpus, version: version, resources: resources.isZero ? nil : resources)))
            await plane.heard(from: node)
            if case .applied = outcome { ctx.logger.info("agent registered \(node): \(gpus.count) x \(model) at \(address)") }
            return JSON.response(
                RegisterReply(
                    node: node.rawValue, gpuModel: model, heartbeatS: heartbeatSeconds, lostAfterS: nodeLostSeconds,
                    kill: await unassigned(running, on: node)))
        }
        agent.post("heartbeat") { req, ctx in
            var body = try SpecObject(try await JSON.body(req), path: "")
            let node = try agentNode(ctx, try body.requiredString("node"))
            let running = try runRefs(&body)
            let health = try body.string("health")
            try body.finish()
            let registered = await plane.read { s in s.nodes[node].map { $0.agent != nil && $0.lostAt == nil } ?? false }
            // A node declared lost (or never registered) must register again first.
            guard registered else { return JSON.response(HeartbeatReply(registered: false, kill: [])) }
            await plane.heard(from: node)
            if let health, health != "ok" { ctx.logger.warning("agent \(node) reports: \(health.prefix(200))") }
            return JSON.response(HeartbeatReply(registered: true, kill: await unassigned(running, on: node)))
        }
        agent.get("assignments") { req, ctx in
            let node = try agentNode(ctx, req.query("node") ?? "")
            let wait = try req.queryInt("wait") ?? 0
            guard wait >= 0, wait <= Limits.maxAssignmentWaitSeconds else {
                throw StratusError(.invalidArgument, "wait: between 0 and \(Limits.maxAssignmentWaitSeconds) seconds")
            }
            // A graceful shutdown answers waiting long-polls at once, so the server can stop.
            let reply = await withGracefulShutdownHandler {
                await plane.assignments(node: node, known: req.query("known"), wait: .seconds(wait))
            } onGracefulShutdown: {
                Task { await plane.releaseWaiters() }
            }
            guard !(await plane.isClosing) else { throw StratusError(.unavailable, "the server is shutting down") }
            return JSON.response(AssignmentsReply(digest: reply.digest, assignments: reply.items))
        }
        agent.post("jobs/:job/started") { req, ctx in
            var body = try SpecObject(try await JSON.body(req), path: "")
            let node = try agentNode(ctx, try body.requiredString("node"))
            let attempt = try body.int("attempt").map { Int(clamping: $0) }
            try body.finish()
            let job = JobID(try ctx.parameters.require("job"))
            try await report(.allocationStarted(AllocationStarted(job: job, node: node, attempt: attempt)), ctx)
            return JSON.response(["job": job.rawValue, "node": node.rawValue])
        }
        agent.post("jobs/:job/exited") { req, ctx in
            var body = try SpecObject(try await JSON.body(req), path: "")
            let node = try agentNode(ctx, try body.requiredString("node"))
            let attempt = try body.int("attempt").map { Int(clamping: $0) }
            let code = try body.int("exit_code")
            let signal = try body.int("signal")
            var reason = try body.string("reason")
            try body.finish()
            if let code, code < Int64(Int32.min) || code > Int64(Int32.max) {
                throw StratusError(.invalidArgument, "exit_code: out of range")
            }
            if let reason, reason.utf8.count > 500 { throw StratusError(.invalidArgument, "reason: longer than 500 bytes") }
            if reason == nil, let signal { reason = "killed by signal \(signal)" }
            let job = JobID(try ctx.parameters.require("job"))
            try await report(
                .allocationExited(
                    AllocationExited(
                        job: job, node: node, exitCode: code.map { Int32($0) }, reason: reason, attempt: attempt)), ctx)
            return JSON.response(["job": job.rawValue, "node": node.rawValue])
        }
        agent.post("jobs/:job/logs") { req, ctx in
            let node = try agentNode(ctx, req.query("node") ?? "")
            let job = JobID(try ctx.parameters.require("job"))
            let attempt = try req.queryInt("attempt")
            let offset = try req.queryInt("offset") ?? 0
            guard offset >= 0 else { throw StratusError(.invalidArgument, "offset: must not be negative") }
            let data = try await JSON.rawBody(req, limit: Limits.maxLogChunkBytes)
            try await requireAllocation(job, on: node, attempt: attempt, ctx)
            let size = try appendLog(job: job, node: node, offset: offset, data)
            return JSON.response(["size": size])
        }
        agent.post("samples") { req, ctx in
            var body = try SpecObject(try await JSON.body(req), path: "")
            let node = try agentNode(ctx, try body.requiredString("node"))
            let items = try body.array("samples") ?? []
            try body.finish()
            guard items.count <= Limits.maxSamplesPerReport else {
                throw StratusError(.limitExceeded, "samples: at most \(Limits.maxSamplesPerReport) per report")
            }
            var samples: [(GPUSample, Int?)] = []
            for (i, item) in items.enumerated() {
                var o = try SpecObject(item, path: "samples[\(i)]")
                let sample = GPUSample(
                    job: JobID(try o.requiredString("job")), node: node,
                    gpuIndex: Int(clamping: try o.int("gpu_index") ?? -1), gpuUuid: try o.requiredString("gpu_uuid"),
                    at: Timestamp(milliseconds: try o.int("at_ms") ?? 0),
                    utilizationPct: Int(clamping: try o.int("utilization_pct") ?? -1),
                    memoryUsedMib: try o.int("memory_used_mib") ?? 0, memoryTotalMib: try o.int("memory_total_mib") ?? 0,
                    powerWatts: try o.int("power_w"))
                let attempt = try o.int("attempt").map { Int(clamping: $0) }
                try o.finish()
                guard (0...100).contains(sample.utilizationPct), sample.memoryUsedMib >= 0, sample.memoryTotalMib >= 0 else {
                    throw StratusError(
                        .invalidArgument, "samples[\(i)]: utilization_pct must be 0-100 and memory must not be negative")
                }
                samples.append((sample, attempt))
            }
            let now = await plane.now
            let checked = samples
            let problem = await plane.read { s -> String? in
                for (i, (sample, attempt)) in checked.enumerated() {
                    if let p = Self.sampleProblem(sample, attempt: attempt, s, now: now) { return "samples[\(i)]: \(p)" }
                }
                return nil
            }
            if let problem {
                ctx.logger.warning("refused samples from agent of \(node): \(problem)")
                throw StratusError(.failedPrecondition, problem)
            }
            await plane.addSamples(samples.map(\.0))
            return JSON.response(["accepted": samples.count])
        }
    }

    struct RegisterReply: Encodable {
        let node: String
        let gpuModel: String
        let heartbeatS: Int64
        let lostAfterS: Int64
        /// Runs the agent says it has that the control plane no longer wants: kill them.
        let kill: [RunRef]
    }

    struct HeartbeatReply: Encodable {
        /// False when the node was declared lost (or never registered): register again.
        let registered: Bool
        let kill: [RunRef]
    }

    struct AssignmentsReply: Encodable {
        let digest: String
        let assignments: [Assignment]
    }

    /// The node an agent acts for, if its token allows it.
    func agentNode(_ ctx: StratusContext, _ name: String) throws(StratusError) -> NodeID {
        guard !name.isEmpty else { throw StratusError(.invalidArgument, "node: required") }
        try Name.validate(name, field: "node")
        let node = NodeID(name)
        guard let token = ctx.agentToken, token.allows(node) else {
            ctx.logger.warning("agent token \(ctx.agentToken?.id.rawValue ?? "?") refused for node \(name)")
            throw StratusError(.permissionDenied, "this agent token may not act for node '\(name)'")
        }
        return node
    }

    func runRefs(_ body: inout SpecObject) throws(StratusError) -> [RunRef] {
        var out: [RunRef] = []
        for (i, item) in (try body.array("running") ?? []).enumerated() {
            var o = try SpecObject(item, path: "running[\(i)]")
            out.append(RunRef(job: try o.requiredString("job"), attempt: Int(clamping: try o.int("attempt") ?? 0)))
            try o.finish()
        }
        guard out.count <= Limits.maxGPUsPerNode * 8 else {
            throw StratusError(.limitExceeded, "running: at most \(Limits.maxGPUsPerNode * 8) entries")
        }
        return out
    }

    /// The catalog model of a node's GPUs: as the agent's config says, or from the
    /// driver's product names, which must all name the same model.
    func registeredModel(_ declared: String?, _ gpus: [GPUDevice]) throws(StratusError) -> String {
        if let declared { return try GPUCatalog.require(declared, field: "gpu_model").name }
        var model: String?
        for (i, g) in gpus.enumerated() {
            guard let m = GPUCatalog.model(productName: g.name) else {
                throw StratusError(
                    .invalidArgument,
                    "gpus[\(i)].name: '\(g.name)' is no catalog model (\(GPUCatalog.all.map(\.name).joined(separator: ", "))); set gpu_model in the agent's config"
                )
            }
            if let model, model != m.name {
                throw StratusError(.invalidArgument, "gpus: a node's GPUs must be one model, found \(model) and \(m.name)")
            }
            model = m.name
        }
        guard let model else { throw StratusError(.invalidArgument, "gpus: the node has none") }
        return model
    }

    /// Runs the agent reported that are not live assignments of `node` (any more).
    func unassigned(_ running: [RunRef], on node: NodeID) async -> [RunRef] {
        let live = Set(await plane.read { $0.assignments(for: node) }.map { RunRef(job: $0.job.rawValue, attempt: $0.attempt) })
        return running.filter { !live.contains($0) }
    }

    /// Applies a start or exit report, logging a refusal (a report about work not assigned
    /// to the node, or about an earlier run).
    func report(_ command: Command, _ ctx: StratusContext) async throws {
        do {
            try await plane.execute(command)
        } catch let error as StratusError {
            ctx.logger.warning("refused \(command.name) from agent token \(ctx.agentToken?.id.rawValue ?? "?"): \(error.message)")
            throw error
        }
    }

    func requireAllocation(_ job: JobID, on node: NodeID, attempt: Int?, _ ctx: StratusContext) async throws {
        let ok = await plane.read { s in
            guard let j = s.jobs[job], attempt == nil || attempt == j.attempt else { return false }
            return j.allocations.contains { $0.node == node }
        }
        guard ok else {
            ctx.logger.warning("refused logs for \(job) from agent of \(node): not assigned")
            throw StratusError(.failedPrecondition, "job \(job) (this run) has no allocation on node \(node)")
        }
    }

    /// Appends a chunk of a job's output at `offset` of the server's copy: bytes the
    /// server has already are skipped, a chunk beyond its end is not written (the agent
    /// resends from the returned size).
    func appendLog(job: JobID, node: NodeID, offset: Int, _ data: Data) throws -> Int {
        let path = files.logPath(job: job, node: node)
        let fm = FileManager.default
        try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if !fm.fileExists(atPath: path) { _ = fm.createFile(atPath: path, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let size = Int(try handle.seekToEnd())
        guard offset <= size, offset + data.count > size else { return size }
        handle.write(data.suffix(from: data.startIndex + (size - offset)))
        return offset + data.count
    }

    static func sampleProblem(_ s: GPUSample, attempt: Int?, _ state: State, now: Timestamp) -> String? {
        guard let devices = state.nodes[s.node]?.agent?.gpus else { return "node \(s.node) has no registered agent" }
        guard s.gpuIndex >= 0, s.gpuIndex < devices.count, devices[s.gpuIndex].uuid == s.gpuUuid else {
            return "GPU \(s.gpuIndex) (\(s.gpuUuid)) is not a GPU node \(s.node) registered"
        }
        guard let job = state.jobs[s.job], attempt == nil || attempt == job.attempt,
            let alloc = job.allocations.first(where: { $0.node == s.node && !$0.isEnded }), alloc.gpus.contains(s.gpuIndex)
        else { return "job \(s.job) does not hold GPU \(s.gpuIndex) of \(s.node)" }
        guard s.at <= now.adding(seconds: 60) else { return "at_ms is in the future" }
        return nil
    }
}

extension API {
    // MARK: operators: agent tokens, cordon and drain; tenants: `top`

    struct AgentTokenView: Encodable {
        let id: String
        let name: String
        let node: String?
        let hint: String
        let createdAt: String
        let revokedAt: String?
        /// Only in the response that creates it.
        let secret: String?

        init(_ t: AgentToken, secret: String? = nil) {
            id = t.id.rawValue
            name = t.name
            node = t.node?.rawValue
            hint = t.hint
            createdAt = t.createdAt.description
            revokedAt = t.revokedAt?.description
            self.secret = secret
        }
    }

    struct TopView: Encodable {
        struct GPU: Encodable {
            let node: String
            let gpuIndex: Int
            let gpuUuid: String
            let at: String
            let utilizationPct: Int
            let memoryUsedMib: Int64
            let memoryTotalMib: Int64
            let powerW: Int64?
            /// Mean utilization over the samples kept (the last `samples` readings).
            let meanUtilizationPct: Int
            let samples: Int
        }
        let job: String
        let state: String
        let gpus: [GPU]
    }

    func addNodeAdmin(_ v1: RouterGroup<StratusContext>) {
        v1.get("agent-tokens") { req, ctx in
            try ctx.caller().requireOperator("listing agent tokens")
            let items = await plane.read { s in
                s.agentTokens.values.sorted { $0.createdAt == $1.createdAt ? $0.id < $1.id : $0.createdAt < $1.createdAt }
            }
            return JSON.response(try Pagination.page(items, key: \.id.rawValue, request: req, view: { AgentTokenView($0) }))
        }
        v1.post("agent-tokens") { req, ctx in
            try ctx.caller().requireOperator("creating agent tokens")
            var body = try SpecObject(try await JSON.body(req), path: "")
            let node = try body.string("node").map { NodeID($0) }
            let name = try body.string("name") ?? node.map { "agent of \($0)" } ?? "agent"
            try body.finish()
            let secret = AgentTokenSecret.generate()
            let outcome = try await plane.execute(
                .createAgentToken(
                    CreateAgentToken(
                        name: name, node: node, secretHash: APIKeySecret.hash(secret), hint: AgentTokenSecret.hint(secret))))
            let token = await plane.read { $0.agentTokens[AgentTokenID(outcome.id)]! }
            return JSON.response(AgentTokenView(token, secret: secret), status: .created)
        }
        v1.post("agent-tokens/:id/revoke") { _, ctx in
            try ctx.caller().requireOperator("revoking agent tokens")
            let id = AgentTokenID(try ctx.parameters.require("id"))
            try await plane.execute(.revokeAgentToken(RevokeAgentToken(id: id)))
            return JSON.response(AgentTokenView(await plane.read { $0.agentTokens[id]! }))
        }
        v1.get("fleet/nodes/:node") { _, ctx in
            _ = try ctx.caller()
            let node = NodeID(try ctx.parameters.require("node"))
            guard await plane.read({ $0.nodes[node] != nil }) else { throw StratusError.notFound("node", node.rawValue) }
            let last = await plane.lastHeard(node)
            return JSON.response(await plane.read { NodeView($0, node, lastHeard: last) })
        }
        v1.post("fleet/nodes/:node/state") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("cordoning or draining nodes")
            let node = NodeID(try ctx.parameters.require("node"))
            var body = try SpecObject(try await JSON.body(req), path: "")
            let text = try body.requiredString("state")
            let reason = try body.string("reason")
            let requeue = try body.bool("requeue") ?? false
            let notice = try body.int("notice_s") ?? Limits.defaultDrainNoticeSeconds
            try body.finish()
            guard let state = NodeState(rawValue: text), state != .down else {
                throw StratusError(.invalidArgument, "state: '\(text)' is not one of ready, cordoned, draining")
            }
            if requeue, state != .draining {
                throw StratusError(.invalidArgument, "requeue: only with state draining")
            }
            try await plane.execute(
                .setNodeState(
                    SetNodeState(node: node, state: state, reason: reason, requeue: requeue, noticeSeconds: notice, by: p.key)))
            let last = await plane.lastHeard(node)
            return JSON.response(await plane.read { NodeView($0, node, lastHeard: last) })
        }
        v1.get("jobs/:id/top") { _, ctx in
            let p = try ctx.caller()
            let job = try await visibleJob(JobID(try ctx.parameters.require("id")), p)
            let kept = await plane.samples(of: job.id)
            var gpus: [TopView.GPU] = []
            for alloc in job.allocations where !alloc.isEnded {
                for list in (kept?.byGPU.values.filter { $0.first?.node == alloc.node } ?? []) {
                    guard let last = list.last, alloc.gpus.contains(last.gpuIndex) else { continue }
                    gpus.append(
                        TopView.GPU(
                            node: last.node.rawValue, gpuIndex: last.gpuIndex, gpuUuid: last.gpuUuid, at: last.at.description,
                            utilizationPct: last.utilizationPct, memoryUsedMib: last.memoryUsedMib,
                            memoryTotalMib: last.memoryTotalMib, powerW: last.powerWatts,
                            meanUtilizationPct: list.reduce(0) { $0 + $1.utilizationPct } / list.count, samples: list.count))
                }
            }
            gpus.sort { ($0.node, $0.gpuIndex) < ($1.node, $1.gpuIndex) }
            return JSON.response(TopView(job: job.id.rawValue, state: job.state.rawValue, gpus: gpus))
        }
    }
}
