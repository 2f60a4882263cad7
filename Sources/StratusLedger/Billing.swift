import StratusCore

/// One invoice line's identity: usage of a project's GPUs of one model, region and tier
/// at one price. A price change during the month starts a new line.
public struct LineKey: Hashable, Comparable, Codable, Sendable {
    public var project: String
    public var gpuModel: String
    public var region: String
    public var tier: Tier
    /// What the org pays per GPU-hour, and the list price it was derived from.
    public var unitPrice: Money
    public var listPrice: Money

    /// What hash tables use: every field through `WordDigest`, keyed by the table's seed
    /// (a line is looked up for every usage event rated; SipHash over three strings cost more).
    public func _rawHashValue(seed: Int) -> Int {
        var h = WordDigest(tableSeed: seed)
        h.add(project)
        h.add(gpuModel)
        h.add(region)
        h.add(UInt64(tier.rank))
        h.add(UInt64(bitPattern: unitPrice.micros))
        h.add(UInt64(bitPattern: listPrice.micros))
        return h.tableHash
    }

    public static func < (a: LineKey, b: LineKey) -> Bool {
        (a.project, a.gpuModel, a.region, a.tier.rank, a.unitPrice.micros, a.listPrice.micros)
            < (b.project, b.gpuModel, b.region, b.tier.rank, b.unitPrice.micros, b.listPrice.micros)
    }

    /// Equal keys hash alike without the list price, which follows from the rest.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(project)
        hasher.combine(gpuModel)
        hasher.combine(region)
        hasher.combine(tier.rank)
        hasher.combine(unitPrice.micros)
    }
}

/// GPU time and money accumulated on one line. `amount` is always
/// `Money.charge(gpuSeconds, unitPrice)`: the ledger is posted the difference each time
/// the line grows, so rounding never depends on how usage was batched or ordered.
public struct LineTotal: Codable, Equatable, Sendable {
    public var gpuSeconds: Int64 = 0
    public var amount = Money.zero
    public init(gpuSeconds: Int64 = 0, amount: Money = .zero) {
        self.gpuSeconds = gpuSeconds
        self.amount = amount
    }
}

/// Late usage for a month already invoiced, carried into a later invoice.
public struct AdjustmentKey: Hashable, Comparable, Codable, Sendable {
    public var forPeriod: Period
    public var line: LineKey
    public static func < (a: AdjustmentKey, b: AdjustmentKey) -> Bool { (a.forPeriod, a.line) < (b.forPeriod, b.line) }
}

/// A service credit (SLA breach) or a granted credit; it lowers the invoice total.
public struct Credit: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case sla, grant }
    public var id: String
    public var kind: Kind
    public var description: String
    public var amount: Money
    public init(id: String, kind: Kind, description: String, amount: Money) {
        self.id = id
        self.kind = kind
        self.description = description
        self.amount = amount
    }
}

/// Everything an org has been charged for one month that is not yet invoiced.
public struct PeriodCharges: Codable, Equatable, Sendable {
    public var lines: [LineKey: LineTotal] = [:]
    public var adjustments: [AdjustmentKey: LineTotal] = [:]
    public var credits: [Credit] = []
    /// Charges that are not usage (capacity blocks, commitment true-ups).
    public var fees: [Fee] = []
    public init() {}

    public var total: Money {
        let usage = lines.values.reduce(0) { $0 + $1.amount.micros } + adjustments.values.reduce(0) { $0 + $1.amount.micros }
        let fees = fees.reduce(0) { $0 + $1.amount.micros }
        return Money(micros: usage + fees - credits.reduce(0) { $0 + $1.amount.micros })
    }

    /// Charges of one project, for its budget.
    public func total(project: String) -> Money {
        Money(
            micros: lines.reduce(0) { $0 + ($1.key.project == project ? $1.value.amount.micros : 0) }
                + adjustments.reduce(0) { $0 + ($1.key.line.project == project ? $1.value.amount.micros : 0) }
                + fees.reduce(0) { $0 + ($1.project == project ? $1.amount.micros : 0) })
    }
}

