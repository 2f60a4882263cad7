import StratusCore

/// A month's bill for one org: usage lines, adjustments for earlier months, credits and
/// the total, all exact. Issued when the month is closed; never changed afterwards.
public struct Invoice: Codable, Equatable, Sendable {
    public struct Line: Codable, Equatable, Sendable {
        public enum Kind: String, Codable, Sendable { case usage, adjustment }
        public var kind: Kind
        /// For an adjustment: the month the late usage belongs to.
        public var forPeriod: Period?
        public var project: String
        public var gpuModel: String
        public var region: String
        public var tier: Tier
        public var gpuSeconds: Int64
        public var unitPrice: Money
        public var listPrice: Money
        public var amount: Money
    }

    public var id: String
    public var org: OrgID
    public var period: Period
    public var currency: Currency
    public var issuedAt: Timestamp
    public var lines: [Line]
    public var credits: [Credit]
    /// Charges that are not usage: commitment true-ups.
    public var fees: [Fee]
    public var usageTotal: Money
    public var adjustmentsTotal: Money
    public var creditsTotal: Money
    public var feesTotal: Money
    /// usage + adjustments + fees - credits.
    public var total: Money
    /// Taken from the org's prepaid wallet when the invoice was issued.
    public var paidFromWallet: Money
    public var amountDue: Money

    public static func id(org: OrgID, period: Period) -> String { "inv-\(period)-\(org.rawValue)" }

    /// Builds the invoice from a month's charges; lines sorted, totals exact.
    public static func build(
        org: OrgID, period: Period, charges: PeriodCharges, currency: Currency, issuedAt: Timestamp
    ) -> Invoice {
        let usage = charges.lines.sorted { $0.key < $1.key }.map { k, t in
            Line(
                kind: .usage, forPeriod: nil, project: k.project, gpuModel: k.gpuModel, region: k.region, tier: k.tier,
                gpuSeconds: t.gpuSeconds, unitPrice: k.unitPrice, listPrice: k.listPrice, amount: t.amount)
        }
        let adjustments = charges.adjustments.sorted { $0.key < $1.key }.map { k, t in
            Line(
                kind: .adjustment, forPeriod: k.forPeriod, project: k.line.project, gpuModel: k.line.gpuModel,
                region: k.line.region, tier: k.line.tier, gpuSeconds: t.gpuSeconds, unitPrice: k.line.unitPrice,
                listPrice: k.line.listPrice, amount: t.amount)
        }
        let u = usage.reduce(0) { $0 + $1.amount.micros }
        let a = adjustments.reduce(0) { $0 + $1.amount.micros }
        let c = charges.credits.reduce(0) { $0 + $1.amount.micros }
        let f = charges.fees.reduce(0) { $0 + $1.amount.micros }
        return Invoice(
            id: id(org: org, period: period), org: org, period: period, currency: currency, issuedAt: issuedAt,
            lines: usage + adjustments, credits: charges.credits, fees: charges.fees, usageTotal: Money(micros: u),
            adjustmentsTotal: Money(micros: a), creditsTotal: Money(micros: c), feesTotal: Money(micros: f),
            total: Money(micros: u + a + f - c), paidFromWallet: .zero, amountDue: Money(micros: u + a + f - c))
    }

    /// GPU-hours with four decimals, for people (the exact figure is `gpuSeconds`).
    public static func gpuHours(_ gpuSeconds: Int64) -> String {
        let tenThousandths = (gpuSeconds * 10_000 + 1800) / 3600
        return DecimalText.format(tenThousandths, scale: 10_000)
    }
}

extension Billing {
    /// Why `period` cannot be closed now, or nil when it can.
    public func closeProblem(_ period: Period, now: Timestamp) -> StratusError? {
        guard period.end <= now else {
            return StratusError(.failedPrecondition, "period \(period) has not ended (it ends \(period.end))")
        }
        return nil
    }

    /// Whether closing `period` would change nothing (it is closed already).
    public func isClosed(_ period: Period) -> Bool { closedThrough.map { period <= $0 } ?? false }

