import StratusCore
import StratusLedger

extension State {
    // MARK: money

    mutating func setPrices(_ c: SetPrices, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard c.list.count + c.orgPrices.count <= Limits.maxPricesPerCommand else {
            throw StratusError(.limitExceeded, "prices: at most \(Limits.maxPricesPerCommand) in one request")
        }
        guard !c.list.isEmpty || !c.orgPrices.isEmpty else { throw StratusError(.invalidArgument, "prices: none given") }
        var book = billing.prices
        for (i, p) in c.list.enumerated() {
            do throws(StratusError) {
                try book.check(p.sku, p.point)
            } catch {
                throw StratusError(error.code, "prices[\(i)]: \(error.message)")
            }
            book.set(p.sku, p.point)
        }
        for (i, o) in c.orgPrices.enumerated() {
            guard orgs[o.org] != nil else { throw StratusError.notFound("org", o.org.rawValue) }
            do throws(StratusError) {
                try book.check(o)
            } catch {
                throw StratusError(error.code, "org_prices[\(i)]: \(error.message)")
            }
            book.set(o)
        }
        guard commit else { return .applied("\(c.list.count + c.orgPrices.count) prices") }
        billing.prices = book
        return .applied("\(c.list.count + c.orgPrices.count) prices")
    }

    /// Counts a batch of usage events. All-or-nothing: one bad event refuses the batch;
    /// a batch of events all seen before changes nothing.
    mutating func recordUsage(_ c: RecordUsage, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard !c.events.isEmpty else { throw StratusError(.invalidArgument, "events: none given") }
        var last: (org: OrgID, project: String)?
        for (i, e) in c.events.enumerated() where !commit {
            if let last, last.org == e.org, last.project == e.project { continue }
            last = (e.org, e.project)
            guard orgs[e.org] != nil else {
                throw StratusError(.notFound, "events[\(i)] (id '\(e.id)'): org '\(e.org)' not found")
            }
            guard project(org: e.org, name: e.project) != nil else {
                throw StratusError(.notFound, "events[\(i)] (id '\(e.id)'): project '\(e.org)/\(e.project)' not found")
            }
        }
        // `ingest` checks the whole batch before it counts anything, so one call is both
        // the guard and the mutation. A batch of events all seen before is not logged.
        // A logged batch passed these checks when it was logged (and the engine has just
        // run them in its dry run), so applying it only counts: ids seen before are skipped.
        let counted =
            commit
            ? billing.record(c.events, now: at) : try billing.check(c.events, now: at).filter { $0 == .counted }.count
        let summary = "\(counted) counted, \(c.events.count - counted) duplicate"
        return counted > 0 ? .applied(summary) : .unchanged(summary)
    }

    mutating func closePeriod(_ c: ClosePeriod, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        if billing.isClosed(c.period) { return .unchanged(c.period.description) }
        if let problem = billing.closeProblem(c.period, now: at) { throw problem }
        guard commit else { return .applied(c.period.description) }
        checkReservedAvailability(c.period, at: at)
        billing.close(c.period, now: at)
        return .applied(c.period.description)
    }

    /// An org that exists and is billed (the internal org is not).
    func requireBilledOrg(_ org: OrgID) throws(StratusError) {
        guard orgs[org] != nil else { throw StratusError.notFound("org", org.rawValue) }
        guard org != InternalOrg.id else { throw StratusError(.invalidArgument, "org: the internal org is not billed") }
    }

    mutating func deposit(_ c: Deposit, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        try requireBilledOrg(c.org)
        try billing.checkDeposit(c.amount, currency: c.currency)
        guard c.reference.utf8.count <= Limits.maxUsageIDBytes else {
            throw StratusError(.invalidArgument, "reference: longer than \(Limits.maxUsageIDBytes) bytes")
        }
        guard commit else { return .applied(c.org.rawValue) }
        try billing.deposit(org: c.org, c.amount, at: at, ref: c.reference)
        return .applied(c.org.rawValue)
    }