/// The pure billing state machine: prices, the usage meter, the ledger and invoices.
/// `State` owns one and calls it while applying commands; nothing here reads a clock.
public struct Billing: Codable, Equatable, Sendable {
    public var currency = Currency.usd
    /// Set through `State` (which validates changes with `PriceBook.check`).
    public var prices = PriceBook()
    public internal(set) var ledger = Ledger()
    var seen = SeenSet()
    /// Charges not yet invoiced, per org per month.
    public internal(set) var open: [OrgID: [Period: PeriodCharges]] = [:]
    public internal(set) var invoices: [String: Invoice] = [:]
    public internal(set) var invoicesByOrg: [OrgID: [String]] = [:]
    /// Every month up to this one is invoiced; usage for it is an adjustment.
    public internal(set) var closedThrough: Period?
    /// How late a usage event may arrive (default 35 days).
    public var lateWindowSeconds: Int64 = Limits.defaultLateUsageWindowSeconds
    public internal(set) var eventsCounted: UInt64 = 0
    var lastPrune: Int64 = 0
    /// Credit limits per org; an org without one is not capped.
    public internal(set) var creditLimits: [OrgID: Money] = [:]
    /// Monthly budgets by `org/project`.
    public internal(set) var budgets: [String: Budget] = [:]
    /// Budget alerts raised, newest last (at most `Limits.maxBudgetAlertsKept`).
    public internal(set) var alerts: [BudgetAlert] = []
    var alerted: [String: AlertMark] = [:]
    var jobHolds: [String: JobHold] = [:]
    /// Spend commitments by id.
    public internal(set) var commitments: [String: Commitment] = [:]

    public init() {}

    public enum EventOutcome: String, Equatable, Sendable {
        case counted
        /// Seen before with the same content: nothing changes.
        case duplicate
    }

    /// Checks an event against what billing knows. Throws with the reason it is refused.
    public func check(_ e: UsageEvent, now: Timestamp) throws(StratusError) -> EventOutcome {
        var cache = PriceCache()
        return try check(e, now: now, cache: &cache)
    }

    func check(_ e: UsageEvent, now: Timestamp, cache: inout PriceCache) throws(StratusError) -> EventOutcome {
        try e.validate()
        if let s = seen[e.key] {
            guard s.fingerprint == e.fingerprint else {
                throw StratusError(
                    .idempotencyMismatch, "usage event '\(e.id)' from '\(e.source)' was already counted with different content")
            }
            return .duplicate
        }
        guard e.end <= now.adding(seconds: Limits.usageClockSkewSeconds) else {
            throw StratusError(
                .invalidArgument,
                "end: \(e.end) is in the future (now \(now), at most \(Limits.usageClockSkewSeconds) s of clock skew)")
        }
        guard e.end >= now.adding(seconds: -lateWindowSeconds) else {
            throw StratusError(
                .failedPrecondition,
                "end: \(e.end) is older than the late-usage window of \(lateWindowSeconds / 86400) days")
        }
        if e.org != InternalOrg.id, e.endSecond > e.startSecond {
            let sku = SKU(gpuModel: e.gpuModel, region: e.region, tier: e.tier)
            guard cache.get(prices, org: e.org, sku).price(at: Timestamp(seconds: e.startSecond)) != nil else {
                throw StratusError(
                    .failedPrecondition, "no price for \(sku) at \(Timestamp(seconds: e.startSecond)) (unknown SKU)")
            }
        }
        return .counted
    }

    /// Checks a batch as a whole (ids repeated within it included); counts it only when
    /// `commit` and every event passes. One bad event refuses the batch: nothing is counted.
    public mutating func ingest(_ events: [UsageEvent], now: Timestamp, commit: Bool) throws(StratusError)
        -> [EventOutcome]
    {
        let outcomes = try check(events, now: now)
        if commit { record(events, now: now) }
        return outcomes
    }

    /// What counting a batch would do with each event, or the first reason it is refused.
    public func check(_ events: [UsageEvent], now: Timestamp) throws(StratusError) -> [EventOutcome] {
        guard events.count <= Limits.maxUsageEventsPerBatch else {
            throw StratusError(.limitExceeded, "events: at most \(Limits.maxUsageEventsPerBatch) per batch, got \(events.count)")
        }
        var outcomes: [EventOutcome] = []
        outcomes.reserveCapacity(events.count)
        var inBatch: [EventKey: Int] = [:]
        inBatch.reserveCapacity(events.count)
        var cache = PriceCache()
        for (i, e) in events.enumerated() {
            let outcome: EventOutcome
            do throws(StratusError) {
                guard e.source != UsageEvent.allocationSource else {
                    throw StratusError(
                        .invalidArgument,
                        "source: '\(e.source)' is the control plane's own meter; outside meters name their own source")
                }
                outcome = try check(e, now: now, cache: &cache)
                if outcome == .counted {
                    if let earlier = inBatch[e.key] {
                        guard events[earlier] == e else {
                            throw StratusError(
                                .idempotencyMismatch, "usage event '\(e.id)' appears twice in the batch with different content")
                        }
                        outcomes.append(.duplicate)
                        continue
                    }
                    inBatch[e.key] = i
                }
            } catch {
                throw StratusError(error.code, "events[\(i)] (id '\(e.id)'): \(error.message)")
            }
            outcomes.append(outcome)
        }
        return outcomes
    }

