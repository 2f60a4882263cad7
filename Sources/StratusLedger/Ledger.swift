import StratusCore

/// A ledger account, named by kind and owner: `receivable/acme`, `wallet/acme`,
/// `revenue/on-demand`, `sla_credits`, `cash`, `cost/aws`, `payable/aws`.
public struct AccountID: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }

    /// What a tenant owes (an asset of the operator; debit-normal).
    public static func receivable(_ org: OrgID) -> AccountID { AccountID("receivable/\(org.rawValue)") }
    /// Money a tenant paid ahead (a liability of the operator; credit-normal).
    public static func wallet(_ org: OrgID) -> AccountID { AccountID("wallet/\(org.rawValue)") }
    /// Income by tier (credit-normal).
    public static func revenue(_ tier: Tier) -> AccountID { AccountID("revenue/\(tier.rawValue)") }
    /// Commitment shortfalls invoiced at the end of a term (credit-normal).
    public static let commitmentRevenue = AccountID("revenue/commitment-true-up")
    /// Service credits given for SLA breaches (a contra-revenue; debit-normal).
    public static let slaCredits = AccountID("sla_credits")
    /// Promotional or goodwill credits (debit-normal).
    public static let grantedCredits = AccountID("granted_credits")
    /// Money received (debit-normal).
    public static let cash = AccountID("cash")
    /// What capacity bought from `provider` costs (debit-normal) and what is owed for it (credit-normal).
    public static func cost(_ provider: String) -> AccountID { AccountID("cost/\(provider)") }
    public static func payable(_ provider: String) -> AccountID { AccountID("payable/\(provider)") }

    public var kind: Substring { rawValue.split(separator: "/", maxSplits: 1).first ?? Substring(rawValue) }
    /// Asset and expense accounts grow with debits; the others with credits.
    public var isDebitNormal: Bool { ["receivable", "cash", "cost", "sla_credits", "granted_credits"].contains(kind) }

    public static func < (a: AccountID, b: AccountID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

extension AccountID: CodingKeyRepresentable {
    public var codingKey: any CodingKey { SpecValue.AnyKey(rawValue) }
    public init?<T: CodingKey>(codingKey: T) { self.init(codingKey.stringValue) }
}

/// Posted and pending sums of one account, kept apart as TigerBeetle does.
public struct AccountBalance: Codable, Equatable, Sendable {
    public var debitsPosted = Money.zero
    public var creditsPosted = Money.zero
    public var debitsPending = Money.zero
    public var creditsPending = Money.zero

    public init() {}

    /// Posted balance in the account's normal direction (positive when it holds value).
    public func balance(of account: AccountID) -> Money {
        account.isDebitNormal
            ? Money(micros: debitsPosted.micros - creditsPosted.micros)
            : Money(micros: creditsPosted.micros - debitsPosted.micros)
    }
}

/// Why a transfer was made.
public enum TransferCode: String, Codable, Sendable {
    case usage, adjustment, deposit, settlement, slaCredit = "sla_credit", grant, trueUp = "true_up", hold, payment
    /// A capacity block paid up front.
    case reservation
    /// What capacity bought from another cloud cost.
    case providerCost = "provider_cost"

    /// Hashes the case, not its raw string (codes key the postings of every usage batch).
    public func hash(into hasher: inout Hasher) { hasher.combine(ordinal) }

    /// What hash tables use: the ordinal through `WordDigest`, keyed by the table's seed.
    public func _rawHashValue(seed: Int) -> Int {
        var h = WordDigest(tableSeed: seed)
        h.add(UInt64(ordinal))
        return h.tableHash
    }

    var ordinal: Int {
        switch self {
        case .usage: 0
        case .adjustment: 1
        case .deposit: 2
        case .settlement: 3
        case .slaCredit: 4
        case .grant: 5
        case .trueUp: 6
        case .hold: 7
        case .payment: 8
        case .reservation: 9
        case .providerCost: 10
        }
    }
}

/// One posting: `amount` leaves `credit` and enters `debit`. Immutable once made.
public struct Transfer: Codable, Equatable, Sendable {
    public let id: UInt64
    public let debit: AccountID
    public let credit: AccountID
    public let amount: Money
    public let at: Timestamp
    public let code: TransferCode
    /// What it is for: an event id, an invoice, a hold.
    public let ref: String
}

/// A pending transfer: it reserves `amount` until it is posted (in part or whole) or voided.
public struct Hold: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable { case pending, posted, voided }
    public let id: UInt64
    public let debit: AccountID
    public let credit: AccountID
    public let amount: Money
    public let at: Timestamp
    public let ref: String
    public internal(set) var status: Status
    public internal(set) var postedAmount: Money
}