    mutating func grantCredit(_ c: GrantCredit, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        try requireBilledOrg(c.org)
        try c.amount.checkAmount(field: "amount")
        guard c.amount.micros > 0 else { throw StratusError(.invalidArgument, "amount: must be positive") }
        guard !c.description.isEmpty, c.description.utf8.count <= 200 else {
            throw StratusError(.invalidArgument, "description: 1 to 200 bytes")
        }
        let id = "credit-\(nextCredit)"
        guard commit else { return .applied(id) }
        try billing.grant(org: c.org, Credit(id: id, kind: .grant, description: c.description, amount: c.amount), at: at)
        nextCredit += 1
        return .applied(id)
    }

    /// The usage event for an allocation that ended: the control plane's own meter.
    func usageEvent(_ r: UsageRecord) -> UsageEvent { usageEvent(r, region: region(ofNode: r.node)) }

    /// `usageEvent` for a record whose node's region the caller looked up.
    func usageEvent(_ r: UsageRecord, region: String?) -> UsageEvent {
        let region = region ?? SKU.anyRegion
        var event = UsageEvent(
            source: UsageEvent.allocationSource, id: r.id, org: r.org, project: projects[r.project]?.name ?? "",
            gpuModel: r.gpuModel, region: region, tier: r.tier, gpus: r.gpus, start: r.startedAt, end: r.endedAt,
            subject: r.job.rawValue)
        event.gpuShareMilli = r.gpuShareMilli
        return event
    }

    mutating func setCreditLimit(_ c: SetCreditLimit, commit: Bool) throws(StratusError) -> Outcome {
        try requireBilledOrg(c.org)
        try billing.checkCreditLimit(c.limit)
        if billing.creditLimits[c.org] == c.limit { return .unchanged(c.org.rawValue) }
        guard commit else { return .applied(c.org.rawValue) }
        billing.setCreditLimit(c.org, c.limit)
        return .applied(c.org.rawValue)
    }

    mutating func setBudget(_ b: Budget, commit: Bool) throws(StratusError) -> Outcome {
        guard orgs[b.org] != nil else { throw StratusError.notFound("org", b.org.rawValue) }
        guard project(org: b.org, name: b.project) != nil else {
            throw StratusError.notFound("project", "\(b.org)/\(b.project)")
        }
        try billing.checkBudget(b)
        guard commit else { return .applied("\(b.org)/\(b.project)") }
        billing.setBudget(b)
        return .applied("\(b.org)/\(b.project)")
    }

    /// The most `org` would pay per GPU-hour of `tier` for `spec` now: the highest price
    /// among the regions it may run in (where it lands is decided later).
    public func priceBound(_ spec: JobSpec, org: OrgID, tier: Tier, at: Timestamp) -> Money? {
        var names = regions.keys.map(\.rawValue).filter { spec.placement.regions.isEmpty || spec.placement.regions.contains($0) }
        if names.isEmpty { names = [SKU.anyRegion] }
        return spec.acceptable.flatMap { choice in
            names.compactMap { billing.prices.price(org: org, SKU(gpuModel: choice.model, region: $0, tier: tier), at: at) }
        }.max()
    }

    /// The projected cost of `spec` in `tier`: GPUs x max_duration x the price bound.
    public func projectedCost(_ spec: JobSpec, org: OrgID, tier: Tier, at: Timestamp) -> Money? {
        guard let seconds = spec.maxDurationSeconds, let price = priceBound(spec, org: org, tier: tier, at: at) else {
            return nil
        }
        let gpus = spec.acceptable.map { Int64($0.count) }.max()! * Int64(spec.numNodes)
        let gpuSeconds = spec.gpuShareMilli.map { gpus * seconds * Int64($0) / 1000 } ?? gpus * seconds
        return Money.charge(gpuSeconds: gpuSeconds, pricePerGPUHour: price)
    }

    /// Why `spec` would be refused for money when submitted now, or nil.
    public func moneyRefusal(_ spec: JobSpec, org: OrgID, at: Timestamp) -> String? {
        do {
            _ = try admitMoney(spec, org: org, project: spec.project ?? InternalOrg.defaultProject, at: at)
            return nil
        } catch {
            return error.message
        }
    }