    /// Issues an invoice for every org with charges in a month up to `period` that is not
    /// invoiced yet, settles what it can from prepaid wallets, and marks those months
    /// closed: later usage for them becomes an adjustment on a later invoice.
    @discardableResult
    public mutating func close(_ period: Period, now: Timestamp) -> [String] {
        if !commitments.isEmpty { trueUp(closing: period, now: now) }
        var issued: [String] = []
        for org in open.keys.sorted() {
            guard var months = open[org] else { continue }
            for month in months.keys.sorted() where month <= period {
                var invoice = Invoice.build(
                    org: org, period: month, charges: months[month]!, currency: currency, issuedAt: now)
                settleFromWallet(&invoice, now: now)
                invoices[invoice.id] = invoice
                invoicesByOrg[org, default: []].append(invoice.id)
                issued.append(invoice.id)
                months[month] = nil
            }
            open[org] = months.isEmpty ? nil : months
        }
        closedThrough = max(closedThrough ?? period, period)
        return issued
    }

    /// Prepaid money an org has that no hold reserves.
    public func walletAvailable(_ org: OrgID) -> Money {
        let w = AccountID.wallet(org)
        return Money(micros: ledger.balance(w).micros - ledger.pendingDebits(w).micros)
    }

    private mutating func settleFromWallet(_ invoice: inout Invoice, now: Timestamp) {
        let pay = min(walletAvailable(invoice.org).micros, invoice.total.micros)
        guard pay > 0 else { return }
        do {
            try ledger.post(
                debit: .wallet(invoice.org), credit: .receivable(invoice.org), amount: Money(micros: pay), at: now,
                code: .settlement, ref: invoice.id)
        } catch {
            fatalError("ledger overflow settling \(invoice.id): \(error)")
        }
        invoice.paidFromWallet = Money(micros: pay)
        invoice.amountDue = Money(micros: invoice.total.micros - pay)
    }

    /// Checks a deposit into an org's prepaid wallet.
    public func checkDeposit(_ amount: Money, currency: Currency) throws(StratusError) {
        guard currency == self.currency else {
            throw StratusError(
                .invalidArgument, "currency: this deployment bills in \(self.currency.rawValue), not \(currency.rawValue)")
        }
        try amount.checkAmount(field: "amount")
        guard amount.micros > 0 else { throw StratusError(.invalidArgument, "amount: must be positive") }
        let after = Int128(ledger.balance(.cash).micros) + Int128(amount.micros)
        guard after <= Int128(Int64.max / 2) else { throw StratusError(.invalidArgument, "amount: overflows the ledger") }
    }

    /// Money received into the org's wallet (cash -> wallet).
    public mutating func deposit(org: OrgID, _ amount: Money, at: Timestamp, ref: String) throws(StratusError) {
        try ledger.post(debit: .cash, credit: .wallet(org), amount: amount, at: at, code: .deposit, ref: ref)
    }

    /// A credit on the org's next invoice: the operator's cost (`account`) -> the org's receivable.
    public mutating func grant(org: OrgID, _ credit: Credit, at: Timestamp) throws(StratusError) {
        try ledger.post(
            debit: credit.kind == .sla ? .slaCredits : .grantedCredits, credit: .receivable(org), amount: credit.amount,
            at: at, code: credit.kind == .sla ? .slaCredit : .grant, ref: credit.id)
        let period = openPeriod(at: at)
        open[org, default: [:]][period, default: PeriodCharges()].credits.append(credit)
    }

    /// Charges of the month containing `now` so far (the invoice it would be).
    public func preview(org: OrgID, now: Timestamp) -> Invoice {
        let period = openPeriod(at: now)
        var invoice = Invoice.build(
            org: org, period: period, charges: open[org]?[period] ?? PeriodCharges(), currency: currency, issuedAt: now)
        invoice.id = "preview-\(period)-\(org.rawValue)"
        return invoice
    }
}