    /// Resolved prices of the SKUs a batch touches (a batch has few): a linear scan with
    /// cheap string equality instead of hashing three strings per lookup.
    struct PriceCache {
        var entries: [(org: OrgID?, sku: SKU, resolved: PriceBook.Resolved)] = []

        mutating func get(_ book: PriceBook, org: OrgID, _ sku: SKU) -> PriceBook.Resolved {
            let key: OrgID? = book.overrides.isEmpty ? nil : org
            for i in entries.indices {
                let e = entries[i].sku
                if e.tier == sku.tier, e.region == sku.region, e.gpuModel == sku.gpuModel, entries[i].org == key {
                    return entries[i].resolved
                }
            }
            let r = book.resolve(org: org, sku)
            if entries.count >= 64 { entries.removeAll(keepingCapacity: true) }
            entries.append((key, sku, r))
            return r
        }
    }

    /// Counts a batch that passed `check` (or was logged after passing it): events seen
    /// before are skipped, the rest rated; the ledger gets one transfer per org and tier
    /// for the batch. Returns how many were counted.
    @discardableResult
    public mutating func record(_ events: [UsageEvent], now: Timestamp) -> Int {
        // First remember the ids, in a tight loop over precomputed digests: the table is
        // large and probes miss the cache, and this way the misses overlap. A repeat
        // (seen before, or earlier in the batch) is skipped.
        var keys: [EventKey] = []
        var values: [SeenEvent] = []
        keys.reserveCapacity(events.count)
        values.reserveCapacity(events.count)
        for i in events.indices {
            keys.append(events[i].key)
            values.append(SeenEvent(fingerprint: events[i].fingerprint, endSecond: events[i].endSecond))
        }
        seen.reserve(events.count)
        var fresh = [Bool](repeating: false, count: events.count)
        for i in keys.indices { fresh[i] = seen.insert(keys[i], values[i]) == nil }
        var postings = Postings()
        var cache = PriceCache()
        var counted = 0
        for i in events.indices where fresh[i] {
            rate(events[i], now: now, into: &postings, cache: &cache)
            counted += 1
        }
        let ref = events.first.map { "usage \($0.source)/\($0.id) (+\(events.count - 1))" } ?? "usage"
        post(postings, now, ref)
        pruneSeen(now: now)
        return counted
    }

    /// Counts and rates one event and posts its charge at once.
    public mutating func count(_ e: UsageEvent, now: Timestamp) {
        var tally = Tally()
        count(e, now: now, into: &tally)
        post(tally, now: now)
    }

    /// Events counted by one command, whose charges are posted together: one transfer
    /// per org, tier and code. Consecutive events that differ only in their GPUs (a
    /// gang's nodes ending together) are rated as one: invoice lines charge their total
    /// GPU-seconds, so the money is the same to the micro.
    public struct Tally {
        var postings = Postings()
        var cache = PriceCache()
        /// The last event, not rated yet (more of its kind may follow).
        var pending: UsageEvent?
        var merged = 0
        var first: String?
        var events = 0
        public init() {}
    }

    /// Counts one event into `tally`; `post(tally, now:)` rates what is left and moves the money.
    public mutating func count(_ e: UsageEvent, now: Timestamp, into tally: inout Tally) {
        // The control plane's own events are not remembered here: each allocation ends
        // once in the state (its record id is the usage meter's to check), and outside
        // batches may not use their source, so no repeat of one can reach billing.
        if e.source != UsageEvent.allocationSource {
            _ = seen.insert(e.key, SeenEvent(fingerprint: e.fingerprint, endSecond: e.endSecond))
        }
        if tally.first == nil { tally.first = e.id }
        tally.events += 1
        // Compared and grown in place: a copy of the pending event would retain its strings.
        if tally.pending?.merges(e) == true {
            tally.pending!.gpus += e.gpus
            tally.merged += 1
            return
        }
        if let p = tally.pending.take() { rate(p, now: now, into: &tally.postings, cache: &tally.cache) }
        tally.pending = e
    }