    /// Admission by money: the spec to run (on-demand may fall back to spot), the amount
    /// to hold for it, and a note for its events; throws when the org or project may not
    /// spend its projected cost.
    func admitMoney(_ spec: JobSpec, org: OrgID, project: String, at: Timestamp) throws(StratusError) -> (
        JobSpec, Money?, String?
    ) {
        guard org != InternalOrg.id, spec.tier != .internal, spec.tier != .reserved,
            billing.limitsMoney(org, project)
        else { return (spec, nil, nil) }
        guard spec.maxDurationSeconds != nil else {
            throw StratusError(
                .failedPrecondition,
                "max_duration: required, because \(billing.creditLimits[org] != nil ? "org \(org) has a credit limit" : "project \(project) has a budget") (the projected cost is GPUs x max_duration x price)"
            )
        }
        guard let cost = projectedCost(spec, org: org, tier: spec.tier, at: at) else {
            throw StratusError(
                .failedPrecondition, "no price for \(spec.gpuModel) \(spec.tier.rawValue): the job cannot be costed")
        }
        guard let problem = billing.moneyProblem(org, project, cost: cost, now: at) else { return (spec, cost, nil) }
        let spot = projectedCost(spec, org: org, tier: .spot, at: at)
        if spec.budgetFallback == .spot, tiers.contains(.spot), let spot,
            billing.moneyProblem(org, project, cost: spot, now: at) == nil
        {
            var fallback = spec
            fallback.tier = .spot
            fallback.retry = RetryPolicy.default(for: .spot)
            return (fallback, spot, "runs as spot: \(problem)")
        }
        let offer =
            spot.map { s in
                billing.moneyProblem(org, project, cost: s, now: at) == nil
                    ? "; as spot it would cost at most \(s) (tier: spot, or on_budget: spot to fall back)" : ""
            } ?? ""
        throw StratusError(.failedPrecondition, problem + offer)
    }

    // MARK: spot market

    mutating func setSpotPrices(_ c: SetSpotPrices, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard !c.prices.isEmpty, c.prices.count <= Limits.maxPricesPerCommand else {
            throw StratusError(.invalidArgument, "prices: 1 to \(Limits.maxPricesPerCommand)")
        }
        guard c.noticeSeconds >= 0, c.noticeSeconds <= 86400 else {
            throw StratusError(.invalidArgument, "notice: 0 to 86400 seconds")
        }
        for p in c.prices {
            guard p.sku.tier == .spot, p.sku.region != SKU.anyRegion else {
                throw StratusError(.invalidArgument, "prices: spot prices are per model and region")
            }
        }
        // Each SKU once is checked against the book as it is; repeats against a copy with
        // the earlier points applied (the copy costs as much as the history).
        if Set(c.prices.map(\.sku)).count == c.prices.count {
            for p in c.prices { try billing.prices.check(p.sku, p.point) }
        } else {
            var book = billing.prices
            for p in c.prices {
                try book.check(p.sku, p.point)
                book.set(p.sku, p.point)
            }
        }
        guard commit else { return .applied("\(c.prices.count) spot prices") }
        for p in c.prices { billing.prices.set(p.sku, p.point) }
        // Running spot work bidding less than its region's new price gets its notice: the
        // spot jobs holding GPUs with a max price (kept as jobs change), not every job.
        let changed = Dictionary(
            c.prices.map { ("\($0.sku.gpuModel)@\($0.sku.region)", $0.point.price) }, uniquingKeysWith: { $1 })
        for id in currentCounters.bidders.sorted() {
            guard var job = jobs[id], job.spec.tier == .spot, let bid = job.spec.maxPrice,
                job.state == .starting || job.state == .running,
                !job.cancelRequested, job.preemptedBy == nil
            else { continue }
            let live = job.allocations.filter { !$0.isEnded }
            guard let node = live.first.flatMap({ nodes[$0.node] }), let region = site(of: node)?.region.rawValue,
                let price = changed["\(node.gpuModel)@\(region)"], price > bid
            else { continue }
            let deadline = at.adding(seconds: c.noticeSeconds)
            job.preemptedBy = Self.spotMarket
            for i in job.allocations.indices where !job.allocations[i].isEnded {
                job.allocations[i].stopRequested = true
                job.allocations[i].stopDeadline = deadline
                job.allocations[i].noticeAt = at
            }
            job.reason = "preempted: spot price \(price) in \(region) is above max_price \(bid)"
            job.record("preemption_notice", "\(job.reason!); killed at \(deadline) if still running", at: at)
            jobs[id] = job
        }
        return .applied("\(c.prices.count) spot prices")
    }

