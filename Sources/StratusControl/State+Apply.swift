import StratusCore
import StratusLedger
import StratusScheduler

extension State {
    /// Applies one log entry. Every handler is a ladder of guards followed by one
    /// mutation: when it throws, nothing has changed. With `commit: false` it only runs
    /// the guards and reports what it would do, so the shell can log a command only
    /// once it is known to be valid (and skip logging idempotent retries).
    @discardableResult
    public mutating func apply(_ entry: LogEntry, commit: Bool = true) throws(StratusError) -> Outcome {
        if commit {
            precondition(entry.seq == seq + 1, "log entry \(entry.seq) applied after \(seq)")
        }
        let outcome: Outcome
        switch entry.command {
        case .bootstrap(let c): outcome = try bootstrap(c, at: entry.at, commit: commit)
        case .createOrg(let c): outcome = try createOrg(c, at: entry.at, commit: commit)
        case .createProject(let c): outcome = try createProject(c, at: entry.at, commit: commit)
        case .addMember(let c): outcome = try addMember(c, at: entry.at, commit: commit)
        case .createKey(let c): outcome = try createKey(c, at: entry.at, commit: commit)
        case .revokeKey(let c): outcome = try revokeKey(c, at: entry.at, commit: commit)
        case .applyFleet(let c): outcome = try applyFleet(c, commit: commit)
        case .submitJob(let c): outcome = try submitJob(c, at: entry.at, commit: commit)
        case .cancelJob(let c): outcome = try cancelJob(c, at: entry.at, commit: commit)
        case .applyPlan(let c): outcome = try applyPlan(c, at: entry.at, commit: commit)
        case .allocationStarted(let c): outcome = try allocationStarted(c, at: entry.at, commit: commit)
        case .allocationExited(let c): outcome = try allocationExited(c, at: entry.at, commit: commit)
        }
        if commit, case .applied = outcome { seq = entry.seq }
        return outcome
    }

    // MARK: tenancy

    mutating func bootstrap(_ c: CreateKey, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard !isBootstrapped else { throw StratusError(.alreadyExists, "control plane already bootstrapped") }
        guard c.role == .operatorAdmin, c.org == nil else {
            throw StratusError(.invalidArgument, "bootstrap key must be an operator-admin key")
        }
        guard keyByHash[c.secretHash] == nil else { throw StratusError(.alreadyExists, "key hash already in use") }
        guard commit else { return .applied(KeyID("key-\(nextKey)").rawValue) }
        insertOrg(CreateOrg(id: InternalOrg.id, displayName: "Internal workloads"), at: at)
        return .applied(insertKey(c, at: at).rawValue)
    }

    mutating func createOrg(_ c: CreateOrg, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        try Name.validate(c.id.rawValue, field: "name")
        guard orgs[c.id] == nil else { throw StratusError(.alreadyExists, "org '\(c.id)' already exists") }
        guard c.displayName.utf8.count <= 200 else {
            throw StratusError(.invalidArgument, "display_name: longer than 200 bytes")
        }
        guard commit else { return .applied(c.id.rawValue) }
        insertOrg(c, at: at)
        return .applied(c.id.rawValue)
    }

    private mutating func insertOrg(_ c: CreateOrg, at: Timestamp) {
        orgs[c.id] = Org(id: c.id, displayName: c.displayName.isEmpty ? c.id.rawValue : c.displayName, createdAt: at)
        let pid = Self.projectID(c.id, InternalOrg.defaultProject)
        projects[pid] = Project(id: pid, org: c.id, name: InternalOrg.defaultProject, createdAt: at)
    }

    mutating func createProject(_ c: CreateProject, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard orgs[c.org] != nil else { throw StratusError.notFound("org", c.org.rawValue) }
        try Name.validate(c.name, field: "name")
        let id = Self.projectID(c.org, c.name)
        guard projects[id] == nil else {
            throw StratusError(.alreadyExists, "project '\(c.name)' already exists in org '\(c.org)'")
        }
        guard commit else { return .applied(id.rawValue) }
        projects[id] = Project(id: id, org: c.org, name: c.name, createdAt: at)
        return .applied(id.rawValue)
    }