/// The double-entry book. Every change is a transfer between two accounts, so the sum
/// of all debits always equals the sum of all credits; `checkBalanced` asserts it.
public struct Ledger: Codable, Equatable, Sendable {
    public private(set) var accounts: [AccountID: AccountBalance] = [:]
    /// The most recent transfers (at least `Limits.journalKept` once there are that many,
    /// at most twice that); all of them can be rebuilt from the log.
    public private(set) var journal: [Transfer] = []
    public private(set) var holds: [UInt64: Hold] = [:]
    public private(set) var transferCount: UInt64 = 0
    public private(set) var totalDebits = Money.zero
    public private(set) var totalCredits = Money.zero
    var nextHold: UInt64 = 1

    public init() {}

    public func balance(_ account: AccountID) -> Money { accounts[account]?.balance(of: account) ?? .zero }
    public func pendingDebits(_ account: AccountID) -> Money { accounts[account]?.debitsPending ?? .zero }

    static func check(_ debit: AccountID, _ credit: AccountID, _ amount: Money) throws(StratusError) {
        guard amount.micros > 0 else { throw StratusError(.invalidArgument, "amount: must be positive, got \(amount)") }
        guard debit != credit else { throw StratusError(.invalidArgument, "a transfer needs two different accounts") }
    }

    /// Posts one transfer. The only failure is overflow, checked before anything changes.
    @discardableResult
    public mutating func post(
        debit: AccountID, credit: AccountID, amount: Money, at: Timestamp, code: TransferCode, ref: String
    ) throws(StratusError) -> UInt64 {
        try Self.check(debit, credit, amount)
        var d = accounts[debit] ?? AccountBalance()
        var c = accounts[credit] ?? AccountBalance()
        d.debitsPosted = try d.debitsPosted.adding(amount)
        c.creditsPosted = try c.creditsPosted.adding(amount)
        let td = try totalDebits.adding(amount)
        let tc = try totalCredits.adding(amount)
        accounts[debit] = d
        accounts[credit] = c
        totalDebits = td
        totalCredits = tc
        transferCount += 1
        record(Transfer(id: transferCount, debit: debit, credit: credit, amount: amount, at: at, code: code, ref: ref))
        return transferCount
    }

    /// Keeps between `journalKept` and twice that many, trimming in one step so that
    /// appending stays O(1) amortized.
    private mutating func record(_ t: Transfer) {
        if journal.count >= 2 * Limits.journalKept { journal.removeFirst(journal.count - Limits.journalKept) }
        journal.append(t)
    }

    /// Reserves `amount` from `debit` toward `credit` without posting it.
    public mutating func hold(debit: AccountID, credit: AccountID, amount: Money, at: Timestamp, ref: String)
        throws(StratusError) -> UInt64
    {
        try Self.check(debit, credit, amount)
        var d = accounts[debit] ?? AccountBalance()
        var c = accounts[credit] ?? AccountBalance()
        d.debitsPending = try d.debitsPending.adding(amount)
        c.creditsPending = try c.creditsPending.adding(amount)
        accounts[debit] = d
        accounts[credit] = c
        let id = nextHold
        nextHold += 1
        holds[id] = Hold(
            id: id, debit: debit, credit: credit, amount: amount, at: at, ref: ref, status: .pending, postedAmount: .zero)
        return id
    }

    /// Posts `amount` (at most the held amount) of a pending hold and releases the rest;
    /// posting zero voids it.
    public mutating func settle(hold id: UInt64, amount: Money, at: Timestamp) throws(StratusError) {
        guard var h = holds[id] else { throw StratusError.notFound("hold", String(id)) }
        guard h.status == .pending else { throw StratusError(.failedPrecondition, "hold \(id) is already \(h.status.rawValue)") }
        guard amount.micros >= 0, amount <= h.amount else {
            throw StratusError(.invalidArgument, "amount: \(amount) is outside 0...\(h.amount) held")
        }
        if amount.micros > 0 {
            try post(debit: h.debit, credit: h.credit, amount: amount, at: at, code: .hold, ref: h.ref)
            h.status = .posted
            h.postedAmount = amount
        } else {
            h.status = .voided
        }
        accounts[h.debit]!.debitsPending.micros -= h.amount.micros
        accounts[h.credit]!.creditsPending.micros -= h.amount.micros
        holds[id] = h
    }

    /// Holds that are settled are dropped once there are more than `Limits.holdsKept`.
    public mutating func pruneHolds() {
        guard holds.count > Limits.holdsKept else { return }
        for (id, h) in holds where h.status != .pending { holds[id] = nil }
    }

    /// Debits equal credits, overall and summed over accounts. A failure is a bug.
    public func checkBalanced() -> Bool {
        guard totalDebits == totalCredits else { return false }
        var d: Int64 = 0
        var c: Int64 = 0
        var dp: Int64 = 0
        var cp: Int64 = 0
        for a in accounts.values {
            d += a.debitsPosted.micros
            c += a.creditsPosted.micros
            dp += a.debitsPending.micros
            cp += a.creditsPending.micros
        }
        return d == c && d == totalDebits.micros && dp == cp
    }
}