    /// Who preempts spot work whose bid the price passed.
    public static let spotMarket = JobID("spot-market")

    /// Per spot SKU (model x region of the fleet): GPUs in service and GPUs spoken for by
    /// internal, reserved and on-demand work plus the unused part of the internal reserve.
    public func spotSupply(at now: Timestamp) -> [SKU: SpotMarket.Supply] {
        let c = currentCounters
        var out = c.supply.filter { $0.value.gpus > 0 }
        let internalUsed = c.internalUsed
        // The internal reserve not yet used, spread over the model's regions by size.
        for r in reserves.values {
            let unused = max(0, r.gpus(at: now) - (internalUsed[r.gpuModel] ?? 0))
            guard unused > 0 else { continue }
            let skus = out.keys.filter { sku in
                sku.gpuModel == r.gpuModel
                    && (r.site == nil || sites[SiteID(r.site!)]?.region.rawValue == sku.region)
            }.sorted()
            let total = skus.reduce(0) { $0 + out[$1]!.gpus }
            guard total > 0 else { continue }
            for sku in skus { out[sku]!.committed += unused * out[sku]!.gpus / total }
        }
        return out
    }

    /// The spot prices the market would set now (only those that moved by a cent or more).
    public func spotPriceUpdates(_ market: SpotMarket, at now: Timestamp) -> [ListPrice] {
        let from = Timestamp(seconds: now.milliseconds / 1000)
        return spotSupply(at: now).sorted { $0.key < $1.key }.compactMap { sku, supply in
            let onDemand = SKU(gpuModel: sku.gpuModel, region: sku.region, tier: .onDemand)
            guard let list = billing.prices.listPoint(onDemand, at: now)?.price else { return nil }
            let current = billing.prices.listPoint(sku, at: now)?.price
            let next = market.next(current: current, onDemand: list, supply)
            guard next != current, billing.prices.list[sku]?.last.map({ $0.from < from }) ?? true else { return nil }
            return ListPrice(sku: sku, point: PricePoint(from: from, price: next))
        }
    }

    /// Regions where a spot bid of `maxPrice` is at least the current spot price of `model`.
    func regionsWithin(maxPrice: Money, model: String, org: OrgID, allowed: [String]) -> [String] {
        let latest = Timestamp(milliseconds: .max)
        return regions.keys.map(\.rawValue).sorted().filter { region in
            guard allowed.isEmpty || allowed.contains(region) else { return false }
            guard let price = billing.prices.price(org: org, SKU(gpuModel: model, region: region, tier: .spot), at: latest)
            else { return false }
            return price <= maxPrice
        }
    }

    /// The region list that keeps a spot bid out of regions priced above it; a name no
    /// region has when none qualifies, so the job waits.
    static let noRegionWithinBid = "(no region within max_price)"

    mutating func createCommitment(_ c: CreateCommitment, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        try requireBilledOrg(c.org)
        let id = "commit-\(nextCommitment)"
        let commitment = Commitment(
            id: id, org: c.org, amount: c.amount, start: c.start, months: c.months, discountBasisPoints: c.discountBasisPoints,
            createdAt: at)
        try billing.checkCommitment(commitment, now: at)
        guard commit else { return .applied(id) }
        nextCommitment += 1
        billing.addCommitment(commitment)
        return .applied(id)
    }

    // MARK: SLAs

    mutating func createSLA(_ c: CreateSLA, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        if let org = c.org {
            guard orgs[org] != nil else { throw StratusError.notFound("org", org.rawValue) }
        }
        guard (1...100).contains(c.creditPercent) else { throw StratusError(.invalidArgument, "credit: 1% to 100%") }
        switch c.objective {
        case .onDemandStartSeconds(let s), .spotNoticeSeconds(let s):
            guard s >= 0, s <= 30 * 86400 else { throw StratusError(.invalidArgument, "seconds: 0 to 30 days") }
        case .reservedAvailabilityPermille(let p):
            guard p >= 500, p <= 1000 else { throw StratusError(.invalidArgument, "target: between 50% and 100%") }
        }
        guard slas.count < Limits.maxSLAs else { throw StratusError(.limitExceeded, "slas: at most \(Limits.maxSLAs)") }
        let id = "sla-\(slas.count + 1)"
        guard commit else { return .applied(id) }
        slas.append(SLA(id: id, org: c.org, objective: c.objective, creditPercent: c.creditPercent, createdAt: at))
        return .applied(id)
    }