    /// Posts what `tally` counted (nothing when it counted nothing). The transfers' ref is
    /// the first event's id, and how many more there were.
    public mutating func post(_ tally: Tally, now: Timestamp) {
        guard let first = tally.first else { return }
        var tally = tally
        if let p = tally.pending { rate(p, now: now, into: &tally.postings, cache: &tally.cache) }
        eventsCounted += UInt64(tally.merged)
        post(tally.postings, now, tally.events == 1 ? first : "\(first) (+\(tally.events - 1))")
        // The ids it remembered are forgotten after the late window, as batches' are.
        pruneSeen(now: now)
    }

    /// Money one batch moves from an org's receivable to the revenue of a tier.
    struct Posting: Hashable {
        var org: OrgID
        var tier: Tier
        var code: TransferCode
        func _rawHashValue(seed: Int) -> Int {
            org._rawHashValue(seed: seed &+ tier.rank &* 16 &+ code.ordinal)
        }
    }

    /// A batch's postings in the order they first occur (so replay posts them in the same
    /// order without sorting).
    struct Postings {
        /// Built once there are more than `scanned` items (a command's events are
        /// usually one org's, so most batches never need it).
        var index: [Posting: Int] = [:]
        var items: [(Posting, Int64)] = []
        static let scanned = 8

        mutating func add(_ p: Posting, _ micros: Int64) {
            if items.count <= Self.scanned {
                if let i = items.firstIndex(where: { $0.0 == p }) {
                    items[i].1 += micros
                    return
                }
                items.append((p, micros))
                if items.count > Self.scanned {
                    for (i, item) in items.enumerated() { index[item.0] = i }
                }
            } else if let i = index[p] {
                items[i].1 += micros
            } else {
                index[p] = items.count
                items.append((p, micros))
            }
        }
    }

    /// Splits an event (whose id the caller has remembered) at month ends and price
    /// changes, and adds each piece to its invoice line; the line's growth is added to `postings`.
    mutating func rate(_ e: UsageEvent, now: Timestamp, into postings: inout Postings, cache: inout PriceCache) {
        eventsCounted += 1
        guard e.org != InternalOrg.id else { return }
        let sku = SKU(gpuModel: e.gpuModel, region: e.region, tier: e.tier)
        var from = e.startSecond
        let to = e.endSecond
        guard to > from else { return }
        let book = cache.get(prices, org: e.org, sku)
        let changes = book.changes(from: Timestamp(seconds: from), to: Timestamp(seconds: to))
        let month = Period(containing: Timestamp(seconds: from))
        let monthEnd = month.end.milliseconds / 1000
        if changes.isEmpty, to <= monthEnd {
            // The common case: one price, one month.
            piece(e, from: from, to: to, period: month, book, now, &postings)
            return
        }
        var cuts = changes.map { $0.milliseconds / 1000 }
        var end = monthEnd
        var next = month.next
        while end < to {
            cuts.append(end)
            end = next.end.milliseconds / 1000
            next = next.next
        }
        cuts.sort()
        cuts.append(to)
        for cut in cuts where cut > from {
            piece(e, from: from, to: cut, period: Period(containing: Timestamp(seconds: from)), book, now, &postings)
            from = cut
        }
    }

