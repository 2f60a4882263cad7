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
        for (i, e) in c.events.enumerated() {
            guard orgs[e.org] != nil else {
                throw StratusError(.notFound, "events[\(i)] (id '\(e.id)'): org '\(e.org)' not found")
            }
            guard project(org: e.org, name: e.project) != nil else {
                throw StratusError(.notFound, "events[\(i)] (id '\(e.id)'): project '\(e.org)/\(e.project)' not found")
            }
        }
        // `ingest` checks the whole batch before it counts anything, so one call is both
        // the guard and the mutation. A batch of events all seen before is not logged.
        let outcomes = try billing.ingest(c.events, now: at, commit: commit)
        let counted = outcomes.filter { $0 == .counted }.count
        let summary = "\(counted) counted, \(outcomes.count - counted) duplicate"
        return counted > 0 ? .applied(summary) : .unchanged(summary)
    }

    mutating func closePeriod(_ c: ClosePeriod, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        if billing.isClosed(c.period) { return .unchanged(c.period.description) }
        if let problem = billing.closeProblem(c.period, now: at) { throw problem }
        guard commit else { return .applied(c.period.description) }
        billing.close(c.period, now: at)
        return .applied(c.period.description)
    }

    mutating func deposit(_ c: Deposit, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard orgs[c.org] != nil else { throw StratusError.notFound("org", c.org.rawValue) }
        guard c.org != InternalOrg.id else { throw StratusError(.invalidArgument, "org: the internal org is not billed") }
        try billing.checkDeposit(c.amount, currency: c.currency)
        guard c.reference.utf8.count <= Limits.maxUsageIDBytes else {
            throw StratusError(.invalidArgument, "reference: longer than \(Limits.maxUsageIDBytes) bytes")
        }
        guard commit else { return .applied(c.org.rawValue) }
        try billing.deposit(org: c.org, c.amount, at: at, ref: c.reference)
        return .applied(c.org.rawValue)
    }

    mutating func grantCredit(_ c: GrantCredit, at: Timestamp, commit: Bool) throws(StratusError) -> Outcome {
        guard orgs[c.org] != nil else { throw StratusError.notFound("org", c.org.rawValue) }
        guard c.org != InternalOrg.id else { throw StratusError(.invalidArgument, "org: the internal org is not billed") }
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
    func usageEvent(_ r: UsageRecord) -> UsageEvent {
        let region = nodes[r.node].flatMap { site(of: $0)?.region.rawValue } ?? SKU.anyRegion
        return UsageEvent(
            source: UsageEvent.allocationSource, id: r.id, org: r.org, project: projects[r.project]?.name ?? "",
            gpuModel: r.gpuModel, region: region, tier: r.tier, gpus: r.gpus, start: r.startedAt, end: r.endedAt,
            subject: r.job.rawValue)
    }
}