    /// Checks an allocation that just ended against the SLAs that cover its org; a breach
    /// credits the org `creditPercent` of what the allocation was charged.
    mutating func checkSLAs(_ job: Job, _ alloc: Allocation, _ record: UsageRecord, at: Timestamp) {
        guard !slas.isEmpty, job.org != InternalOrg.id, let started = alloc.startedAt else { return }
        for sla in slas where sla.org == nil || sla.org == job.org {
            var breach: String?
            switch sla.objective {
            case .onDemandStartSeconds(let limit):
                let waited = job.submittedAt.milliseconds(until: started) / 1000
                if job.spec.tier == .onDemand, job.attempt == 0, waited > limit {
                    breach = "\(job.id) started \(waited) s after submission (SLA: \(limit) s)"
                }
            case .reservedAvailabilityPermille:
                continue  // checked per month at close
            case .spotNoticeSeconds(let minimum):
                if job.spec.tier == .spot, job.preemptedBy != nil, let noticeAt = alloc.noticeAt {
                    let given = noticeAt.milliseconds(until: min(at, alloc.stopDeadline ?? at)) / 1000
                    let exitedEarly = alloc.stopDeadline.map { at < $0 } ?? false
                    if !exitedEarly, given < minimum {
                        breach =
                            "\(job.id) on \(alloc.node) was stopped \(given) s after its preemption notice (SLA: \(minimum) s)"
                    }
                }
            }
            guard let breach else { continue }
            let event = usageEvent(record)
            let sku = SKU(gpuModel: event.gpuModel, region: event.region, tier: event.tier)
            let price = billing.prices.price(org: job.org, sku, at: record.startedAt) ?? .zero
            let charged = Money.charge(
                gpuSeconds: Int64(record.gpus) * (event.endSecond - event.startSecond), pricePerGPUHour: price)
            let amount = Money(
                micros: charged.micros * Int64(sla.creditPercent) / 100 / Money.microsPerCent * Money.microsPerCent)
            guard amount.micros > 0 else { continue }
            let credit = Credit(
                id: "\(sla.id)/\(record.id)", kind: .sla,
                description: "SLA \(sla.id): \(breach); \(sla.creditPercent)% of \(charged)", amount: amount)
            try? billing.grant(org: job.org, credit, at: at)
        }
    }

    /// At a month's close: each capacity block that was not delivered as its SLA
    /// promises (reserved GPU-seconds in the month, less those its work lost to node
    /// failures until it ran again) credits the SLA's share of what the month of the
    /// block cost.
    mutating func checkReservedAvailability(_ period: Period, at: Timestamp) {
        let targets = slas.compactMap { sla -> (SLA, Int64)? in
            if case .reservedAvailabilityPermille(let p) = sla.objective { return (sla, p) }
            return nil
        }
        guard !targets.isEmpty else { return }
        for r in reservations.values.sorted(by: { $0.id < $1.id }) where r.org != InternalOrg.id {
            let from = max(r.start, period.start)
            let to = min(r.cancelledAt ?? r.end, r.end, period.end)
            guard from < to else { continue }
            let reserved = Int64(r.gpus) * (from.milliseconds(until: to) / 1000)
            var lost: Int64 = 0
            for o in reservationOutages[r.id] ?? [] {
                let a = max(o.from, from)
                let b = min(o.to ?? at, to)
                if a < b { lost += Int64(o.gpus) * (a.milliseconds(until: b) / 1000) }
            }
            lost = min(lost, reserved)
            guard reserved > 0 else { continue }
            let deliveredBasisPoints = (reserved - lost) * 10_000 / reserved
            for (sla, target) in targets where sla.org == nil || sla.org == r.org {
                guard (reserved - lost) * 1000 < target * reserved else { continue }
                let region = r.site.flatMap { sites[$0]?.region.rawValue } ?? SKU.anyRegion
                let price =
                    billing.prices.price(org: r.org, SKU(gpuModel: r.gpuModel, region: region, tier: .reserved), at: r.start)
                    ?? .zero
                let charged = Money.charge(gpuSeconds: reserved, pricePerGPUHour: price)
                let amount = Money(
                    micros: charged.micros * Int64(sla.creditPercent) / 100 / Money.microsPerCent * Money.microsPerCent)
                guard amount.micros > 0 else { continue }
                let hundredths = deliveredBasisPoints % 100
                let delivered = "\(deliveredBasisPoints / 100).\(hundredths < 10 ? "0" : "")\(hundredths)%"
                let credit = Credit(
                    id: "\(sla.id)/\(r.id)/\(period)", kind: .sla,
                    description:
                        "SLA \(sla.id): \(r.id) delivered \(delivered) of its \(reserved / 3600) reserved GPU-hours in \(period) (SLA: \(SLAObjective.percent(target))); \(sla.creditPercent)% of \(charged)",
                    amount: amount)
                try? billing.grant(org: r.org, credit, at: at)
            }
        }
        // Outages of blocks that have ended and been checked are no longer needed.
        reservationOutages = reservationOutages.filter { id, _ in
            guard let r = reservations[id] else { return false }
            return min(r.cancelledAt ?? r.end, r.end) > period.end
        }
    }