    /// Rates [from, to) of an event, inside one month and at one price.
    private mutating func piece(
        _ e: UsageEvent, from: Int64, to: Int64, period: Period, _ book: PriceBook.Resolved, _ now: Timestamp,
        _ postings: inout Postings
    ) {
        let at = Timestamp(seconds: from)
        // Reserved-tier work the control plane measured ran in a capacity block, which was
        // paid up front: its GPU-hours are shown at zero. (Outside meters' reserved usage
        // is rated at the reserved price.)
        let prepaid = e.tier == .reserved && e.source == UsageEvent.allocationSource
        let (orgPrice, listPrice) = book.prices(at: at)
        let price = prepaid ? .zero : committedPrice(orgPrice ?? .zero, org: e.org, tier: e.tier, period: period)
        let list = listPrice ?? .zero
        let key = LineKey(
            project: e.project, gpuModel: e.gpuModel, region: e.region, tier: e.tier, unitPrice: price, listPrice: list)
        // A fraction of a GPU pays its share of the time, rounded down to the GPU-second.
        let gpuSeconds = e.gpuShareMilli.map { Int64(e.gpus) * (to - from) * Int64($0) / 1000 } ?? Int64(e.gpus) * (to - from)
        if let closed = closedThrough, period <= closed {
            let into = openPeriod(at: now)
            let delta = addAdjustment(org: e.org, into: into, AdjustmentKey(forPeriod: period, line: key), gpuSeconds, now)
            drawDown(e.org, period, delta)
            postings.add(Posting(org: e.org, tier: e.tier, code: .adjustment), delta.micros)
        } else {
            let delta = addUsage(org: e.org, period: period, key, gpuSeconds, now)
            drawDown(e.org, period, delta)
            postings.add(Posting(org: e.org, tier: e.tier, code: .usage), delta.micros)
        }
    }

    private mutating func addUsage(org: OrgID, period: Period, _ key: LineKey, _ gpuSeconds: Int64, _ now: Timestamp)
        -> Money
    {
        let delta = grow(
            &open[org, default: [:]][period, default: PeriodCharges()].lines[key, default: LineTotal()], gpuSeconds, key.unitPrice
        )
        if !budgets.isEmpty { checkBudget(org, key.project, now: now) }
        return delta
    }

    private mutating func addAdjustment(
        org: OrgID, into period: Period, _ key: AdjustmentKey, _ gpuSeconds: Int64, _ now: Timestamp
    ) -> Money {
        var total = open[org]?[period]?.adjustments[key] ?? LineTotal()
        let delta = grow(&total, gpuSeconds, key.line.unitPrice)
        open[org, default: [:]][period, default: PeriodCharges()].adjustments[key] = total
        if !budgets.isEmpty { checkBudget(org, key.line.project, now: now) }
        return delta
    }

    private func grow(_ total: inout LineTotal, _ gpuSeconds: Int64, _ price: Money) -> Money {
        total.gpuSeconds += gpuSeconds
        let amount = Money.charge(gpuSeconds: total.gpuSeconds, pricePerGPUHour: price)
        let delta = Money(micros: amount.micros - total.amount.micros)
        total.amount = amount
        return delta
    }

    private mutating func post(_ postings: Postings, _ now: Timestamp, _ ref: String) {
        for (p, micros) in postings.items where micros > 0 {
            do {
                try ledger.post(
                    debit: .receivable(p.org), credit: .revenue(p.tier), amount: Money(micros: micros), at: now, code: p.code,
                    ref: ref)
            } catch {
                // Amounts are bounded by the limits on prices, GPUs and durations, far below
                // Int64: an overflow here is a bug, and a silent one would lose money.
                fatalError("ledger overflow posting usage \(ref): \(error)")
            }
        }
    }

    /// Forgets event ids whose events ended before the late window (a resend would be
    /// refused as too late), at most once a day.
    mutating func pruneSeen(now: Timestamp) {
        let day = now.milliseconds / 86_400_000
        guard day > lastPrune else { return }
        lastPrune = day
        let horizon = now.adding(seconds: -lateWindowSeconds - Limits.usageClockSkewSeconds).milliseconds / 1000
        seen.filter { $0.endSecond >= horizon }
    }

    /// The month new charges and credits go to: the one containing `at`, or the first one
    /// not yet closed if an operator closed ahead of the clock.
    public func openPeriod(at: Timestamp) -> Period {
        max(Period(containing: at), closedThrough?.next ?? Period(containing: at))
    }

    /// Whether an event with this source and id was counted (and is still remembered; the
    /// control plane's own events, source `UsageEvent.allocationSource`, never are).
    public func isSeen(_ e: UsageEvent) -> Bool { seen[e.key] != nil }

    /// Event ids the meter remembers now.
    public var rememberedEvents: Int { seen.count }
}

extension UsageEvent {
    /// Whether `e` differs from this event only in its GPUs (a gang's nodes ending
    /// together), so that the two are rated as one.
    func merges(_ e: UsageEvent) -> Bool {
        gpuShareMilli == nil && e.gpuShareMilli == nil && start == e.start && end == e.end && org == e.org
            && tier == e.tier && gpuModel == e.gpuModel && region == e.region && project == e.project
            && source == e.source
    }
}
