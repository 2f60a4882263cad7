import StratusCore
import StratusLedger

/// Node agents: their tokens, registration, loss, and the operator's cordon and drain.
extension State {
    mutating func createAgentToken(_ c: CreateAgentToken, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard !c.name.isEmpty, c.name.utf8.count <= 200 else {
            throw StratusError(.invalidArgument, "name: must be 1 to 200 bytes")
        }
        if let node = c.node { try Name.validate(node.rawValue, field: "node") }
        guard c.secretHash.utf8.count == 64, agentTokenByHash[c.secretHash] == nil, keyByHash[c.secretHash] == nil else {
            throw StratusError(.alreadyExists, "token hash already in use")
        }
        guard agentTokens.count < Limits.maxAgentTokens else {
            throw StratusError(.limitExceeded, "at most \(Limits.maxAgentTokens) agent tokens")
        }
        let id = AgentTokenID("at-\(nextAgentToken)")
        guard commit else { return .applied(id.rawValue) }
        agentTokens[id] = AgentToken(
            id: id, name: c.name, node: c.node, secretHash: c.secretHash, hint: c.hint, createdAt: at)
        agentTokenByHash[c.secretHash] = id
        nextAgentToken += 1
        return .applied(id.rawValue)
    }

    mutating func revokeAgentToken(_ c: RevokeAgentToken, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let token = agentTokens[c.id] else { throw StratusError.notFound("agent token", c.id.rawValue) }
        if token.revokedAt != nil { return .unchanged(c.id.rawValue) }
        guard commit else { return .applied(c.id.rawValue) }
        agentTokens[c.id]!.revokedAt = at
        return .applied(c.id.rawValue)
    }

    /// An agent registers its node: a node the fleet declares must have the GPUs it was
    /// declared with; an undeclared one joins the rack the agent names. A lost node comes
    /// back (its old work stays ended: the agent kills what it still runs of it).
    mutating func registerNode(_ c: RegisterNode, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let token = agentTokens[c.token], token.allows(c.node) else {
            throw StratusError(.permissionDenied, "agent token \(c.token) may not register node '\(c.node)'")
        }
        try Name.validate(c.node.rawValue, field: "node")
        try Self.checkAddress(c.address)
        guard c.version.utf8.count <= 100 else { throw StratusError(.invalidArgument, "version: longer than 100 bytes") }
        let model = try GPUCatalog.require(c.gpuModel, field: "gpu_model")
        guard !c.gpus.isEmpty, c.gpus.count <= Limits.maxGPUsPerNode else {
            throw StratusError(.invalidArgument, "gpus: between 1 and \(Limits.maxGPUsPerNode), got \(c.gpus.count)")
        }
        var uuids = Set<String>()
        for (k, g) in c.gpus.enumerated() {
            guard g.index == k else {
                throw StratusError(.invalidArgument, "gpus[\(k)].index: expected \(k) (indices run 0, 1, ...), got \(g.index)")
            }
            guard !g.uuid.isEmpty, g.uuid.utf8.count <= 100, uuids.insert(g.uuid).inserted else {
                throw StratusError(.invalidArgument, "gpus[\(k)].uuid: empty, longer than 100 bytes, or repeated")
            }
            guard g.name.utf8.count <= 200, g.memoryMib >= 0, (g.powerLimitWatts ?? 0) >= 0 else {
                throw StratusError(.invalidArgument, "gpus[\(k)]: name longer than 200 bytes or negative memory or power")
            }
        }
        try Self.checkLabels(c.labels)
        try Self.checkResources(c.resources, field: "resources")
        if let node = nodes[c.node] {
            guard node.gpuModel == model.name, node.gpuCount == c.gpus.count else {
                throw StratusError(
                    .failedPrecondition,
                    "node '\(c.node)' is declared with \(node.gpuCount) x \(node.gpuModel); its agent found \(c.gpus.count) x \(model.name)"
                )
            }
            if let rack = c.rack, rack != node.rack {
                throw StratusError(
                    .failedPrecondition, "node '\(c.node)' is in rack '\(node.rack)'; its agent says rack '\(rack)'")
            }
            if let info = node.agent, node.lostAt == nil, info.address == c.address, info.gpus == c.gpus,
                info.version == c.version, info.token == c.token, c.labels.allSatisfy({ node.labels[$0.key] == $0.value }),
                c.resources == nil || c.resources == node.resources
            {
                return .unchanged(c.node.rawValue)
            }
        } else {
            guard let rack = c.rack else {
                throw StratusError(
                    .failedPrecondition,
                    "node '\(c.node)' is not in the fleet: declare it (stratus fleet apply) or give its agent a rack")
            }
            guard racks[rack] != nil else { throw StratusError.notFound("rack", rack.rawValue) }
            guard nodes.count < Limits.maxFleetObjects else {
                throw StratusError(.limitExceeded, "fleet: more than \(Limits.maxFleetObjects) nodes")
            }
        }
        guard commit else { return .applied(c.node.rawValue) }
        let info = NodeAgentInfo(
            address: c.address, gpus: c.gpus, registeredAt: at, version: c.version, token: c.token)
        if var node = nodes[c.node] {
            for (k, v) in c.labels { node.labels[k] = v }
            node.agent = info
            node.lostAt = nil
            if let r = c.resources { node.resources = r }
            nodes[c.node] = node
        } else {
            var node = Node(
                id: c.node, rack: c.rack!, gpuModel: model.name, gpuCount: c.gpus.count, labels: c.labels, state: .ready,
                agent: info)
            node.resources = c.resources
            addNode(node)
            nodeSizes[model.name, default: [:]][c.gpus.count, default: 0] += 1
        }
        // A new node changes the scheduler's numbering of nodes: rebuild.
        if nodeOrder.last == c.node, counters.placement.count != nodeOrder.count { rebuildCounters() } else { recount(c.node) }
        return .applied(c.node.rawValue)
    }