    /// Work of a capacity block interrupted by a lost node: not delivered from the loss.
    mutating func openOutage(_ job: Job, gpus: Int, from: Timestamp) {
        guard let r = job.spec.reservation else { return }
        reservationOutages[r, default: []].append(Outage(job: job.id, gpus: gpus, from: from))
    }

    /// The interrupted work runs again (or ended): delivery resumes at `at`.
    mutating func closeOutages(_ job: JobID, reservation: ReservationID?, at: Timestamp) {
        guard let r = reservation, var list = reservationOutages[r] else { return }
        for i in list.indices where list[i].job == job && list[i].to == nil { list[i].to = max(list[i].from, at) }
        reservationOutages[r] = list
    }

    // MARK: capacity blocks

    /// A capacity block is paid up front, when it is accepted, at the reserved price in
    /// force at its start (the region's, when it is bound to a site): GPUs x its length.
    /// Its jobs' usage is then rated at zero. Refused when the org or project may not
    /// spend that much; nil for the internal org or when nothing prices it.
    func blockCharge(
        org: OrgID, project: String, model: String, gpus: Int, site: SiteID?, start: Timestamp, end: Timestamp,
        at: Timestamp
    ) throws(StratusError) -> (amount: Money, price: Money, gpuSeconds: Int64)? {
        guard org != InternalOrg.id else { return nil }
        let region = site.flatMap { sites[$0]?.region.rawValue } ?? SKU.anyRegion
        guard let price = billing.prices.price(org: org, SKU(gpuModel: model, region: region, tier: .reserved), at: start)
        else { return nil }
        let gpuSeconds = Int64(gpus) * ((start.milliseconds(until: end) + 999) / 1000)
        let amount = Money.charge(gpuSeconds: gpuSeconds, pricePerGPUHour: price)
        if billing.limitsMoney(org, project), let problem = billing.moneyProblem(org, project, cost: amount, now: at) {
            throw StratusError(.failedPrecondition, problem)
        }
        return (amount, price, gpuSeconds)
    }

    // MARK: capacity bought from others

    mutating func recordProviderCost(_ c: ProviderCost, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        try Name.validate(c.provider, field: "provider")
        try billing.checkDeposit(c.amount, currency: c.currency)
        guard c.reference.utf8.count <= Limits.maxUsageIDBytes else {
            throw StratusError(.invalidArgument, "reference: longer than \(Limits.maxUsageIDBytes) bytes")
        }
        if c.kind == .payment {
            let owed = billing.ledger.balance(.payable(c.provider))
            guard c.amount <= owed else {
                throw StratusError(.failedPrecondition, "amount: \(c.amount) is more than the \(owed) owed to \(c.provider)")
            }
        }
        guard commit else { return .applied(c.provider) }
        try billing.providerCost(c.provider, payment: c.kind == .payment, c.amount, at: at, ref: c.reference)
        return .applied(c.provider)
    }
}
