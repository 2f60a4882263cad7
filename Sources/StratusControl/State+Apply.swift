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
        if !counters.valid { rebuildCounters() }
        let outcome: Outcome
        switch entry.command {
        case .bootstrap(let c): outcome = try bootstrap(c, at: entry.at, commit: commit)
        case .createOrg(let c): outcome = try createOrg(c, at: entry.at, commit: commit)
        case .updateOrg(let c): outcome = try updateOrg(c, commit: commit)
        case .createProject(let c): outcome = try createProject(c, at: entry.at, commit: commit)
        case .addMember(let c): outcome = try addMember(c, at: entry.at, commit: commit)
        case .createKey(let c): outcome = try createKey(c, at: entry.at, commit: commit)
        case .revokeKey(let c): outcome = try revokeKey(c, at: entry.at, commit: commit)
        case .applyFleet(let c): outcome = try applyFleet(c, commit: commit)
        case .setQuota(let c): outcome = try setQuota(c, commit: commit)
        case .setInternalReserve(let c): outcome = try setInternalReserve(c, commit: commit)
        case .submitJob(let c): outcome = try submitJob(c, at: entry.at, commit: commit)
        case .cancelJob(let c): outcome = try cancelJob(c, at: entry.at, commit: commit)
        case .setTiers(let c): outcome = try setTiers(c, at: entry.at, commit: commit)
        case .createReservation(let c): outcome = try createReservation(c, at: entry.at, commit: commit)
        case .cancelReservation(let c): outcome = try cancelReservation(c, at: entry.at, commit: commit)
        case .applyPlan(let c): outcome = try applyPlan(c, at: entry.at, commit: commit)
        case .allocationStarted(let c): outcome = try allocationStarted(c, at: entry.at, commit: commit)
        case .allocationExited(let c): outcome = try allocationExited(c, at: entry.at, commit: commit)
        case .agentReports(let c): outcome = try agentReports(c, at: entry.at, commit: commit)
        case .setPrices(let c): outcome = try setPrices(c, at: entry.at, commit: commit)
        case .recordUsage(let c): outcome = try recordUsage(c, at: entry.at, commit: commit)
        case .closePeriod(let c): outcome = try closePeriod(c, at: entry.at, commit: commit)
        case .deposit(let c): outcome = try deposit(c, at: entry.at, commit: commit)
        case .grantCredit(let c): outcome = try grantCredit(c, at: entry.at, commit: commit)
        case .setCreditLimit(let c): outcome = try setCreditLimit(c, commit: commit)
        case .setBudget(let c): outcome = try setBudget(c, commit: commit)
        case .setSpotPrices(let c): outcome = try setSpotPrices(c, at: entry.at, commit: commit)
        case .createCommitment(let c): outcome = try createCommitment(c, at: entry.at, commit: commit)
        case .createSLA(let c): outcome = try createSLA(c, at: entry.at, commit: commit)
        case .recordProviderCost(let c): outcome = try recordProviderCost(c, at: entry.at, commit: commit)
        case .createAgentToken(let c): outcome = try createAgentToken(c, at: entry.at, commit: commit)
        case .revokeAgentToken(let c): outcome = try revokeAgentToken(c, at: entry.at, commit: commit)
        case .registerNode(let c): outcome = try registerNode(c, at: entry.at, commit: commit)
        case .nodeLost(let c): outcome = try nodeLost(c, at: entry.at, commit: commit)
        case .setNodeState(let c): outcome = try setNodeState(c, at: entry.at, commit: commit)
        case .retireJobs(let c): outcome = try retireJobs(c, at: entry.at, commit: commit)
        }
        syncRunning()
        if commit, case .applied = outcome { seq = entry.seq }
        return outcome
    }

    // MARK: retention

    /// Forgets jobs that ended before `c.endedBefore` (which may not be in the future),
    /// their idempotency keys and their usage records; the usage book keeps the records'
    /// count and GPU time, and the ledger and invoices already hold their money. At most
    /// `Limits.maxJobsRetiredPerCommand` at a time, oldest first.
    mutating func retireJobs(_ c: RetireJobs, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard c.endedBefore <= at else {
            throw StratusError(.invalidArgument, "ended_before: \(c.endedBefore) is after now (\(at))")
        }
        var ended: [(at: Timestamp, id: JobID)] = []
        do {
            // By index: each job's fields are read in place, not the job copied. (In its
            // own scope: the view must be gone before the table changes, or it is copied.)
            let all = jobs.all.values
            var i = all.startIndex
            while i != all.endIndex {
                if all[i].state.isTerminal, let e = all[i].endedAt, e < c.endedBefore { ended.append((e, all[i].id)) }
                all.formIndex(after: &i)
            }
        }
        ended.sort { $0.at != $1.at ? $0.at < $1.at : $0.id < $1.id }
        let retired = Set(ended.prefix(Limits.maxJobsRetiredPerCommand).map(\.id))
        guard !retired.isEmpty else { return .unchanged("0") }
        guard commit else { return .applied("\(retired.count)") }
        for id in retired { jobs.forget(id) }
        idempotency = idempotency.filter { !retired.contains($0.value) }
        // A retired job's records all ended before it did: later ones are kept without a lookup.
        usage.retire(jobs: retired, endedBefore: c.endedBefore)
        return .applied("\(retired.count)")
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
        try Self.checkWeight(c.weight)
        guard commit else { return .applied(c.id.rawValue) }
        insertOrg(c, at: at)
        return .applied(c.id.rawValue)
    }

    static func checkWeight(_ weight: Int?) throws(StratusError) {
        if let weight, weight < 1 || weight > Limits.maxFairShareWeight {
            throw StratusError(.invalidArgument, "weight: must be between 1 and \(Limits.maxFairShareWeight)")
        }
    }

    mutating func updateOrg(_ c: UpdateOrg, commit: Bool) throws(StratusError) -> Outcome {
        guard let org = orgs[c.id] else { throw StratusError.notFound("org", c.id.rawValue) }
        try Self.checkWeight(c.weight)
        if let name = c.displayName, name.utf8.count > 200 {
            throw StratusError(.invalidArgument, "display_name: longer than 200 bytes")
        }
        if (c.weight ?? org.weight) == org.weight, (c.displayName ?? org.displayName) == org.displayName {
            return .unchanged(c.id.rawValue)
        }
        guard commit else { return .applied(c.id.rawValue) }
        if let w = c.weight { orgs[c.id]!.weight = w }
        if let n = c.displayName { orgs[c.id]!.displayName = n }
        return .applied(c.id.rawValue)
    }

    private mutating func insertOrg(_ c: CreateOrg, at: Timestamp) {
        orgs[c.id] = Org(
            id: c.id, displayName: c.displayName.isEmpty ? c.id.rawValue : c.displayName, createdAt: at, weight: c.weight ?? 1)
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
            try Self.checkResources(n.resources, field: "node '\(n.id)'")
            if let existing = nodes[n.id] {
                let busy = busyGPUs(n.id) > 0
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
        for r in spec.racks { racks[r.id] = Rack(id: r.id, site: r.site, block: r.block) }
        for n in spec.nodes {
            let model = GPUCatalog.model(named: n.gpuModel)!.name
            if var existing = nodes[n.id] {
                existing.rack = n.rack
                existing.labels = n.labels
                if let r = n.resources { existing.resources = r }
                if existing.gpuModel != model || existing.gpuCount != n.gpuCount {
                    nodeSizes[existing.gpuModel]![existing.gpuCount]! -= 1
                    if nodeSizes[existing.gpuModel]![existing.gpuCount] == 0 {
                        nodeSizes[existing.gpuModel]![existing.gpuCount] = nil
                    }
                    nodeSizes[model, default: [:]][n.gpuCount, default: 0] += 1
                    existing.gpuModel = model
                    existing.gpuCount = n.gpuCount
                    gpuHolders[n.id] = Array(repeating: nil, count: n.gpuCount)
                }
                nodes[n.id] = existing
            } else {
                var node = Node(
                    id: n.id, rack: n.rack, gpuModel: model, gpuCount: n.gpuCount, labels: n.labels, state: .ready)
                node.resources = n.resources
                addNode(node)
                nodeSizes[model, default: [:]][n.gpuCount, default: 0] += 1
            }
        }
        rebuildCounters()
        return .applied("fleet")
    }

    /// A node's declared or reported CPU and memory must be positive and within limits.
    static func checkResources(_ r: NodeResources?, field: String) throws(StratusError) {
        guard let r else { return }
        let limit = Limits.maxNodeResources
        guard r.cpuMilli >= 0, r.memoryMiB >= 0, !r.isZero, limit.covers(r) else {
            throw StratusError(
                .invalidArgument,
                "\(field): cpus between 0 and \(limit.cpuMilli / 1000) and memory between 0 and \(limit.memoryMiB >> 20)Ti, not both 0"
            )
        }
    }

    // MARK: quotas

    mutating func setQuota(_ c: SetQuota, commit: Bool) throws(StratusError) -> Outcome {
        let scope = c.scope
        guard orgs[scope.org] != nil else { throw StratusError.notFound("org", scope.org.rawValue) }
        if let project = scope.project, self.project(org: scope.org, name: project) == nil {
            throw StratusError.notFound("project", "\(scope.org)/\(project)")
        }
        if let model = scope.gpuModel {
            guard GPUCatalog.model(named: model)?.name == model else {
                throw StratusError(.invalidArgument, "gpu: unknown GPU model '\(model)'")
            }
        }
        if let region = scope.region, regions[RegionID(region)] == nil {
            throw StratusError(.invalidArgument, "region: unknown region '\(region)'")
        }
        if let limit = c.limit {
            guard limit >= 0, limit <= 100_000_000 else {
                throw StratusError(.invalidArgument, "limit: must be between 0 and 100000000 GPUs")
            }
            guard quotas[scope] != nil || quotas.count < Limits.maxQuotaRules else {
                throw StratusError(.limitExceeded, "quotas: at most \(Limits.maxQuotaRules) rules")
            }
        }
        if quotas[scope] == c.limit { return .unchanged(scope.description) }
        guard commit else { return .applied(scope.description) }
        quotas[scope] = c.limit
        return .applied(scope.description)
    }

    mutating func setInternalReserve(_ r: InternalReserve, commit: Bool) throws(StratusError) -> Outcome {
        guard GPUCatalog.model(named: r.gpuModel)?.name == r.gpuModel else {
            throw StratusError(.invalidArgument, "gpu: unknown GPU model '\(r.gpuModel)'")
        }
        if let site = r.site, sites[SiteID(site)] == nil { throw StratusError.notFound("site", site) }
        guard r.series.count <= Limits.maxReserveSeriesPoints else {
            throw StratusError(.limitExceeded, "series: at most \(Limits.maxReserveSeriesPoints) points")
        }
        for p in r.series where p.gpus < 0 || p.gpus > 100_000_000 {
            throw StratusError(.invalidArgument, "series: GPUs must be between 0 and 100000000, got \(p.gpus)")
        }
        guard Set(r.series.map(\.from)).count == r.series.count else {
            throw StratusError(.invalidArgument, "series: two points at the same time")
        }
        let current = reserves[r.key]
        if r.series.isEmpty ? current == nil : current == r { return .unchanged(r.key) }
        guard commit else { return .applied(r.key) }
        reserves[r.key] = r.series.isEmpty ? nil : r
        return .applied(r.key)
    }

    // MARK: jobs

    mutating func submitJob(_ c: SubmitJob, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard orgs[c.org] != nil else { throw StratusError.notFound("org", c.org.rawValue) }
        if let key = c.idempotencyKey {
            guard !key.isEmpty, key.utf8.count <= Limits.maxIdempotencyKeyLength else {
                throw StratusError(.invalidArgument, "Idempotency-Key: 1 to \(Limits.maxIdempotencyKeyLength) characters")
            }
            if let existing = idempotency[Self.idempotencySlot(c.org, key)], let job = jobs[existing] {
                var asSubmitted = job.spec
                if job.spec.budgetFallback == job.spec.tier {
                    asSubmitted.tier = c.spec.tier
                    asSubmitted.retry = c.spec.retry
                }
                guard asSubmitted == c.spec else {
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
        guard tiers.contains(c.spec.tier) else {
            throw StratusError(
                .invalidArgument,
                "tier: \(c.spec.tier.rawValue) is not offered here (tiers: \(tiers.map(\.rawValue).joined(separator: ", ")))")
        }
        if c.spec.tier == .internal, c.org != InternalOrg.id {
            throw StratusError(.permissionDenied, "tier: internal is reserved for the operator's own workloads")
        }
        if let id = c.spec.reservation {
            guard let r = reservations[id], r.org == c.org else { throw StratusError.notFound("reservation", id.rawValue) }
            guard r.project == project.id else {
                throw StratusError(.invalidArgument, "reservation: \(id) belongs to project \(projects[r.project]?.name ?? "")")
            }
            guard r.cancelledAt == nil else { throw StratusError(.failedPrecondition, "reservation: \(id) was cancelled") }
            guard at < r.end else { throw StratusError(.failedPrecondition, "reservation: \(id) ended at \(r.end)") }
            guard c.spec.gpuModel == r.gpuModel else {
                throw StratusError(
                    .invalidArgument, "resources.accelerators: reservation \(id) holds \(r.gpuModel), not \(c.spec.gpuModel)")
            }
            guard c.spec.totalGPUs <= r.gpus else {
                throw StratusError(
                    .invalidArgument, "resources.accelerators: \(c.spec.totalGPUs) GPUs, but reservation \(id) holds \(r.gpus)")
            }
            if let site = r.site, !c.spec.placement.sites.isEmpty, !c.spec.placement.sites.contains(site.rawValue) {
                throw StratusError(.invalidArgument, "sites: reservation \(id) is in site \(site)")
            }
        } else if c.spec.tier == .reserved {
            throw StratusError(.invalidArgument, "tier: reserved is for jobs in a reservation (set reservation: ID)")
        }
        for region in c.spec.placement.regions where regions[RegionID(region)] == nil {
            throw StratusError(.invalidArgument, "regions: unknown region '\(region)'")
        }
        for site in c.spec.placement.sites where sites[SiteID(site)] == nil {
            throw StratusError(.invalidArgument, "sites: unknown site '\(site)'")
        }
        // The job must fit the fleet with at least one of its acceptable GPU models; if
        // none does, the first choice's reason is the one reported.
        var firstProblem: StratusError?
        for choice in c.spec.acceptable {
            if let problem = feasibility(
                choice, numNodes: c.spec.numNodes, placement: c.spec.placement, resources: c.spec.nodeResources)
            {
                firstProblem = firstProblem ?? problem
            } else {
                firstProblem = nil
                break
            }
        }
        if let firstProblem { throw firstProblem }
        guard queue.count < Limits.maxQueuedJobs else {
            throw StratusError(.limitExceeded, "queue: \(Limits.maxQueuedJobs) jobs already waiting")
        }
        let (spec, hold, note) = try admitMoney(c.spec, org: c.org, project: projectName, at: at)
        let id = JobID("job-\(nextJob)")
        guard commit else { return .applied(id.rawValue) }
        nextJob += 1
        var job = Job(
            id: id, org: c.org, project: project.id, spec: spec, submittedBy: c.by, submittedAt: at,
            idempotencyKey: c.idempotencyKey)
        job.record("submitted", "submitted by \(c.by)" + (note.map { "; \($0)" } ?? ""), at: at)
        if let hold {
            billing.holdForJob(id.rawValue, org: c.org, project: projectName, tier: spec.tier, amount: hold, at: at)
        }
        jobs[id] = job
        queue.append(id)
        if let key = c.idempotencyKey { idempotency[Self.idempotencySlot(c.org, key)] = id }
        return .applied(id.rawValue)
    }

    /// Why the fleet could never run `numNodes` nodes of `choice`, or nil if it could.
    func feasibility(
        _ choice: Accelerator, numNodes: Int, placement: PlacementConstraints, resources: NodeResources? = nil
    ) -> StratusError? {
        guard let largest = largestNode(of: choice.model) else {
            return StratusError(.invalidArgument, "resources.accelerators: the fleet has no \(choice.model) nodes")
        }
        guard choice.count <= largest else {
            return StratusError(
                .invalidArgument,
                "resources.accelerators: \(choice.count) \(choice.model) per node, but the largest \(choice.model) node has \(largest)"
            )
        }
        let fitting = nodeCount(of: choice.model, withAtLeast: choice.count, within: placement, resources: resources)
        guard numNodes <= fitting else {
            if let resources, numNodes <= nodeCount(of: choice.model, withAtLeast: choice.count, within: placement) {
                return StratusError(
                    .invalidArgument,
                    "resources: \(numNodes) \(choice.model) nodes with \(resources) each, but \(fitting) nodes have that much")
            }
            let within = placement.isAnywhere ? "" : " where its placement constraints allow"
            return StratusError(
                .invalidArgument,
                "num_nodes: \(numNodes) nodes with \(choice.count) \(choice.model), but the fleet has \(fitting)\(within)")
        }
        return nil
    }

    // MARK: tiers

    mutating func setTiers(_ c: SetTiers, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        let names = c.tiers.map(\.rawValue).joined(separator: ",")
        guard !c.tiers.isEmpty, Set(c.tiers).count == c.tiers.count else {
            throw StratusError(.invalidArgument, "tiers: a list of distinct tiers, highest priority first")
        }
        guard c.tiers.contains(.internal) else {
            throw StratusError(.invalidArgument, "tiers: internal (the operator's own work) cannot be left out")
        }
        if let spot = c.tiers.firstIndex(of: .spot), spot != c.tiers.count - 1 {
            throw StratusError(.invalidArgument, "tiers: spot is preemptible by every other tier, so it must come last")
        }
        for tier in tiers where !c.tiers.contains(tier) {
            let live = jobs.values.filter { $0.spec.tier == tier && !$0.state.isTerminal }.count
            guard live == 0 else {
                throw StratusError(.failedPrecondition, "tiers: \(live) \(tier.rawValue) jobs are queued or running")
            }
            if tier == .reserved, reservations.values.contains(where: { $0.cancelledAt == nil && at < $0.end }) {
                throw StratusError(.failedPrecondition, "tiers: reservations are scheduled or active")
            }
        }
        if c.tiers == tiers { return .unchanged(names) }
        guard commit else { return .applied(names) }
        tiers = c.tiers
        return .applied(names)
    }

    // MARK: reservations

    mutating func createReservation(_ c: CreateReservation, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard orgs[c.org] != nil else { throw StratusError.notFound("org", c.org.rawValue) }
        let projectName = c.spec.project ?? InternalOrg.defaultProject
        guard let project = project(org: c.org, name: projectName) else { throw StratusError.notFound("project", projectName) }
        guard GPUCatalog.model(named: c.spec.gpuModel)?.name == c.spec.gpuModel else {
            throw StratusError(.invalidArgument, "gpu: unknown GPU model '\(c.spec.gpuModel)'")
        }
        guard c.spec.racks != nil || (c.spec.gpus >= 1 && c.spec.gpus <= Limits.maxReservationGPUs) else {
            throw StratusError(.invalidArgument, "gpus: must be between 1 and \(Limits.maxReservationGPUs)")
        }
        if let n = c.spec.racks, n < 1 || n > Limits.maxReservationRacks {
            throw StratusError(.invalidArgument, "racks: must be between 1 and \(Limits.maxReservationRacks)")
        }
        if let site = c.spec.site, sites[site] == nil { throw StratusError.notFound("site", site.rawValue) }
        let (start, end) = c.spec.window(now: at)
        guard start >= at.adding(seconds: -60) else {
            throw StratusError(.invalidArgument, "start: \(start) is in the past")
        }
        guard start.milliseconds - at.milliseconds <= Limits.maxReservationLeadSeconds * 1000 else {
            throw StratusError(
                .limitExceeded, "start: at most \(DurationText.format(seconds: Limits.maxReservationLeadSeconds)) ahead")
        }
        guard end > start else { throw StratusError(.invalidArgument, "end: must be after start") }
        guard end.milliseconds - start.milliseconds <= Limits.maxReservationSeconds * 1000 else {
            throw StratusError(
                .limitExceeded, "duration: at most \(DurationText.format(seconds: Limits.maxReservationSeconds))")
        }
        guard reservations.count < Limits.maxReservations else {
            throw StratusError(.limitExceeded, "reservations: at most \(Limits.maxReservations)")
        }
        guard c.leadSeconds >= 0, c.leadSeconds <= Limits.maxJobDurationSeconds else {
            throw StratusError(.invalidArgument, "lead: must be between 0 and \(Limits.maxJobDurationSeconds) seconds")
        }
        let holdFrom = max(at, start.adding(seconds: -c.leadSeconds))
        var gpus = c.spec.gpus
        var chosen: [RackID] = []
        if let n = c.spec.racks {
            let free = freeRacks(
                model: c.spec.gpuModel, site: c.spec.site, from: holdFrom, end: end, lead: c.leadSeconds, now: at)
            guard free.count >= n else {
                throw StratusError(
                    .failedPrecondition,
                    "reservation: \(n) whole \(c.spec.gpuModel) racks are not available from \(holdFrom) to \(end); \(free.count) are (all nodes ready, no other block, no non-spot work that may still run then)"
                )
            }
            chosen = free.prefix(n).map(\.rack)
            gpus = free.prefix(n).reduce(0) { $0 + $1.gpus }
        }
        if let problem = reservationProblem(
            model: c.spec.gpuModel, gpus: gpus, site: c.spec.site, start: holdFrom, end: end, lead: c.leadSeconds, now: at)
        {
            throw StratusError(.failedPrecondition, problem)
        }
        let id = ReservationID("res-\(nextReservation)")
        let charge = try blockCharge(
            org: c.org, project: projectName, model: c.spec.gpuModel, gpus: gpus, site: c.spec.site, start: start, end: end,
            at: at)
        guard commit else { return .applied(id.rawValue) }
        nextReservation += 1
        reservations[id] = Reservation(
            id: id, org: c.org, project: project.id, gpuModel: c.spec.gpuModel, gpus: gpus, site: c.spec.site,
            start: start, end: end, leadSeconds: c.leadSeconds, createdAt: at, racks: chosen)
        if let charge {
            billing.chargeUpFront(
                org: c.org,
                Fee(
                    id: id.rawValue,
                    description:
                        "Capacity block \(id): \(gpus) \(c.spec.gpuModel) from \(start) to \(end), \(Invoice.gpuHours(charge.gpuSeconds)) GPU-hours at \(charge.price)",
                    amount: charge.amount), project: projectName, at: at)
        }
        return .applied(id.rawValue)
    }

    mutating func cancelReservation(_ c: CancelReservation, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard var r = reservations[c.reservation] else { throw StratusError.notFound("reservation", c.reservation.rawValue) }
        if r.cancelledAt != nil || at >= r.end { return .unchanged(r.id.rawValue) }
        guard commit else { return .applied(r.id.rawValue) }
        r.cancelledAt = at
        reservations[r.id] = r
        // Queued work in it can no longer run; running work is stopped by the scheduler.
        for id in queue where jobs[id]?.spec.reservation == r.id {
            var job = jobs[id]!
            job.state = .cancelled
            job.endedAt = at
            billing.releaseJob(job.id.rawValue, at: at)
            job.reason = "reservation \(r.id) was cancelled by \(c.by)"
            job.record("cancelled", job.reason!, at: at)
            jobs[id] = job
            nominations[id] = nil
        }
        queue.removeAll { jobs[$0]?.state == .cancelled }
        return .applied(r.id.rawValue)
    }

    /// Whole racks of `model` (in `site`) that can be held over [from, end), in rack order:
    /// every node of the model and ready, in no other block of racks that overlaps, and
    /// with no non-spot work (or GPUs held for it) that may still run at `from`.
    func freeRacks(model: String, site: SiteID?, from: Timestamp, end: Timestamp, lead: Int64, now: Timestamp) -> [(
        rack: RackID, gpus: Int
    )] {
        var members: [RackID: [Node]] = [:]
        for id in nodeOrder {
            let node = nodes[id]!
            members[node.rack, default: []].append(node)
        }
        var taken = Set<RackID>()
        for r in reservations.values where r.overlaps(from: from, to: end) { taken.formUnion(r.racks) }
        // Non-spot work that may still run at `from`, by rack (work in a block ends with it).
        var busy = Set<RackID>()
        func latestEnd(_ job: Job, _ limit: Timestamp?) -> Timestamp {
            min(
                limit ?? Timestamp(milliseconds: .max),
                job.spec.reservation.flatMap { reservations[$0]?.end } ?? .init(milliseconds: .max))
        }
        for job in jobs.values where !job.state.isTerminal && job.spec.tier != .spot {
            guard latestEnd(job, Self.expectedEnd(job)) > from else { continue }
            for a in job.allocations where !a.isEnded { if let n = nodes[a.node] { busy.insert(n.rack) } }
        }
        for (id, target) in nominations {
            guard let job = jobs[id], job.spec.tier != .spot else { continue }
            guard latestEnd(job, job.spec.maxDurationSeconds.map { now.adding(seconds: lead + $0) }) > from else { continue }
            for a in target { if let n = nodes[a.node] { busy.insert(n.rack) } }
        }
        var out: [(RackID, Int)] = []
        for rack in racks.keys.sorted() {
            guard let nodes = members[rack], !nodes.isEmpty, !taken.contains(rack), !busy.contains(rack),
                site == nil || racks[rack]?.site == site,
                nodes.allSatisfy({ $0.gpuModel == model && $0.isSchedulable })
            else { continue }
            out.append((rack, nodes.reduce(0) { $0 + $1.gpuCount }))
        }
        return out
    }

    /// Why `gpus` GPUs of `model` (in `site`, or anywhere) cannot be held over [start, end)
    /// (from when its GPUs are held until it ends), or nil. At every moment of the window, the accepted reservations, the
    /// internal reserve (or internal work, if more) and other non-spot work that may
    /// still run then (no time limit, or one that ends later) must leave room, in the fleet
    /// and in the site. Spot work does not count: it is preempted.
    func reservationProblem(
        model: String, gpus: Int, site: SiteID?, start: Timestamp, end: Timestamp, lead: Int64, now: Timestamp
    ) -> String? {
        var capacity: [SiteID?: Int] = [nil: 0]
        if let site { capacity[site] = 0 }
        for id in nodeOrder {
            let node = nodes[id]!
            guard node.gpuModel == model, node.isSchedulable else { continue }
            capacity[nil]! += node.gpuCount
            if let site, self.site(of: node)?.id == site { capacity[site]! += node.gpuCount }
        }
        // Work that holds GPUs now, outside reservations, with when it ends at the latest.
        var running: [(site: SiteID?, internal: Bool, gpus: Int, end: Timestamp?)] = []
        for job in jobs.values where !job.state.isTerminal && job.spec.reservation == nil && job.spec.tier != .spot {
            for a in job.allocations where !a.isEnded {
                guard let node = nodes[a.node], node.gpuModel == model else { continue }
                running.append((self.site(of: node)?.id, job.spec.tier == .internal, a.gpus.count, Self.expectedEnd(job)))
            }
        }
        // GPUs held for queued work whose preemption is under way: it starts by the
        // victims' deadline (at most `lead` from now) and runs up to its time limit.
        for (id, target) in nominations {
            guard let job = jobs[id], job.spec.reservation == nil, job.spec.tier != .spot else { continue }
            let end = job.spec.maxDurationSeconds.map { now.adding(seconds: lead + $0) }
            for a in target {
                guard let node = nodes[a.node], node.gpuModel == model else { continue }
                running.append((self.site(of: node)?.id, job.spec.tier == .internal, a.gpus.count, end))
            }
        }
        let others = reservations.values.filter { $0.gpuModel == model && $0.overlaps(from: start, to: end) }
        let modelReserves = reserves.values.filter { $0.gpuModel == model }
        var moments = [start]
        for r in others where r.holdFrom > start { moments.append(r.holdFrom) }
        for r in modelReserves { for p in r.series where p.from > start && p.from < end { moments.append(p.from) } }
        for scope in capacity.keys.sorted(by: { ($0?.rawValue ?? "") < ($1?.rawValue ?? "") }) {
            let total = capacity[scope]!
            for t in Set(moments).sorted() {
                let reserved = others.filter { $0.holdFrom <= t && t < $0.end && (scope == nil || $0.site == scope) }
                    .reduce(0) { $0 + $1.gpus }
                let siteReserves = modelReserves.filter { $0.site != nil && (scope == nil || $0.site == scope?.rawValue) }
                    .reduce(0) { $0 + $1.gpus(at: t) }
                let fleetReserve = scope == nil ? modelReserves.filter { $0.site == nil }.reduce(0) { $0 + $1.gpus(at: t) } : 0
                let held = max(fleetReserve, siteReserves)
                var internalWork = 0
                var otherWork = 0
                for w in running where (scope == nil || w.site == scope) && (w.end.map { $0 > t } ?? true) {
                    if w.internal { internalWork += w.gpus } else { otherWork += w.gpus }
                }
                let committed = reserved + max(held, internalWork) + otherWork
                if committed + gpus > total {
                    let place = scope.map { "site \($0)" } ?? "the fleet"
                    return
                        "reservation: \(gpus) \(model) in \(place) is not available at \(t): \(committed) of \(total) are committed (reservations \(reserved), internal \(max(held, internalWork)), other running work \(otherWork))"
                }
            }
        }
        return nil
    }

    mutating func cancelJob(_ c: CancelJob, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let job = jobs[c.job] else { throw StratusError.notFound("job", c.job.rawValue) }
        if job.state.isTerminal || job.cancelRequested { return .unchanged(c.job.rawValue) }
        guard commit else { return .applied(c.job.rawValue) }
        var updated = job
        if job.state == .queued {
            queue.removeAll { $0 == c.job }
            nominations[c.job] = nil
            updated.state = .cancelled
            updated.endedAt = at
            billing.releaseJob(updated.id.rawValue, at: at)
            updated.reason = "cancelled by \(c.by) while queued"
            closeOutages(c.job, reservation: job.spec.reservation, at: at)
        } else {
            updated.cancelRequested = true
            updated.reason = "cancel requested by \(c.by)"
            for i in updated.allocations.indices where !updated.allocations[i].isEnded {
                updated.allocations[i].stopRequested = true
            }
        }
        updated.record("cancelled", "cancel requested by \(c.by)", at: at)
        jobs[c.job] = updated
        return .applied(c.job.rawValue)
    }

    mutating func applyPlan(_ plan: Plan, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        // Guards: every decision must still be valid against the current state, and no
        // two decisions of the plan may take the same GPU.
        // GPUs the plan takes, per node, as bits (a node has at most
        // `Limits.maxGPUsPerNode` GPUs; one lookup per node, no list to allocate).
        var taken: [NodeID: UInt128] = [:]
        var resourcesTaken: [NodeID: NodeResources] = [:]
        // GPUs that placements on fractions share: "node#gpu" -> the share after this plan.
        var shared: [String: GPUShare] = [:]
        // GPUs held for jobs that preempted, per node.
        var held: [NodeID: [(job: JobID, gpus: [Int])]] = [:]
        for (other, assignments) in nominations {
            for a in assignments { held[a.node, default: []].append((other, a.gpus)) }
        }
        /// Takes `gpus` of `node` for `job` (`free` says whether a GPU may be taken).
        func claim(_ node: NodeID, _ gpus: [Int], for job: JobID, free: (Int) -> Bool) throws(StratusError) {
            var mine = taken[node] ?? 0
            let heldHere = held[node] ?? []
            for g in gpus {
                guard free(g) else { throw StratusError(.failedPrecondition, "plan: GPU \(g) of \(node) is not free") }
                guard shared.isEmpty || shared["\(node)#\(g)"] == nil, mine & Self.gpuBit(g) == 0 else {
                    throw StratusError(.failedPrecondition, "plan: GPU \(g) of \(node) is used twice")
                }
                mine |= Self.gpuBit(g)
                for (other, gpus) in heldHere where other != job && gpus.contains(g) {
                    throw StratusError(.failedPrecondition, "plan: GPU \(g) of \(node) is held for \(other)")
                }
            }
            taken[node] = mine
        }
        // Each placed node's position in the counters and its record, in placement order:
        // looked up once for the guards, the power check and the recount.
        var placedNodes: [(k: Int?, model: String)] = []
        for p in plan.placements {
            guard let job = jobs[p.job], job.state == .queued else {
                throw StratusError(.failedPrecondition, "plan: job \(p.job) is not queued")
            }
            if let id = job.spec.reservation {
                guard let r = reservations[id], r.cancelledAt == nil, r.start <= at, at < r.end else {
                    throw StratusError(.failedPrecondition, "plan: job \(p.job) is outside its reservation's window")
                }
            }
            guard p.nodes.count == job.spec.numNodes, p.nodes.count < 2 || Set(p.nodes.map(\.node)).count == p.nodes.count
            else {
                throw StratusError(.failedPrecondition, "plan: job \(p.job) needs \(job.spec.numNodes) distinct nodes")
            }
            guard !p.nodes.isEmpty else {
                throw StratusError(.failedPrecondition, "plan: job \(p.job) must use one GPU model on all its nodes")
            }
            var model: String?
            for a in p.nodes {
                // The node's slot in the node tables, looked up once for the guards, the
                // power check and the recount.
                let k = counterPosition(a.node)
                // The node's record read in place (not copied), for its state and model.
                guard nodes[a.node, at: k]?.isSchedulable == true, let nodeModel = nodes[a.node, at: k]?.gpuModel,
                    let count = job.spec.gpusPerNode(on: nodeModel)
                else {
                    throw StratusError(.failedPrecondition, "plan: node \(a.node) cannot take job \(p.job)")
                }
                guard model == nil || model == nodeModel else {
                    throw StratusError(.failedPrecondition, "plan: job \(p.job) must use one GPU model on all its nodes")
                }
                model = nodeModel
                placedNodes.append((k, nodeModel))
                guard a.gpus.count == count else {
                    throw StratusError(.failedPrecondition, "plan: job \(p.job) needs \(count) GPUs on \(a.node)")
                }
                if let milli = job.spec.gpuShareMilli {
                    // A fraction: a free GPU, or one shared by the same org and tier with room.
                    let g = a.gpus[0]
                    let key = "\(a.node)#\(g)"
                    // Held for another job's preemption: not free (held for this one: its own;
                    // held for a fraction this plan placed there first: a share to join).
                    let placedShare = shared[key]
                    guard (taken[a.node] ?? 0) & Self.gpuBit(g) == 0,
                        (held[a.node] ?? []).allSatisfy({
                            $0.job == p.job || !$0.gpus.contains(g) || placedShare?.jobs.contains($0.job) == true
                        })
                    else {
                        throw StratusError(.failedPrecondition, "plan: GPU \(g) of \(a.node) is not free")
                    }
                    var share =
                        shared[key] ?? gpuShares[a.node, at: k]?[g]
                        ?? GPUShare(org: job.org, tier: job.spec.tier, milli: 0, jobs: [])
                    guard share.jobs.isEmpty ? isFree(a.node, g) : share.org == job.org && share.tier == job.spec.tier,
                        share.milli + milli <= 1000
                    else {
                        throw StratusError(.failedPrecondition, "plan: GPU \(g) of \(a.node) has no room for \(p.job)'s share")
                    }
                    share.milli += milli
                    share.jobs.append(p.job)
                    shared[key] = share
                } else {
                    let holders = gpuHolders[a.node, at: k]!
                    let shares = gpuShares[a.node, at: k]
                    try claim(a.node, a.gpus, for: p.job) { g in
                        g >= 0 && g < holders.count && holders[g] == nil && shares?[g] == nil
                    }
                }
                if let need = job.spec.nodeResources, let node = nodes[a.node, at: k],
                    let free = Self.freeResources(node, used: resourcesInUse[a.node, at: k])
                {
                    let taken = resourcesTaken[a.node, default: .zero] + need
                    guard free.covers(taken) else {
                        throw StratusError(
                            .failedPrecondition, "plan: \(a.node) has \(free) free; job \(p.job) needs \(need) there")
                    }
                    resourcesTaken[a.node] = taken
                }
            }
        }
        // Site power caps: placements may not take a site above its budget.
        if !plan.placements.isEmpty {
            var used = usedWattsBySite()
            var newShares = Set<String>()
            var n = 0
            for p in plan.placements {
                let fraction = jobs.all[p.job]?.spec.gpuShareMilli != nil
                for a in p.nodes {
                    let k = placedNodes[n].k
                    let model = placedNodes[n].model
                    n += 1
                    // A shared GPU draws its power once: when the plan starts sharing it.
                    if fraction {
                        let key = "\(a.node)#\(a.gpus[0])"
                        guard gpuShares[a.node, at: k]?[a.gpus[0]] == nil, newShares.insert(key).inserted else { continue }
                    }
                    var site: Site?
                    if let k {
                        site = counters.siteAt[k]
                    } else if let node = nodes[a.node] {
                        site = self.site(of: node)
                    }
                    guard let site else { continue }
                    used[site.id, default: 0] += Self.wallWatts(model: model, gpus: a.gpus.count, pueMilli: site.pueMilli)
                    guard used[site.id]! <= site.powerBudgetKW * 1000 else {
                        throw StratusError(.failedPrecondition, "plan: site \(site.id) would exceed its power budget")
                    }
                }
            }
        }
        // Quotas: never exceeded, except project rules by spot work borrowing org quota.
        if !plan.placements.isEmpty, !quotas.isEmpty {
            var used = quotaUsage()
            for p in plan.placements {
                let job = jobs[p.job]!
                let project = projects[job.project]!.name
                for a in p.nodes {
                    let node = nodes[a.node]!
                    let region = site(of: node)?.region.rawValue ?? ""
                    for scope in QuotaScope.all(org: job.org, project: project, gpuModel: node.gpuModel, region: region) {
                        guard let limit = quotas[scope] else { continue }
                        used[scope, default: 0] += a.gpus.count
                        let borrowing = scope.project != nil && job.spec.tier == .spot
                        guard used[scope]! <= limit || borrowing else {
                            throw StratusError(.failedPrecondition, "plan: \(p.job) would exceed the quota of \(scope)")
                        }
                    }
                }
            }
        }
        for p in plan.preemptions {
            guard let job = jobs[p.job], job.state == .queued, nominations[p.job] == nil else {
                throw StratusError(.failedPrecondition, "plan: job \(p.job) cannot preempt now")
            }
            // Without victims only to hold free GPUs for a reservation's job ahead of its start.
            guard !p.victims.isEmpty || (!p.target.isEmpty && job.spec.reservation != nil), p.noticeSeconds >= 0 else {
                throw StratusError(.failedPrecondition, "plan: preemption for \(p.job) names no victims")
            }
            for v in p.victims {
                guard let victim = jobs[v], victim.state == .starting || victim.state == .running,
                    victim.spec.tier == .spot, !victim.cancelRequested, victim.preemptedBy == nil
                else {
                    throw StratusError(.failedPrecondition, "plan: \(v) cannot be preempted by \(p.job)")
                }
                // For GPUs: only a higher tier preempts. To reclaim quota (no target GPUs):
                // only spot work borrowed by another project of the same org.
                let allowed =
                    p.target.isEmpty
                    ? victim.org == job.org && victim.project != job.project
                    : victim.spec.tier.rank > job.spec.tier.rank
                guard allowed else {
                    throw StratusError(.failedPrecondition, "plan: \(v) cannot be preempted by \(p.job)")
                }
            }
            let victims = Set(p.victims)
            for a in p.target {
                guard let node = nodes[a.node], let count = job.spec.gpusPerNode(on: node.gpuModel), a.gpus.count == count
                else {
                    throw StratusError(.failedPrecondition, "plan: node \(a.node) cannot take job \(p.job)")
                }
                let holders = gpuHolders[a.node]!
                let shares = gpuShares[a.node]
                for g in a.gpus {
                    let sharers = shares?[g]?.jobs ?? []
                    guard g >= 0, g < holders.count, holders[g] == nil || victims.contains(holders[g]!),
                        sharers.allSatisfy(victims.contains)
                    else {
                        throw StratusError(.failedPrecondition, "plan: GPU \(g) of \(a.node) is held by non-victim work")
                    }
                }
                try claim(a.node, a.gpus, for: p.job) { _ in true }
            }
        }
        for stop in plan.stops {
            guard let job = jobs[stop.job], job.state == .starting || job.state == .running, !job.cancelRequested,
                let id = job.spec.reservation, let r = reservations[id], r.cancelledAt != nil || stop.deadline >= r.end
            else {
                throw StratusError(.failedPrecondition, "plan: job \(stop.job) cannot be stopped for its reservation")
            }
        }
        guard !plan.isEmpty else { return .unchanged("plan") }
        guard commit else { return .applied("plan") }
        let placed = Set(plan.placements.map(\.job))
        var n = 0
        for p in plan.placements {
            // The fields of the spec that placing reads (the whole spec, a dozen strings and
            // lists, is not copied), read in a scope of their own: a copy of the job alive
            // when it changes below would make the change copy its record.
            let share: Int?
            let need: NodeResources?
            let tier: Tier
            let reservation: ReservationID?
            do {
                let job = jobs.all[p.job]!
                (share, need, tier, reservation) = (
                    job.spec.gpuShareMilli, job.spec.nodeResources, job.spec.tier, job.spec.reservation
                )
            }
            for a in p.nodes {
                let k = placedNodes[n].k
                n += 1
                // The node tables changed in place at the node's slot, and the GPU table read
                // back for the recount.
                if share != nil {
                    gpuShares[a.node, at: k, default: [:]][a.gpus[0]] = shared["\(a.node)#\(a.gpus[0])"]
                } else {
                    gpuHolders.modify(a.node, at: k) { $0!.hold(a.gpus, for: p.job) }
                }
                if let need {
                    resourcesInUse[a.node, at: k, default: .zero] = resourcesInUse[a.node, at: k, default: .zero] + need
                }
                // The node record lent, not copied (nothing here changes it).
                recount(
                    a.node, at: k, node: nodes[a.node, at: k], holders: gpuHolders[a.node, at: k],
                    delta: share == nil ? (a.gpus.count, tier) : nil)
            }
            if counters.valid { counters.holding.insert(p.job) }
            // In place: the job is not copied out and back.
            jobs.update(p.job) { job in
                job.allocations = p.nodes.enumerated().map { rank, a in
                    let sorted = zip(a.gpus, a.gpus.dropFirst()).allSatisfy { $0 < $1 }
                    return Allocation(node: a.node, gpus: sorted ? a.gpus : a.gpus.sorted(), rank: rank)
                }
                job.state = .starting
                job.placedAt = at
                job.reason = p.reason
                job.record("placed", "\(p.reason): \(Self.describe(p.nodes))", at: at)
            }
            closeOutages(p.job, reservation: reservation, at: at)
            nominations[p.job] = nil
        }
        queue.removeAll { placed.contains($0) }
        for p in plan.preemptions {
            let deadline = at.adding(seconds: p.noticeSeconds)
            for v in p.victims {
                var victim = jobs[v]!
                victim.preemptedBy = p.job
                for i in victim.allocations.indices where !victim.allocations[i].isEnded {
                    victim.allocations[i].stopRequested = true
                    victim.allocations[i].stopDeadline = deadline
                    victim.allocations[i].noticeAt = at
                }
                victim.reason =
                    p.target.isEmpty
                    ? "preempted by \(p.job) to reclaim borrowed quota"
                    : "preempted by \(p.job) (\(jobs[p.job]!.spec.tier.rawValue) tier)"
                victim.record("preemption_notice", "preempted by \(p.job); killed at \(deadline) if still running", at: at)
                jobs[v] = victim
            }
            if !p.target.isEmpty { nominations[p.job] = p.target }
            jobs[p.job]!.record(p.victims.isEmpty ? "holding" : "preempting", p.reason, at: at)
        }
        for stop in plan.stops {
            var job = jobs[stop.job]!
            job.cancelRequested = true
            job.reason = "stopped: \(stop.reason)"
            for i in job.allocations.indices where !job.allocations[i].isEnded {
                job.allocations[i].stopRequested = true
                job.allocations[i].stopDeadline = stop.deadline
            }
            job.record("reservation_ending", "\(stop.reason); killed at \(stop.deadline) if still running", at: at)
            jobs[stop.job] = job
        }
        return .applied("plan")
    }

    mutating func allocationStarted(_ c: AllocationStarted, at: Timestamp, commit: Bool) throws(StratusError)
        -> Outcome
    {
        let (i, starts) = try Self.judgeStart(c, jobs[c.job])
        guard starts else { return .unchanged(c.job.rawValue) }
        guard commit else { return .applied(c.job.rawValue) }
        start(c.job, i, on: c.node, at: at)
        return .applied(c.job.rawValue)
    }

    /// Judges a start report against `job` (the reported job's record; nil: there is
    /// none): the index of the allocation it names, and whether it starts it (false: it
    /// had started already, nothing to do). `hint`: see `allocationIndex`.
    @inline(__always)
    static func judgeStart(_ r: AllocationStarted, _ job: Job?, hint: Int = 0) throws(StratusError) -> (
        index: Int, starts: Bool
    ) {
        let i = try allocationIndex(job, r.job, on: r.node, attempt: r.attempt, hint: hint)
        // The fields read in place (a copy of the allocation would retain its lists).
        guard !job!.allocations[i].isEnded else {
            throw StratusError(.failedPrecondition, "job \(r.job) on \(r.node) already ended")
        }
        return (i, job!.allocations[i].startedAt == nil)
    }

    /// Allocation `i` (on `node`) of job `id` started at `at`; the first one to start
    /// makes the job running. In place: a gang's records are not copied for each node.
    private mutating func start(_ id: JobID, _ i: Int, on node: NodeID, at: Timestamp) {
        // The scheduler sees a job from when it started (else when it was placed), and its
        // end at the latest from its first start: a start changes that view only when it
        // is the job's first and later than its placement (later starts of a gang's nodes
        // do not move its first).
        let changesView = jobs.all[id].map { $0.state == .starting && $0.placedAt != at } ?? true
        jobs.update(id, touching: changesView) { job in
            job.allocations[i].startedAt = at
            if job.state == .starting {
                job.state = .running
                job.startedAt = at
                job.record("started", "running on \(node)", at: at)
            }
        }
    }

    /// The index of the allocation on `node` of `job` (job `id`'s; nil: there is none),
    /// for a report about run `attempt`. `hint` is where to look first (a gang's nodes
    /// report in allocation order).
    @inline(__always)
    static func allocationIndex(_ job: Job?, _ id: JobID, on node: NodeID, attempt: Int?, hint: Int = 0)
        throws(StratusError) -> Int
    {
        guard let job else { throw StratusError.notFound("job", id.rawValue) }
        if let attempt, attempt != job.attempt {
            throw StratusError(
                .failedPrecondition,
                "job \(id): run \(attempt + 1) is over (the job is on run \(job.attempt + 1)); stop its processes")
        }
        if hint < job.allocations.count, job.allocations[hint].node == node { return hint }
        guard let i = job.allocations.firstIndex(where: { $0.node == node }) else {
            throw StratusError(.failedPrecondition, "job \(id) has no allocation on node \(node)")
        }
        return i
    }

    mutating func allocationExited(_ c: AllocationExited, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard let judged = try judgeExit(c, at: at) else { return .unchanged(c.job.rawValue) }
        guard commit else { return .applied(c.job.rawValue) }
        var tally = Billing.Tally()
        endAllocation(
            c.job, judged.index, record: judged.record, endedAt: at, exitCode: c.exitCode, reason: c.reason, at: at,
            tally: &tally)
        billing.post(tally, now: at)
        return .applied(c.job.rawValue)
    }

    /// `judgeExit` of a lone report. Judged here, not in the changing command's body: the
    /// judging reads the state through a closure (an assertion's), and a closure that reads
    /// `self` in a `mutating` function makes the optimizer copy the whole state.
    @inline(never)
    func judgeExit(_ r: AllocationExited, at: Timestamp) throws(StratusError) -> JudgedExit? {
        try judgeExit(r, jobs[r.job], at: at).exit
    }

    /// Reports that arrived together: each start, then each exit, as one command. Judged
    /// as a whole against the state before it (so each allocation may be named once per
    /// list); refused whole, naming the first report refused.
    mutating func agentReports(_ c: AgentReports, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard c.count <= Limits.maxReportsPerCommand else {
            throw StratusError(
                .limitExceeded, "reports: \(c.count) in one command; at most \(Limits.maxReportsPerCommand)")
        }
        // Every report is judged before any is applied (also when committing: the command
        // is all or nothing whichever way the shell runs it).
        var exits: [JudgedExit?] = []
        let (judged, starts) = try judge(c, at: at, exits: &exits)
        guard commit, judged > 0 else { return judged > 0 ? .applied("\(judged)") : .unchanged("0") }
        var applied = 0
        for (k, r) in c.started.enumerated() {
            // One judged unchanged (it had started) is skipped.
            guard let i = starts[k] else { continue }
            start(r.job, i, on: r.node, at: at)
            applied += 1
        }
        var tally = Billing.Tally()
        for (k, r) in c.exited.enumerated() {
            // One judged unchanged (it had ended) is skipped; so is one whose run an
            // earlier exit of this command just finished (and requeued).
            // Taken out of the list, not copied (a record is a dozen strings).
            guard var judged = exits[k].take(),
                jobs.all[r.job]?.isLive(judged.index, on: r.node, attempt: judged.attempt) == true
            else { continue }
            // The record judged, unless the allocation started in this very command.
            var record = judged.record.take()
            if record == nil { record = usageRecord(jobs.all[r.job]!, judged.index, endedAt: at) }
            endAllocation(
                r.job, judged.index, record: record, endedAt: at, exitCode: r.exitCode, reason: r.reason, at: at,
                tally: &tally)
            applied += 1
        }
        billing.post(tally, now: at)
        return .applied("\(applied)")
    }

    /// What judging an exit found: the allocation's place, its run, and the usage record
    /// it would make (nil when it had not started).
    struct JudgedExit {
        let index: Int
        let attempt: Int
        var record: UsageRecord?
    }

    /// Judges an exit report against `job` (the reported job's record; nil: there is
    /// none) as of `at`: the index of the allocation it names, and what ending it would
    /// do (nil: it had ended already, nothing to do). `hint`: see `allocationIndex`.
    @inline(__always)
    func judgeExit(_ r: AllocationExited, _ job: Job?, at: Timestamp, hint: Int = 0) throws(StratusError) -> (
        index: Int, exit: JudgedExit?
    ) {
        let i = try Self.allocationIndex(job, r.job, on: r.node, attempt: r.attempt, hint: hint)
        guard let job, !job.allocations[i].isEnded else { return (i, nil) }
        return (i, JudgedExit(index: i, attempt: job.attempt, record: usageRecord(job, i, endedAt: at)))
    }

    /// How many of `c`'s reports would change something and, for each start that would,
    /// its allocation's index; for each exit that would, what was judged, appended to
    /// `exits` (the caller's list, whose records it then takes without copying them).
    /// Throws the first refusal, named by its place in its list.
    private func judge(_ c: AgentReports, at: Timestamp, exits: inout [JudgedExit?]) throws(StratusError) -> (Int, [Int?]) {
        struct Run: Hashable {
            let job: JobID
            let node: NodeID
            func _rawHashValue(seed: Int) -> Int { job._rawHashValue(seed: node._rawHashValue(seed: seed)) }
        }
        var applied = 0
        // Repeats found by a scan of the reports before (few: a job's nodes), else a set.
        let scans = max(c.started.count, c.exited.count) <= 8
        var named = Set<Run>()
        if !scans { named.reserveCapacity(c.count) }
        // A gang's reports come together: its job is looked up once, and each node's
        // allocation first looked for after the previous one's.
        var job: Job?
        var next = 0
        var starts: [Int?] = []
        starts.reserveCapacity(c.started.count)
        for (k, r) in c.started.enumerated() {
            let repeated =
                scans
                ? c.started[..<k].contains { $0.job == r.job && $0.node == r.node }
                : !named.insert(Run(job: r.job, node: r.node)).inserted
            guard !repeated else {
                throw StratusError(.invalidArgument, "started[\(k)]: job \(r.job) on \(r.node) is named twice")
            }
            do {
                if job?.id != r.job { (job, next) = (jobs.all[r.job], 0) }
                let (i, starting) = try Self.judgeStart(r, job, hint: next)
                next = i + 1
                starts.append(starting ? i : nil)
                if starting { applied += 1 }
            } catch {
                throw StratusError(error.code, "started[\(k)]: \(error.message)")
            }
        }
        named.removeAll(keepingCapacity: true)
        job = nil
        exits.reserveCapacity(c.exited.count)
        for (k, r) in c.exited.enumerated() {
            let repeated =
                scans
                ? c.exited[..<k].contains { $0.job == r.job && $0.node == r.node }
                : !named.insert(Run(job: r.job, node: r.node)).inserted
            guard !repeated else {
                throw StratusError(.invalidArgument, "exited[\(k)]: job \(r.job) on \(r.node) is named twice")
            }
            do {
                if job?.id != r.job { (job, next) = (jobs.all[r.job], 0) }
                let (i, exit) = try judgeExit(r, job, at: at, hint: next)
                next = i + 1
                exits.append(exit)
                if exit != nil { applied += 1 }
            } catch {
                throw StratusError(error.code, "exited[\(k)]: \(error.message)")
            }
        }
        return (applied, starts)
    }

    /// The usage of allocation `i` if it ends at `endedAt` (nil if it never started). Its
    /// id (`JOB/RUN/NODE`) is new to the usage meter by construction: job ids are never
    /// reused, a run's allocations are on distinct nodes, and an allocation ends (and is
    /// recorded) once; the simulator's invariant checks (`--faults`, the fuzz) confirm it.
    @inline(__always)
    func usageRecord(_ job: Job, _ i: Int, endedAt: Timestamp) -> UsageRecord? {
        // The fields read in place (a copy of the allocation would retain its lists).
        guard let started = job.allocations[i].startedAt else { return nil }
        let node = job.allocations[i].node
        // `JOB/RUN/NODE`, built in one allocation (an interpolation grows its buffer twice).
        var id = ""
        id.reserveCapacity(job.id.rawValue.utf8.count + node.rawValue.utf8.count + 22)
        id += job.id.rawValue
        id += "/"
        id += String(job.attempt)
        id += "/"
        id += node.rawValue
        // A job of one model ran on nodes of that model (placement checks it, and a busy
        // node's model cannot change): its node is looked up only when it accepts several.
        var model = job.spec.gpuModel
        if !job.spec.alternatives.isEmpty, let record = nodes[node] { model = record.gpuModel }
        assert(model == nodes[node]?.gpuModel ?? job.spec.gpuModel, "usage record's GPU model")
        let r = UsageRecord(
            id: id, job: job.id, org: job.org, project: job.project, node: node,
            gpuModel: model, tier: job.spec.tier, gpus: job.allocations[i].gpus.count,
            startedAt: started, endedAt: max(started, endedAt), gpuShareMilli: job.spec.gpuShareMilli)
        return r
    }

    /// Ends allocation `i` of job `id` at `endedAt` (which `record`, from `usageRecord`,
    /// was made for): counts its usage into `tally` (the caller posts it), frees its GPUs,
    /// stops the rest of a failed gang, and finishes the job when it was the last. The job
    /// is changed in place (a gang's records are not copied for each of its nodes).
    mutating func endAllocation(
        _ id: JobID, _ i: Int, record: UsageRecord?, endedAt: Timestamp, exitCode: Int32?, reason: String?, at: Timestamp,
        tally: inout Billing.Tally
    ) {
        // The job's fields this needs, read in place (a copy of its spec or allocation
        // would retain and release each of their strings and lists, on every node).
        let node: NodeID
        let gpus: [Int]
        let wasEnded: Bool
        let tier: Tier
        let shareMilli: Int?
        let need: NodeResources?
        let k: Int?
        do {
            let job = jobs.all[id]!
            node = job.allocations[i].node
            gpus = job.allocations[i].gpus
            wasEnded = job.allocations[i].isEnded
            tier = job.spec.tier
            shareMilli = job.spec.gpuShareMilli
            need = job.spec.nodeResources
            // The node's place in the counters, looked up once for its region and recount.
            k = counterPosition(node)
            if let record {
                // New by construction (see `usageRecord`).
                usage.add(new: record)
                addToHistory(record)
                // No closure here: one that reads `self` makes the optimizer copy the whole state.
                var region: String?
                if let k { region = counters.siteAt[k]?.region.rawValue } else { region = self.region(ofNode: node) }
                billing.count(usageEvent(record, region: region), now: at, into: &tally)
                // (Checked here too: the allocation is not copied out for no SLA.)
                if !slas.isEmpty { checkSLAs(job, job.allocations[i], record, at: at) }
            }
        }
        // The node tables changed in place at the node's slot, and the GPU table read back
        // for the recount.
        let freed = gpuHolders.modify(node, at: k) { $0?.release(gpus, heldBy: id) } ?? 0
        if let milli = shareMilli, !wasEnded, let g = gpus.first,
            var share = gpuShares[node, at: k]?[g], let j = share.jobs.firstIndex(of: id)
        {
            share.jobs.remove(at: j)
            share.milli -= milli
            gpuShares[node, at: k]![g] = share.jobs.isEmpty ? nil : share
            if gpuShares[node, at: k]!.isEmpty { gpuShares[node, at: k] = nil }
        }
        if let need, !wasEnded, let used = resourcesInUse[node, at: k] {
            let left = used - need
            resourcesInUse[node, at: k] = left.isZero ? nil : left
        }
        recount(
            node, at: k, node: nodes[node, at: k], holders: gpuHolders[node, at: k],
            delta: shareMilli == nil ? (-freed, tier) : nil)
        var last = false
        jobs.update(id) { job in
            job.allocations[i].endedAt = endedAt
            job.allocations[i].exitCode = exitCode
            job.allocations[i].endReason = reason
            let failedHere = exitCode != 0 || reason != nil
            if failedHere, !job.cancelRequested, !job.allocations.contains(where: \.stopRequested) {
                // The first failure: a gang lives and dies together, so stop the other nodes' processes.
                for k in job.allocations.indices where !job.allocations[k].isEnded {
                    job.allocations[k].stopRequested = true
                }
                let what = reason ?? (exitCode.map { "exit code \($0)" } ?? "killed")
                job.reason = "\(what) on \(node)"
            }
            last = job.allocations.allSatisfy(\.isEnded)
        }
        if last {
            if counters.valid { counters.holding.remove(id) }
            var job = jobs.all[id]!
            jobs[id] = nil
            finish(&job, at: at)
            jobs[id] = job
        }
    }

    /// GPU `g`'s bit in a node's set of GPUs (none for an index no node has).
    static func gpuBit(_ g: Int) -> UInt128 { g >= 0 && g < 128 ? 1 << g : 0 }

    /// Where a placement puts a job, for its events: each node with its GPUs
    /// ("node-1[0, 1]"), the first `Limits.nodesNamedPerEvent` of a large gang, then how
    /// many more.
    static func describe(_ nodes: [NodeAssignment]) -> String {
        // Written as bytes into the string's own storage, its room counted first (this runs
        // for every placement; appending to a String a character at a time cost more).
        let named = nodes.prefix(Limits.nodesNamedPerEvent)
        let room = named.reduce(0) { $0 + $1.node.rawValue.utf8.count + 3 + 5 * $1.gpus.count }
        var out = String(unsafeUninitializedCapacity: room) { buffer in
            var at = 0
            func put(_ byte: UInt8) {
                buffer[at] = byte
                at += 1
            }
            for (n, a) in named.enumerated() {
                if n > 0 { put(0x20) }
                for byte in a.node.rawValue.utf8 { put(byte) }
                put(0x5B)
                for (k, g) in a.gpus.enumerated() {
                    if k > 0 {
                        put(0x2C)
                        put(0x20)
                    }
                    // A placed GPU's index is below its node's count (at most
                    // `Limits.maxGPUsPerNode`): three digits are room to spare.
                    let v = min(max(g, 0), 999)
                    if v >= 100 { put(0x30 + UInt8(v / 100)) }
                    if v >= 10 { put(0x30 + UInt8(v / 10 % 10)) }
                    put(0x30 + UInt8(v % 10))
                }
                put(0x5D)
            }
            return at
        }
        if nodes.count > Limits.nodesNamedPerEvent { out += " and \(nodes.count - Limits.nodesNamedPerEvent) more nodes" }
        return out
    }

    /// Decides what a job whose processes have all ended becomes: done, or back in the
    /// queue when its retry policy covers what ended it.
    private mutating func finish(_ job: inout Job, at: Timestamp) {
        let succeeded = job.allocations.allSatisfy { $0.exitCode == 0 && $0.endReason == nil }
        let event: RetryPolicy.Event? =
            job.cancelRequested || succeeded
            ? nil : job.preemptedBy != nil ? .preemption : job.lostNode != nil ? .nodeLost : .error
        let moved = job.movedBy != nil && event != nil
        if let event, moved || job.spec.retry.allows(event, attempt: job.attempt) {
            let why =
                moved
                ? job.movedBy! : event == .preemption ? "preempted by \(job.preemptedBy!)" : job.reason ?? "failed"
            job.attempt += 1
            job.state = .queued
            job.allocations = []
            job.placedAt = nil
            job.startedAt = nil
            job.endedAt = nil
            job.preemptedBy = nil
            job.lostNode = nil
            job.movedBy = nil
            job.reason = "requeued (attempt \(job.attempt + 1)) after: \(why)"
            job.record("requeued", job.reason!, at: at)
            let number = Self.jobNumber(job.id)
            let position = queue.firstIndex { Self.jobNumber($0) > number } ?? queue.count
            queue.insert(job.id, at: position)
            return
        }
        job.endedAt = at
        billing.releaseJob(job.id.rawValue, at: at)
        closeOutages(job.id, reservation: job.spec.reservation, at: at)
        if job.cancelRequested {
            job.state = .cancelled
        } else if job.preemptedBy != nil {
            job.state = .preempted
        } else if succeeded {
            job.state = .succeeded
            job.reason = nil
        } else {
            job.state = .failed
        }
        job.record(job.state.rawValue, job.reason ?? "all processes exited 0", at: at)
    }

    static func jobNumber(_ id: JobID) -> UInt64 { UInt64(id.rawValue.dropFirst(4)) ?? 0 }

    /// Adds a record's GPU time to its org's day (the day it ended) and drops days older
    /// than `Limits.usageHistoryDays`.
    private mutating func addToHistory(_ r: UsageRecord) {
        let day = r.endedAt.milliseconds / 86_400_000
        // One lookup of the org's days, changed in place.
        func add(_ days: inout [Int64: Int64]) {
            let isNewDay = days[day] == nil
            days[day, default: 0] += r.gpuMilliseconds
            // Old days can only fall out when a new one starts.
            if isNewDay { days = days.filter { $0.key > day - Limits.usageHistoryDays } }
        }
        add(&usageByOrgDay[r.org, default: [:]])
    }
}

extension [JobID?] {
    /// A node's GPU table: `job` now holds `gpus` (one lookup of the table for them all).
    mutating func hold(_ gpus: [Int], for job: JobID) {
        for g in gpus { self[g] = job }
    }

    /// Frees those of `gpus` that `job` holds; how many it freed.
    @discardableResult
    mutating func release(_ gpus: [Int], heldBy job: JobID) -> Int {
        var freed = 0
        for g in gpus where g < count && self[g] == job {
            self[g] = nil
            freed += 1
        }
        return freed
    }
}