    static func checkAddress(_ address: String) throws(StratusError) {
        let ok = address.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2E
                || c == 0x3A
        }
        guard !address.isEmpty, address.utf8.count <= Limits.maxAgentAddressLength, ok else {
            throw StratusError(
                .invalidArgument,
                "address: a host name or IP address of at most \(Limits.maxAgentAddressLength) characters, got '\(address.prefix(80))'"
            )
        }
    }

    static func checkLabels(_ labels: [String: String]) throws(StratusError) {
        guard labels.count <= 64 else { throw StratusError(.limitExceeded, "labels: at most 64") }
        for (k, v) in labels {
            guard !k.isEmpty, k.utf8.count <= 63, v.utf8.count <= 253 else {
                throw StratusError(.invalidArgument, "labels: key '\(k.prefix(80))' or its value is empty or too long")
            }
        }
    }

    /// A node whose agent went silent: its work ends as `node_lost` when the agent was last
    /// heard from (usage stops there), and is requeued or failed by its retry policy.
    mutating func nodeLost(_ c: NodeLost, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let node = nodes[c.node] else { throw StratusError.notFound("node", c.node.rawValue) }
        guard node.agent != nil else {
            throw StratusError(.failedPrecondition, "node '\(c.node)' has no registered agent to lose")
        }
        if node.lostAt != nil { return .unchanged(c.node.rawValue) }
        guard c.lastSeen <= at else {
            throw StratusError(.invalidArgument, "last_seen: \(c.lastSeen) is after now (\(at))")
        }
        let reason = "node_lost: \(c.node) stopped heartbeating at \(c.lastSeen)"
        var ending: [(Job, Int, UsageRecord?)] = []
        for id in jobs(on: c.node).sorted() {
            guard let job = jobs[id], let i = job.allocations.firstIndex(where: { $0.node == c.node && !$0.isEnded })
            else { continue }
            ending.append((job, i, usageRecord(job, i, endedAt: c.lastSeen)))
        }
        guard commit else { return .applied(c.node.rawValue) }
        nodes[c.node]!.lostAt = c.lastSeen
        recount(c.node)
        var tally = Billing.Tally()
        for (job, i, record) in ending {
            jobs.update(job.id) { marked in
                marked.lostNode = c.node
                marked.record("node_lost", "\(c.node) was lost (last heard from at \(c.lastSeen))", at: at)
            }
            let endedAt = max(job.allocations[i].startedAt ?? c.lastSeen, c.lastSeen)
            openOutage(job, gpus: job.allocations[i].gpus.count, from: c.lastSeen)
            endAllocation(job.id, i, record: record, endedAt: endedAt, exitCode: nil, reason: reason, at: at, tally: &tally)
        }
        billing.post(tally, now: at)
        return .applied(c.node.rawValue)
    }

    /// Cordon (no new work), drain (no new work; running work finishes, or with `requeue`
    /// is stopped with notice and requeued) or return a node to service.
    mutating func setNodeState(_ c: SetNodeState, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let node = nodes[c.node] else { throw StratusError.notFound("node", c.node.rawValue) }
        guard c.state != .down else {
            throw StratusError(.invalidArgument, "state: one of ready, cordoned, draining (a node is down when it is lost)")
        }
        guard c.noticeSeconds >= 0, c.noticeSeconds <= Limits.maxJobDurationSeconds else {
            throw StratusError(.invalidArgument, "notice: between 0 and \(Limits.maxJobDurationSeconds) seconds")
        }
        if let reason = c.reason, reason.utf8.count > 200 {
            throw StratusError(.invalidArgument, "reason: longer than 200 bytes")
        }
        let moving = c.state == .draining && c.requeue
        if node.state == c.state, node.stateReason == c.reason, !moving { return .unchanged(c.node.rawValue) }
        guard commit else { return .applied(c.node.rawValue) }
        nodes[c.node]!.state = c.state
        nodes[c.node]!.stateReason = c.reason
        recount(c.node)
        guard moving else { return .applied(c.node.rawValue) }
        let deadline = at.adding(seconds: c.noticeSeconds)
        for id in jobs(on: c.node).sorted() {
            guard var job = jobs[id], !job.cancelRequested, job.movedBy == nil else { continue }
            let why = "moved off \(c.node): drained by \(c.by)" + (c.reason.map { " (\($0))" } ?? "")
            job.movedBy = why
            for k in job.allocations.indices where !job.allocations[k].isEnded && !job.allocations[k].stopRequested {
                job.allocations[k].stopRequested = true
                job.allocations[k].stopDeadline = deadline
                job.allocations[k].noticeAt = at
            }
            job.record("drain_notice", "\(why); killed at \(deadline) if still running", at: at)
            jobs[id] = job
        }
        return .applied(c.node.rawValue)
    }

    /// Nodes registered by networked agents that are not lost: the ones whose heartbeats
    /// the server watches.
    public var agentNodes: [NodeID] {
        nodeOrder.filter { nodes[$0]!.agent != nil && nodes[$0]!.lostAt == nil }
    }

    /// Adds `node` (new) at the end of `nodeOrder`, with a free GPU table: the next slot
    /// of every node table.
    mutating func addNode(_ node: Node) {
        nodes.add(node.id, node)
        nodeOrder.append(node.id)
        gpuHolders.add(node.id, Array(repeating: nil, count: node.gpuCount))
        gpuShares.add(node.id, nil)
        resourcesInUse.add(node.id, nil)
    }
}