    mutating func addMember(_ c: AddMember, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard orgs[c.org] != nil else { throw StratusError.notFound("org", c.org.rawValue) }
        let parts = c.email.split(separator: "@")
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), c.email.utf8.count <= 254 else {
            throw StratusError(.invalidArgument, "email: '\(c.email)' is not an email address")
        }
        guard c.role != .operatorAdmin else {
            throw StratusError(.invalidArgument, "role: members cannot be operator-admin")
        }
        guard !members.values.contains(where: { $0.org == c.org && $0.email == c.email }) else {
            throw StratusError(.alreadyExists, "member '\(c.email)' already in org '\(c.org)'")
        }
        let id = MemberID("mem-\(nextMember)")
        guard commit else { return .applied(id.rawValue) }
        members[id] = Member(id: id, org: c.org, email: c.email, role: c.role, createdAt: at)
        nextMember += 1
        return .applied(id.rawValue)
    }

    mutating func createKey(_ c: CreateKey, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        if let org = c.org {
            guard orgs[org] != nil else { throw StratusError.notFound("org", org.rawValue) }
            guard c.role != .operatorAdmin else {
                throw StratusError(.invalidArgument, "role: an org key cannot be operator-admin")
            }
        } else {
            guard c.role == .operatorAdmin else {
                throw StratusError(.invalidArgument, "org: required unless role is operator-admin")
            }
        }
        guard c.name.utf8.count <= 200 else { throw StratusError(.invalidArgument, "name: longer than 200 bytes") }
        guard c.secretHash.utf8.count == 64 else { throw StratusError(.invalidArgument, "key hash must be SHA-256 hex") }
        guard keyByHash[c.secretHash] == nil else { throw StratusError(.alreadyExists, "key hash already in use") }
        guard commit else { return .applied(KeyID("key-\(nextKey)").rawValue) }
        return .applied(insertKey(c, at: at).rawValue)
    }

    private mutating func insertKey(_ c: CreateKey, at: Timestamp) -> KeyID {
        let id = KeyID("key-\(nextKey)")
        nextKey += 1
        keys[id] = APIKey(
            id: id, org: c.org, role: c.role, name: c.name, secretHash: c.secretHash, hint: c.hint, createdAt: at,
            revokedAt: nil)
        keyByHash[c.secretHash] = id
        return id
    }

    mutating func revokeKey(_ c: RevokeKey, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let key = keys[c.id] else { throw StratusError.notFound("key", c.id.rawValue) }
        guard key.revokedAt == nil else { return .unchanged(c.id.rawValue) }
        guard commit else { return .applied(c.id.rawValue) }
        keys[c.id]!.revokedAt = at
        return .applied(c.id.rawValue)
    }

    // MARK: fleet

    mutating func applyFleet(_ spec: FleetSpec, commit: Bool) throws(StratusError) -> Outcome {
        try spec.checkUnique()
        let declaredRegions = Set(spec.regions)
        let declaredSites = Set(spec.sites.map(\.id))
        let declaredRacks = Set(spec.racks.map(\.id))
        for r in spec.regions { try Name.validate(r.rawValue, field: "region") }
        for s in spec.sites {
            try Name.validate(s.id.rawValue, field: "site")
            guard declaredRegions.contains(s.region) || regions[s.region] != nil else {
                throw StratusError.notFound("region", s.region.rawValue)
            }
            guard s.powerBudgetKW > 0, s.pueMilli >= 1000, s.pueMilli <= 3000 else {
                throw StratusError(.invalidArgument, "site '\(s.id)': power must be positive and PUE between 1.0 and 3.0")
            }
        }
        for r in spec.racks {
            try Name.validate(r.id.rawValue, field: "rack")
            guard declaredSites.contains(r.site) || sites[r.site] != nil else {
                throw StratusError.notFound("site", r.site.rawValue)
            }
            if let existing = racks[r.id], existing.site != r.site {
                throw StratusError(.failedPrecondition, "rack '\(r.id)' is in site '\(existing.site)'; racks cannot move")
            }
        }
        for n in spec.nodes {
            try Name.validate(n.id.rawValue, field: "node")
            guard declaredRacks.contains(n.rack) || racks[n.rack] != nil else {
                throw StratusError.notFound("rack", n.rack.rawValue)
            }
            let model = try GPUCatalog.require(n.gpuModel, field: "node '\(n.id)' gpu")
            guard n.gpuCount >= 1, n.gpuCount <= Limits.maxGPUsPerNode else {
                throw StratusError(.invalidArgument, "node '\(n.id)': gpus must be between 1 and \(Limits.maxGPUsPerNode)")
            }
            if let existing = nodes[n.id] {
                let busy = gpuHolders[n.id]?.contains { $0 != nil } ?? false
                if busy, existing.gpuModel != model.name || existing.gpuCount != n.gpuCount || existing.rack != n.rack {
                    throw StratusError(
                        .failedPrecondition, "node '\(n.id)' has running work; its GPUs and rack cannot change now")
                }
            }
        }
        guard nodes.count + spec.nodes.count <= Limits.maxFleetObjects else {
            throw StratusError(.limitExceeded, "fleet: more than \(Limits.maxFleetObjects) nodes")
        }
        guard commit else { return .applied("fleet") }
        for r in spec.regions where regions[r] == nil { regions[r] = Region(id: r) }
        for s in spec.sites {
            sites[s.id] = Site(id: s.id, region: s.region, powerBudgetKW: s.powerBudgetKW, pueMilli: s.pueMilli)
        }
        for r in spec.racks { racks[r.id] = Rack(id: r.id, site: r.site) }
        for n in spec.nodes {
            let model = GPUCatalog.model(named: n.gpuModel)!.name
            if var existing = nodes[n.id] {
                existing.rack = n.rack
                existing.labels = n.labels
                if existing.gpuModel != model || existing.gpuCount != n.gpuCount {
                    existing.gpuModel = model
                    existing.gpuCount = n.gpuCount
                    gpuHolders[n.id] = Array(repeating: nil, count: n.gpuCount)
                }
                nodes[n.id] = existing
            } else {
                nodes[n.id] = Node(
                    id: n.id, rack: n.rack, gpuModel: model, gpuCount: n.gpuCount, labels: n.labels, state: .ready)
                nodeOrder.append(n.id)
                gpuHolders[n.id] = Array(repeating: nil, count: n.gpuCount)
            }
        }
        return .applied("fleet")
    }

    // MARK: jobs

    mutating func submitJob(_ c: SubmitJob, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard orgs[c.org] != nil else { throw StratusError.notFound("org", c.org.rawValue) }
        if let key = c.idempotencyKey {
            guard !key.isEmpty, key.utf8.count <= Limits.maxIdempotencyKeyLength else {
                throw StratusError(.invalidArgument, "Idempotency-Key: 1 to \(Limits.maxIdempotencyKeyLength) characters")
            }
            if let existing = idempotency[Self.idempotencySlot(c.org, key)], let job = jobs[existing] {
                guard job.spec == c.spec else {
                    throw StratusError(
                        .idempotencyMismatch,
                        "Idempotency-Key '\(key)' was used for job \(existing) with a different request body")
                }
                return .unchanged(existing.rawValue)
            }
        }
        let projectName = c.spec.project ?? InternalOrg.defaultProject
        guard let project = project(org: c.org, name: projectName) else {
            throw StratusError.notFound("project", projectName)
        }
        if c.spec.tier == .internal, c.org != InternalOrg.id {
            throw StratusError(.permissionDenied, "tier: internal is reserved for the operator's own workloads")
        }
        if c.spec.tier == .reserved {
            throw StratusError(
                .invalidArgument, "tier: reserved needs a capacity reservation, which this version does not offer yet")
        }
        guard let largest = largestNode(of: c.spec.gpuModel) else {
            throw StratusError(.invalidArgument, "resources.accelerators: the fleet has no \(c.spec.gpuModel) nodes")
        }
        guard c.spec.gpusPerNode <= largest else {
            throw StratusError(
                .invalidArgument,
                "resources.accelerators: \(c.spec.gpusPerNode) \(c.spec.gpuModel) per node, but the largest \(c.spec.gpuModel) node has \(largest)"
            )
        }
        let fitting = nodeCount(of: c.spec.gpuModel, withAtLeast: c.spec.gpusPerNode)
        guard c.spec.numNodes <= fitting else {
            throw StratusError(
                .invalidArgument,
                "num_nodes: \(c.spec.numNodes) nodes with \(c.spec.gpusPerNode) \(c.spec.gpuModel), but the fleet has \(fitting)")
        }
        guard queue.count < Limits.maxQueuedJobs else {
            throw StratusError(.limitExceeded, "queue: \(Limits.maxQueuedJobs) jobs already waiting")
        }
        let id = JobID("job-\(nextJob)")
        guard commit else { return .applied(id.rawValue) }
        nextJob += 1
        jobs[id] = Job(
            id: id, org: c.org, project: project.id, spec: c.spec, submittedBy: c.by, submittedAt: at,
            idempotencyKey: c.idempotencyKey, state: .queued, allocations: [], startedAt: nil, endedAt: nil,
            reason: nil, cancelRequested: false)
        queue.append(id)
        if let key = c.idempotencyKey { idempotency[Self.idempotencySlot(c.org, key)] = id }
        return .applied(id.rawValue)
    }

    mutating func cancelJob(_ c: CancelJob, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let job = jobs[c.job] else { throw StratusError.notFound("job", c.job.rawValue) }
        if job.state.isTerminal || job.cancelRequested { return .unchanged(c.job.rawValue) }
        guard commit else { return .applied(c.job.rawValue) }
        if job.state == .queued {
            queue.removeAll { $0 == c.job }
            jobs[c.job]!.state = .cancelled
            jobs[c.job]!.endedAt = at
            jobs[c.job]!.reason = "cancelled by \(c.by) while queued"
        } else {
            jobs[c.job]!.cancelRequested = true
            jobs[c.job]!.reason = "cancel requested by \(c.by)"
            for i in jobs[c.job]!.allocations.indices where !jobs[c.job]!.allocations[i].isEnded {
                jobs[c.job]!.allocations[i].stopRequested = true
            }
        }
        return .applied(c.job.rawValue)
    }

    mutating func applyPlan(_ plan: Plan, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        // Guards: every placement must still be valid against the current state, and
        // no two placements of the plan may take the same GPU.
        var taken = Set<String>()
        for p in plan.placements {
            guard let job = jobs[p.job], job.state == .queued else {
                throw StratusError(.failedPrecondition, "plan: job \(p.job) is not queued")
            }
            guard p.nodes.count == job.spec.numNodes, Set(p.nodes.map(\.node)).count == p.nodes.count else {
                throw StratusError(.failedPrecondition, "plan: job \(p.job) needs \(job.spec.numNodes) distinct nodes")
            }
            for a in p.nodes {
                guard let node = nodes[a.node], node.state == .ready, node.gpuModel == job.spec.gpuModel else {
                    throw StratusError(.failedPrecondition, "plan: node \(a.node) cannot take job \(p.job)")
                }
                guard a.gpus.count == job.spec.gpusPerNode else {
                    throw StratusError(.failedPrecondition, "plan: job \(p.job) needs \(job.spec.gpusPerNode) GPUs on \(a.node)")
                }
                let holders = gpuHolders[a.node]!
                for g in a.gpus {
                    guard g >= 0, g < holders.count, holders[g] == nil, taken.insert("\(a.node)#\(g)").inserted else {
                        throw StratusError(.failedPrecondition, "plan: GPU \(g) of \(a.node) is not free")
                    }
                }
            }
        }
        guard !plan.placements.isEmpty else { return .unchanged("plan") }
        guard commit else { return .applied("plan") }
        let placed = Set(plan.placements.map(\.job))
        for p in plan.placements {
            for a in p.nodes {
                for g in a.gpus { gpuHolders[a.node]![g] = p.job }
            }
            jobs[p.job]!.allocations = p.nodes.enumerated().map { rank, a in
                Allocation(
                    node: a.node, gpus: a.gpus.sorted(), rank: rank, startedAt: nil, endedAt: nil, exitCode: nil,
                    endReason: nil, stopRequested: false)
            }
            jobs[p.job]!.state = .starting
            jobs[p.job]!.reason = p.reason
        }
        queue.removeAll { placed.contains($0) }
        return .applied("plan")
    }

    mutating func allocationStarted(_ c: AllocationStarted, at: Timestamp, commit: Bool) throws(StratusError)
        -> Outcome
    {
        guard let job = jobs[c.job] else { throw StratusError.notFound("job", c.job.rawValue) }
        guard let i = job.allocations.firstIndex(where: { $0.node == c.node }) else {
            throw StratusError(.failedPrecondition, "job \(c.job) has no allocation on node \(c.node)")
        }
        let alloc = job.allocations[i]
        guard !alloc.isEnded else { throw StratusError(.failedPrecondition, "job \(c.job) on \(c.node) already ended") }
        if alloc.startedAt != nil { return .unchanged(c.job.rawValue) }
        guard commit else { return .applied(c.job.rawValue) }
        jobs[c.job]!.allocations[i].startedAt = at
        if jobs[c.job]!.state == .starting {
            jobs[c.job]!.state = .running
            jobs[c.job]!.startedAt = at
        }
        return .applied(c.job.rawValue)
    }

    mutating func allocationExited(_ c: AllocationExited, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let job = jobs[c.job] else { throw StratusError.notFound("job", c.job.rawValue) }
        guard let i = job.allocations.firstIndex(where: { $0.node == c.node }) else {
            throw StratusError(.failedPrecondition, "job \(c.job) has no allocation on node \(c.node)")
        }
        let alloc = job.allocations[i]
        if alloc.isEnded { return .unchanged(c.job.rawValue) }
        var record: UsageRecord?
        if let started = alloc.startedAt {
            let r = UsageRecord(
                id: "\(c.job)/\(c.node)", job: c.job, org: job.org, project: job.project, node: c.node,
                gpuModel: job.spec.gpuModel, tier: job.spec.tier, gpus: alloc.gpus.count, startedAt: started,
                endedAt: max(started, at))
            _ = try usage.check(r)
            record = r
        }
        guard commit else { return .applied(c.job.rawValue) }

        if let record { _ = try! usage.record(record) }
        for g in alloc.gpus where gpuHolders[c.node]?[g] == c.job { gpuHolders[c.node]![g] = nil }
        var updated = job
        updated.allocations[i].endedAt = at
        updated.allocations[i].exitCode = c.exitCode
        updated.allocations[i].endReason = c.reason
        let failedHere = c.exitCode != 0 || c.reason != nil
        let firstFailure = failedHere && !updated.cancelRequested && !updated.allocations.contains(where: \.stopRequested)
        if firstFailure {
            // A gang lives and dies together: stop the other nodes' processes.
            for k in updated.allocations.indices where !updated.allocations[k].isEnded {
                updated.allocations[k].stopRequested = true
            }
            let what = c.reason ?? (c.exitCode.map { "exit code \($0)" } ?? "killed")
            updated.reason = "\(what) on \(c.node)"
        }
        if updated.allocations.allSatisfy(\.isEnded) {
            updated.endedAt = at
            if updated.cancelRequested {
                updated.state = .cancelled
            } else if updated.allocations.allSatisfy({ $0.exitCode == 0 && $0.endReason == nil }) {
                updated.state = .succeeded
                updated.reason = nil
            } else {
                updated.state = .failed
            }
        }
        jobs[c.job] = updated
        return .applied(c.job.rawValue)
    }
}
