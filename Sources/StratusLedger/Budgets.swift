import StratusCore

/// A monthly spending limit for one project, with alerts as spending crosses thresholds.
public struct Budget: Codable, Equatable, Sendable {
    public var org: OrgID
    public var project: String
    public var monthly: Money
    /// Percentages of `monthly` that raise an alert, ascending (default 50, 80, 100).
    public var alertPercents: [Int]
    /// When true, admission refuses work whose projected cost would exceed what is left.
    public var enforce: Bool

    public init(org: OrgID, project: String, monthly: Money, alertPercents: [Int] = [50, 80, 100], enforce: Bool = true) {
        self.org = org
        self.project = project
        self.monthly = monthly
        self.alertPercents = alertPercents
        self.enforce = enforce
    }

    var key: String { Budget.key(org, project) }
    static func key(_ org: OrgID, _ project: String) -> String { "\(org.rawValue)/\(project)" }
}

/// Spending crossed a budget threshold.
public struct BudgetAlert: Codable, Equatable, Sendable {
    public var org: OrgID
    public var project: String
    public var period: Period
    public var percent: Int
    public var spent: Money
    public var budget: Money
    public var at: Timestamp
}

/// What a job's projected cost holds against its org's money until it ends.
struct JobHold: Codable, Equatable, Sendable {
    var hold: UInt64
    var org: OrgID
    var project: String
    var amount: Money
}

extension Billing {
    /// Money `org` may still commit: wallet + credit limit - owed - held. Nil when the org
    /// has no credit limit (postpaid without a cap).
    public func spendable(_ org: OrgID) -> Money? {
        guard let limit = creditLimits[org] else { return nil }
        let owed = ledger.balance(.receivable(org)).micros + ledger.pendingDebits(.receivable(org)).micros
        return Money(micros: ledger.balance(.wallet(org)).micros + limit.micros - owed)
    }

    /// This month's charges of a project plus what its running and queued jobs hold.
    public func budgetSpent(_ org: OrgID, _ project: String, now: Timestamp) -> Money {
        let period = openPeriod(at: now)
        let charged = open[org]?[period]?.total(project: project).micros ?? 0
        let held = jobHolds.values.reduce(0) { $0 + ($1.org == org && $1.project == project ? $1.amount.micros : 0) }
        return Money(micros: charged + held)
    }

    public func budget(_ org: OrgID, _ project: String) -> Budget? { budgets[Budget.key(org, project)] }

    /// Whether money limits apply to work of this org and project at all.
    public func limitsMoney(_ org: OrgID, _ project: String) -> Bool {
        creditLimits[org] != nil || budget(org, project)?.enforce == true
    }

    /// Why `cost` more cannot be committed for the project now, or nil if it can.
    public func moneyProblem(_ org: OrgID, _ project: String, cost: Money, now: Timestamp) -> String? {
        if let left = spendable(org), cost > left {
            return
                "credit: projected cost \(cost) exceeds the \(max(left, .zero)) org \(org) may still spend (credit limit \(creditLimits[org]!), wallet \(ledger.balance(.wallet(org))), owed and held \(Money(micros: ledger.balance(.receivable(org)).micros + ledger.pendingDebits(.receivable(org)).micros)))"
        }
        if let b = budget(org, project), b.enforce {
            let left = Money(micros: b.monthly.micros - budgetSpent(org, project, now: now).micros)
            if cost > left {
                return
                    "budget: projected cost \(cost) exceeds the \(max(left, .zero)) left of project \(project)'s monthly budget of \(b.monthly)"
            }
        }
        return nil
    }

    public func checkCreditLimit(_ limit: Money?) throws(StratusError) {
        if let limit { try limit.checkAmount(field: "credit_limit") }
    }

    public mutating func setCreditLimit(_ org: OrgID, _ limit: Money?) { creditLimits[org] = limit }

    public func checkBudget(_ b: Budget) throws(StratusError) {
        try b.monthly.checkAmount(field: "monthly")
        guard b.alertPercents.count <= 10, b.alertPercents.allSatisfy({ (1...1000).contains($0) }),
            b.alertPercents == b.alertPercents.sorted(), Set(b.alertPercents).count == b.alertPercents.count
        else {
            throw StratusError(.invalidArgument, "alerts: at most 10 ascending percentages between 1 and 1000")
        }
        guard budgets[b.key] != nil || budgets.count < Limits.maxBudgets else {
            throw StratusError(.limitExceeded, "budgets: at most \(Limits.maxBudgets)")
        }
    }

    /// Sets a budget; a zero `monthly` with no alerts removes it.
    public mutating func setBudget(_ b: Budget) {
        budgets[b.key] = b.monthly == .zero && b.alertPercents.isEmpty ? nil : b
    }

    /// Holds a job's projected cost against its org until the job ends.
    public mutating func holdForJob(_ job: String, org: OrgID, project: String, tier: Tier, amount: Money, at: Timestamp) {
        guard amount.micros > 0 else { return }
        do {
            let id = try ledger.hold(debit: .receivable(org), credit: .revenue(tier), amount: amount, at: at, ref: job)
            jobHolds[job] = JobHold(hold: id, org: org, project: project, amount: amount)
        } catch {
            fatalError("ledger overflow holding \(amount) for \(job): \(error)")
        }
    }

    /// Voids a job's hold (its usage is posted as it is metered).
    public mutating func releaseJob(_ job: String, at: Timestamp) {
        guard let h = jobHolds.removeValue(forKey: job) else { return }
        try? ledger.settle(hold: h.hold, amount: .zero, at: at)
        ledger.pruneHolds()
    }

    /// Raises the alerts a project's spending crossed this month.
    mutating func checkBudget(_ org: OrgID, _ project: String, now: Timestamp) {
        guard let b = budgets[Budget.key(org, project)], b.monthly.micros > 0 else { return }
        let period = openPeriod(at: now)
        let spent = open[org]?[period]?.total(project: project) ?? .zero
        let percent = Int(Int128(spent.micros) * 100 / Int128(b.monthly.micros))
        let already = alerted[b.key].flatMap { $0.period == period ? $0.percent : nil } ?? 0
        guard let crossed = b.alertPercents.last(where: { $0 <= percent }), crossed > already else { return }
        alerted[b.key] = AlertMark(period: period, percent: crossed)
        alerts.append(
            BudgetAlert(org: org, project: project, period: period, percent: crossed, spent: spent, budget: b.monthly, at: now))
        if alerts.count > Limits.maxBudgetAlertsKept { alerts.removeFirst(alerts.count - Limits.maxBudgetAlertsKept) }
    }
}

struct AlertMark: Codable, Equatable, Sendable {
    var period: Period
    var percent: Int
}
