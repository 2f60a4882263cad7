import StratusCore

/// A tenant's promise to spend `amount` over `months` months from `start`, for a
/// discount on on-demand and reserved prices during the term. All its charges in the
/// term draw it down; when the last month closes, any shortfall is invoiced (true-up).
public struct Commitment: Codable, Equatable, Sendable {
    public var id: String
    public var org: OrgID
    public var amount: Money
    public var start: Period
    public var months: Int
    public var discountBasisPoints: Int
    public var createdAt: Timestamp
    /// Charges in the term so far.
    public internal(set) var drawn = Money.zero
    /// Set when the term's last month closed: the shortfall invoiced (possibly zero).
    public internal(set) var trueUp: Money?

    public init(id: String, org: OrgID, amount: Money, start: Period, months: Int, discountBasisPoints: Int, createdAt: Timestamp)
    {
        self.id = id
        self.org = org
        self.amount = amount
        self.start = start
        self.months = months
        self.discountBasisPoints = discountBasisPoints
        self.createdAt = createdAt
    }

    public var end: Period { Period(index: start.index + Int64(months)) }
    public func covers(_ p: Period) -> Bool { p >= start && p < end }

    /// Spend by the end of the term at the pace so far (drawn / elapsed x term), or nil
    /// before the term starts.
    public func projected(at now: Timestamp) -> Money? {
        let from = start.start.milliseconds
        let to = end.start.milliseconds
        let elapsed = min(now.milliseconds, to) - from
        guard elapsed > 0 else { return nil }
        return Money(micros: Int64(Int128(drawn.micros) * Int128(to - from) / Int128(elapsed)))
    }
}

/// A charge that is not usage: a capacity block paid up front, a commitment's true-up.
public struct Fee: Codable, Equatable, Sendable {
    public var id: String
    public var description: String
    public var amount: Money
    /// The project it is for, when it is one's (a capacity block); counts toward its budget.
    public var project: String?
    public init(id: String, description: String, amount: Money, project: String? = nil) {
        self.id = id
        self.description = description
        self.amount = amount
        self.project = project
    }
}

extension Billing {
    public func checkCommitment(_ c: Commitment, now: Timestamp) throws(StratusError) {
        try c.amount.checkAmount(field: "amount")
        guard c.amount.micros > 0 else { throw StratusError(.invalidArgument, "amount: must be positive") }
        guard (1...120).contains(c.months) else { throw StratusError(.invalidArgument, "months: 1 to 120") }
        guard (0...9000).contains(c.discountBasisPoints) else {
            throw StratusError(.invalidArgument, "discount: 0% to 90%")
        }
        guard c.start >= Period(containing: now), !isClosed(c.start) else {
            throw StratusError(.invalidArgument, "start: a commitment starts this month or later, not \(c.start)")
        }
        let active = commitments.values.filter { $0.org == c.org && $0.trueUp == nil }
        guard active.count < Limits.maxCommitmentsPerOrg else {
            throw StratusError(.limitExceeded, "commitments: org \(c.org) already has \(Limits.maxCommitmentsPerOrg)")
        }
        guard !active.contains(where: { $0.start < c.end && c.start < $0.end }) else {
            throw StratusError(
                .failedPrecondition, "start: org \(c.org) already has a commitment overlapping \(c.start)-\(c.end.previous)")
        }
    }

    public mutating func addCommitment(_ c: Commitment) { commitments[c.id] = c }

    /// The commitment of `org` covering `period`, if any.
    func commitment(_ org: OrgID, _ period: Period) -> String? {
        guard !commitments.isEmpty else { return nil }
        return commitments.values.first { $0.org == org && $0.covers(period) }?.id
    }

    /// A price after the discount of the commitment covering `period` (on-demand and reserved).
    func committedPrice(_ price: Money, org: OrgID, tier: Tier, period: Period) -> Money {
        guard tier == .onDemand || tier == .reserved, let id = commitment(org, period) else { return price }
        let d = commitments[id]!.discountBasisPoints
        return Money(micros: Int64(Int128(price.micros) * Int128(10_000 - d) / 10_000))
    }

    mutating func drawDown(_ org: OrgID, _ period: Period, _ amount: Money) {
        guard amount.micros > 0, let id = commitment(org, period) else { return }
        commitments[id]!.drawn.micros += amount.micros
    }

    /// At the close of a commitment's last month: invoice the shortfall on that month.
    mutating func trueUp(closing period: Period, now: Timestamp) {
        for id in commitments.keys.sorted() {
            let c = commitments[id]!
            guard c.trueUp == nil, c.end.previous <= period else { continue }
            let shortfall = Money(micros: max(0, c.amount.micros - c.drawn.micros))
            commitments[id]!.trueUp = shortfall
            guard shortfall.micros > 0 else { continue }
            do {
                try ledger.post(
                    debit: .receivable(c.org), credit: .commitmentRevenue, amount: shortfall, at: now, code: .trueUp, ref: c.id)
            } catch {
                fatalError("ledger overflow on true-up \(c.id): \(error)")
            }
            let month = c.end.previous
            open[c.org, default: [:]][month, default: PeriodCharges()].fees.append(
                Fee(
                    id: "true-up-\(c.id)", description: "Commitment \(c.id) true-up: committed \(c.amount), used \(c.drawn)",
                    amount: shortfall))
        }
    }
}

extension Billing {
    /// Charges a capacity block up front: receivable -> reserved revenue, a fee on the
    /// current invoice that counts toward the project's budget and the org's commitment.
    public mutating func chargeUpFront(org: OrgID, _ fee: Fee, project: String, at: Timestamp) {
        guard fee.amount.micros > 0 else { return }
        var fee = fee
        fee.project = project
        do {
            try ledger.post(
                debit: .receivable(org), credit: .revenue(.reserved), amount: fee.amount, at: at, code: .reservation,
                ref: fee.id)
        } catch {
            fatalError("ledger overflow charging \(fee.id): \(error)")
        }
        let period = openPeriod(at: at)
        open[org, default: [:]][period, default: PeriodCharges()].fees.append(fee)
        drawDown(org, period, fee.amount)
        if !budgets.isEmpty { checkBudget(org, project, now: at) }
    }
}

extension Billing {
    /// Capacity bought from `provider`: its invoice (cost -> payable) or our payment of it
    /// (payable -> cash).
    public mutating func providerCost(_ provider: String, payment: Bool, _ amount: Money, at: Timestamp, ref: String)
        throws(StratusError)
    {
        if payment {
            try ledger.post(debit: .payable(provider), credit: .cash, amount: amount, at: at, code: .payment, ref: ref)
        } else {
            try ledger.post(
                debit: .cost(provider), credit: .payable(provider), amount: amount, at: at, code: .providerCost, ref: ref)
        }
    }
}
