import Foundation
import StratusControl
import StratusCore
import StratusLedger
import StratusStore
import Testing

@Suite struct MoneyTests {
    @Test func parsesAndPrintsExactly() {
        #expect(Money.parse("2.49")?.micros == 2_490_000)
        #expect(Money.parse("0.000001")?.micros == 1)
        #expect(Money.parse("0.0000001") == nil)
        #expect(Money.parse("1e3") == nil)
        #expect(Money.parse("99999999999999999999") == nil)
        #expect(Money(micros: 2_490_000).description == "2.49")
        #expect(Money(micros: 691).description == "0.000691")
        #expect(Money(micros: -1_500_000).description == "-1.50")
    }

    @Test func refusesNegativeAndHugeAmounts() {
        #expect(throws: StratusError.self) { try Money.parse("-1", field: "price") }
        #expect(throws: StratusError.self) { try Money.parse("1000000000001", field: "price") }
        #expect(throws: StratusError.self) { try Money(micros: .max).adding(Money(micros: 1)) }
    }

    @Test func chargesRoundHalfUpToTheCentOnce() {
        // 1 GPU-second at 6.16/h = 0.0017111 -> 0.00; 1,800 GPU-seconds -> 3.08 exactly.
        #expect(Money.charge(gpuSeconds: 1, pricePerGPUHour: Money.parse("6.16")!) == .zero)
        #expect(Money.charge(gpuSeconds: 1800, pricePerGPUHour: Money.parse("6.16")!).description == "3.08")
        // 0.005 rounds up: 18 s at 1.00/h = 0.005.
        #expect(Money.charge(gpuSeconds: 18, pricePerGPUHour: Money.parse("1")!).description == "0.01")
        // No overflow at the limits: a million GPUs for 31 days at the largest price.
        let big = Money.charge(gpuSeconds: 1_048_576 * 31 * 86400, pricePerGPUHour: Money(micros: 1_000_000_000))
        #expect(big.micros > 0)
    }

    @Test func periodsAreCalendarMonths() throws {
        let t = try #require(ISO8601.parse("2026-02-28T23:59:59Z"))
        let p = Period(containing: t)
        #expect(p.description == "2026-02")
        #expect(p.end == ISO8601.parse("2026-03-01T00:00:00Z"))
        #expect(Period(containing: ISO8601.parse("2024-12-31T23:59:59Z")!).next.description == "2025-01")
        #expect(Period.parse("2026-13") == nil)
    }
}

@Suite struct PriceBookTests {
    let h100 = SKU(gpuModel: "H100", region: "*", tier: .onDemand)
    let east = SKU(gpuModel: "H100", region: "us-east", tier: .onDemand)

    @Test func pricesAreEffectiveDatedAndHistoryIsKept() throws {
        var book = PriceBook()
        book.set(h100, PricePoint(from: Timestamp(seconds: 100), price: Money.parse("6")!))
        book.set(h100, PricePoint(from: Timestamp(seconds: 200), price: Money.parse("5")!))
        #expect(book.price(org: "a", h100, at: Timestamp(seconds: 99)) == nil)
        #expect(book.price(org: "a", h100, at: Timestamp(seconds: 150))?.description == "6.00")
        #expect(book.price(org: "a", h100, at: Timestamp(seconds: 200))?.description == "5.00")
        // A region without its own price takes the `*` one.
        #expect(book.price(org: "a", east, at: Timestamp(seconds: 150))?.description == "6.00")
        #expect(book.list[h100]?.count == 2)
        // History is not rewritten.
        #expect(throws: StratusError.self) { try book.check(h100, PricePoint(from: Timestamp(seconds: 150), price: .zero)) }
        #expect(throws: StratusError.self) {
            try book.check(h100, PricePoint(from: Timestamp(milliseconds: 300_500), price: .zero))
        }
        #expect(throws: StratusError.self) {
            try book.check(SKU(gpuModel: "H999", region: "*", tier: .spot), PricePoint(from: .zero, price: .zero))
        }
    }

    @Test func orgPricesOverrideTheListMostSpecificFirst() {
        var book = PriceBook()
        book.set(h100, PricePoint(from: .zero, price: Money.parse("10")!))
        book.set(OrgPrice(org: "a", tier: .onDemand, from: .zero, discountBasisPoints: 2000))
        book.set(
            OrgPrice(
                org: "a", gpuModel: "H100", region: "us-east", tier: .onDemand, from: Timestamp(seconds: 50),
                price: Money.parse("3")!))
        #expect(book.price(org: "a", h100, at: Timestamp(seconds: 10))?.description == "8.00")
        #expect(book.price(org: "a", east, at: Timestamp(seconds: 10))?.description == "8.00")
        #expect(book.price(org: "a", east, at: Timestamp(seconds: 60))?.description == "3.00")
        #expect(book.price(org: "b", east, at: Timestamp(seconds: 60))?.description == "10.00")
        #expect(throws: StratusError.self) {
            try book.check(OrgPrice(org: "a", tier: .spot, from: .zero, price: .zero, discountBasisPoints: 10))
        }
        #expect(throws: StratusError.self) {
            try book.check(OrgPrice(org: "a", tier: .spot, from: .zero, discountBasisPoints: 10_001))
        }
    }
}

/// A small world for metering: acme with projects, H100 on-demand and spot priced.
enum Meter {
    static let t0 = Timestamp(seconds: 1_790_000_000)  // 2026-09-21
    static func engine() throws -> Engine {
        var e = try Fixture.engine()
        try e.execute(.createProject(CreateProject(org: "acme", name: "train")), at: t0)
        try e.execute(.createOrg(CreateOrg(id: "beta", displayName: "Beta")), at: t0)
        try e.execute(
            .setPrices(
                SetPrices(list: [
                    ListPrice(
                        sku: SKU(gpuModel: "H100", region: "*", tier: .onDemand),
                        point: PricePoint(from: Timestamp(seconds: 1_700_000_000), price: Money.parse("6.16")!)),
                    ListPrice(
                        sku: SKU(gpuModel: "H100", region: "*", tier: .spot),
                        point: PricePoint(from: Timestamp(seconds: 1_700_000_000), price: Money.parse("2.46")!)),
                ])), at: t0)
        return e
    }

    static func event(
        _ id: String, org: OrgID = "acme", project: String = "train", tier: Tier = .onDemand, gpus: Int = 8,
        start: Int64 = -3600, seconds: Int64 = 3600
    ) -> UsageEvent {
        UsageEvent(
            source: "test", id: id, org: org, project: project, gpuModel: "H100", region: "us-east", tier: tier, gpus: gpus,
            start: t0.adding(seconds: start), end: t0.adding(seconds: start + seconds))
    }
}

@Suite struct MeteringTests {
    @Test func sameIdTwiceCountsOnce() throws {
        var e = try Meter.engine()
        try e.execute(.recordUsage(RecordUsage(events: [Meter.event("e1")])), at: Meter.t0)
        let seq = e.state.seq
        let again = try e.execute(.recordUsage(RecordUsage(events: [Meter.event("e1")])), at: Meter.t0)
        #expect(again == .unchanged("0 counted, 1 duplicate"))
        #expect(e.state.seq == seq)
        #expect(e.state.billing.ledger.balance(.receivable("acme")).description == "49.28")  // 8 GPU-h x 6.16
    }

    @Test func sameIdWithOtherContentIsRefusedAndNothingIsPosted() throws {
        var e = try Meter.engine()
        try e.execute(.recordUsage(RecordUsage(events: [Meter.event("e1")])), at: Meter.t0)
        let before = e.state
        #expect(
            throws: StratusError(
                .idempotencyMismatch,
                "events[1] (id 'e1'): usage event 'e1' from 'test' was already counted with different content")
        ) {
            try e.execute(.recordUsage(RecordUsage(events: [Meter.event("e2"), Meter.event("e1", gpus: 4)])), at: Meter.t0)
        }
        #expect(e.state == before)
        #expect(throws: StratusError.self) {
            try e.execute(.recordUsage(RecordUsage(events: [Meter.event("x"), Meter.event("x", gpus: 2)])), at: Meter.t0)
        }
        #expect(e.state == before)
    }

    @Test func badEventsAreRefusedWithTheReason() throws {
        var e = try Meter.engine()
        let before = e.state
        func refused(_ event: UsageEvent, _ text: String) {
            do {
                try e.execute(.recordUsage(RecordUsage(events: [event])), at: Meter.t0)
                Issue.record("accepted \(event)")
            } catch let error as StratusError {
                #expect(error.message.contains(text), "\(error.message)")
            } catch { Issue.record("\(error)") }
        }
        refused(Meter.event("future", start: 0, seconds: 3600), "in the future")
        refused(Meter.event("late", start: -40 * 86400), "older than the late-usage window")
        var unknown = Meter.event("sku")
        unknown.gpuModel = "A100"
        refused(unknown, "no price for A100")
        unknown.gpuModel = "Z9"
        refused(unknown, "unknown GPU model")
        refused(Meter.event("neg", seconds: -5), "before start")
        refused(Meter.event("zero", gpus: 0), "gpus")
        refused(Meter.event("org", org: "nope"), "org 'nope' not found")
        refused(Meter.event("proj", project: "nope"), "project 'acme/nope' not found")
        var long = Meter.event(String(repeating: "x", count: 300))
        refused(long, "id: must be 1 to 255")
        long = Meter.event("span", start: -32 * 86400, seconds: 32 * 86400)
        refused(long, "at most 31 days")
        #expect(e.state == before)
        // Within the skew is fine.
        try e.execute(.recordUsage(RecordUsage(events: [Meter.event("skew", start: -3500, seconds: 3600)])), at: Meter.t0)
    }

    @Test func tooManyEventsInOneBatchIsRefused() throws {
        var e = try Meter.engine()
        let events = (0...Limits.maxUsageEventsPerBatch).map { Meter.event("e\($0)") }
        #expect(throws: StratusError.self) { try e.execute(.recordUsage(RecordUsage(events: events)), at: Meter.t0) }
    }

    @Test func usageAfterACloseBecomesAnAdjustmentOnTheNextInvoice() throws {
        var e = try Meter.engine()
        let sept = Period(containing: Meter.t0)
        try e.execute(.recordUsage(RecordUsage(events: [Meter.event("a")])), at: Meter.t0)
        let oct2 = sept.end.adding(seconds: 86400)
        #expect(throws: StratusError.self) { try e.execute(.closePeriod(ClosePeriod(period: sept.next)), at: oct2) }
        try e.execute(.closePeriod(ClosePeriod(period: sept)), at: oct2)
        #expect(try e.execute(.closePeriod(ClosePeriod(period: sept)), at: oct2) == .unchanged(sept.description))
        // Late: the event happened in September.
        try e.execute(.recordUsage(RecordUsage(events: [Meter.event("late", gpus: 1)])), at: oct2)
        let inv = try #require(e.state.billing.invoices[Invoice.id(org: "acme", period: sept)])
        #expect(inv.total.description == "49.28")
        let next = e.state.billing.preview(org: "acme", now: oct2)
        #expect(next.lines.count == 1)
        #expect(next.lines[0].kind == .adjustment)
        #expect(next.lines[0].forPeriod == sept)
        #expect(next.lines[0].amount.description == "6.16")
        #expect(e.state.billing.ledger.checkBalanced())
    }

    @Test func allocationsOfTenantsAreBilledAndInternalWorkIsNot() throws {
        var e = try Meter.engine()
        let job = try Fixture.submit(&e, Fixture.spec(8))
        try e.schedule(at: Meter.t0)
        let node = try #require(e.state.jobs[job]?.allocations.first?.node)
        try e.execute(.allocationStarted(AllocationStarted(job: job, node: node)), at: Meter.t0)
        try e.execute(
            .allocationExited(AllocationExited(job: job, node: node, exitCode: 0, reason: nil)),
            at: Meter.t0.adding(seconds: 1800))
        let preview = e.state.billing.preview(org: "acme", now: Meter.t0.adding(seconds: 1800))
        #expect(preview.lines.map(\.gpuSeconds) == [8 * 1800])
        #expect(preview.total.description == "24.64")  // 4 GPU-h x 6.16
        let internalJob = try Fixture.submit(&e, Fixture.spec(8, tier: .internal), org: InternalOrg.id)
        try e.schedule(at: Meter.t0.adding(seconds: 1800))
        let n2 = try #require(e.state.jobs[internalJob]?.allocations.first?.node)
        try e.execute(.allocationStarted(AllocationStarted(job: internalJob, node: n2)), at: Meter.t0.adding(seconds: 1800))
        try e.execute(
            .allocationExited(AllocationExited(job: internalJob, node: n2, exitCode: 0, reason: nil)),
            at: Meter.t0.adding(seconds: 3600))
        #expect(e.state.billing.open[InternalOrg.id] == nil)
        #expect(e.state.billing.ledger.checkBalanced())
    }
}

@Suite struct LedgerTests {
    @Test func transfersBalanceAndHoldsPostOrVoid() throws {
        var l = Ledger()
        try l.post(debit: .cash, credit: .wallet("a"), amount: Money.parse("100")!, at: .zero, code: .deposit, ref: "d")
        let h = try l.hold(debit: .wallet("a"), credit: .receivable("a"), amount: Money.parse("30")!, at: .zero, ref: "job-1")
        #expect(l.pendingDebits(.wallet("a")).description == "30.00")
        #expect(l.balance(.wallet("a")).description == "100.00")
        try l.settle(hold: h, amount: Money.parse("12.5")!, at: .zero)
        #expect(l.pendingDebits(.wallet("a")) == .zero)
        #expect(l.balance(.wallet("a")).description == "87.50")
        #expect(l.holds[h]?.status == .posted)
        #expect(throws: StratusError.self) { try l.settle(hold: h, amount: .zero, at: .zero) }
        let v = try l.hold(debit: .wallet("a"), credit: .receivable("a"), amount: Money.parse("5")!, at: .zero, ref: "job-2")
        try l.settle(hold: v, amount: .zero, at: .zero)
        #expect(l.holds[v]?.status == .voided)
        #expect(l.balance(.wallet("a")).description == "87.50")
        #expect(throws: StratusError.self) {
            try l.post(debit: .cash, credit: .cash, amount: Money.parse("1")!, at: .zero, code: .deposit, ref: "")
        }
        #expect(throws: StratusError.self) {
            try l.post(debit: .cash, credit: .wallet("a"), amount: Money(micros: -1), at: .zero, code: .deposit, ref: "")
        }
        #expect(l.checkBalanced())
    }

    @Test func depositsCheckCurrencyAndAmount() throws {
        var e = try Meter.engine()
        let before = e.state
        #expect(throws: StratusError.self) {
            try e.execute(.deposit(Deposit(org: "acme", amount: Money.parse("10")!, currency: .eur, reference: "")), at: Meter.t0)
        }
        #expect(throws: StratusError.self) {
            try e.execute(.deposit(Deposit(org: "acme", amount: Money(micros: -5), currency: .usd, reference: "")), at: Meter.t0)
        }
        #expect(throws: StratusError.self) {
            try e.execute(
                .deposit(Deposit(org: "acme", amount: Money(micros: .max), currency: .usd, reference: "")), at: Meter.t0)
        }
        #expect(throws: StratusError.self) {
            try e.execute(.deposit(Deposit(org: "ghost", amount: Money.parse("1")!, currency: .usd, reference: "")), at: Meter.t0)
        }
        #expect(e.state == before)
        #expect(throws: StratusError.self) { try Currency.parse("XYZ", field: "currency") }
    }
}

/// Properties over random usage: the ledger always balances, and what is billed does not
/// depend on how events are ordered or batched.
@Suite struct BillingPropertyTests {
    static func randomEvents(_ rng: inout SeededRandom, count: Int) -> [UsageEvent] {
        (0..<count).map { i in
            let seconds = Int64(rng.next(below: 20_000))
            let start = -Int64(rng.next(below: 30 * 86400)) - seconds
            var e = Meter.event(
                "e\(i % (count * 3 / 4 + 1))", org: rng.next(below: 3) == 0 ? "beta" : "acme",
                project: "default", tier: rng.next(below: 2) == 0 ? .spot : .onDemand, gpus: 1 + Int(rng.next(below: 16)),
                start: start, seconds: seconds)
            let ms = Int64(rng.next(below: 1000))
            e.start = Timestamp(milliseconds: e.start.milliseconds + ms)
            e.end = Timestamp(milliseconds: e.end.milliseconds + ms - Int64(rng.next(below: 1000)) * (seconds > 0 ? 1 : 0))
            return e
        }
    }

    /// Keeps the first of each id (a repeated id with other content would be refused).
    static func unique(_ events: [UsageEvent]) -> [UsageEvent] {
        var seen = Set<String>()
        return events.filter { seen.insert($0.id).inserted }
    }

    @Test(arguments: 1...12) func ratingIgnoresOrderAndBatching(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let events = Self.unique(Self.randomEvents(&rng, count: 300))
        // A spot price change in the middle of the events splits some of them.
        let change = SetPrices(list: [
            ListPrice(
                sku: SKU(gpuModel: "H100", region: "*", tier: .spot),
                point: PricePoint(from: Meter.t0.adding(seconds: -10 * 86400), price: Money.parse("3.1234")!))
        ])
        var a = try Meter.engine()
        var b = try Meter.engine()
        try a.execute(.setPrices(change), at: Meter.t0)
        try b.execute(.setPrices(change), at: Meter.t0)
        try a.execute(.recordUsage(RecordUsage(events: events)), at: Meter.t0)
        var shuffled = events
        for i in stride(from: shuffled.count - 1, to: 0, by: -1) { shuffled.swapAt(i, Int(rng.next(below: UInt64(i + 1)))) }
        // Resend a random part of it, too: duplicates change nothing.
        shuffled += shuffled.prefix(Int(rng.next(below: 50)))
        var i = 0
        while i < shuffled.count {
            let n = 1 + Int(rng.next(below: 40))
            let batch = Array(shuffled[i..<min(shuffled.count, i + n)])
            try b.execute(.recordUsage(RecordUsage(events: batch)), at: Meter.t0)
            #expect(b.state.billing.ledger.checkBalanced())
            i += n
        }
        #expect(a.state.billing.open == b.state.billing.open)
        #expect(a.state.billing.ledger.accounts == b.state.billing.ledger.accounts)
        #expect(a.state.billing.ledger.checkBalanced())
        // The receivables equal the invoice lines' sums.
        for org: OrgID in ["acme", "beta"] {
            let charged = a.state.billing.open[org]?.values.reduce(0) { $0 + $1.total.micros } ?? 0
            #expect(a.state.billing.ledger.balance(.receivable(org)).micros == charged)
        }
    }

    @Test(arguments: 1...8) func theLedgerAlwaysBalances(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var e = try Meter.engine()
        var now = Meter.t0
        for step in 0..<200 {
            now = now.adding(seconds: Int64(rng.next(below: 6 * 3600)))
            let org: OrgID = rng.next(below: 2) == 0 ? "acme" : "beta"
            switch rng.next(below: 5) {
            case 0, 1:
                var events = Self.randomEvents(&rng, count: 1 + Int(rng.next(below: 10)))
                for k in events.indices {
                    events[k].id = "s\(step)-\(k)"
                    events[k].start = Timestamp(
                        milliseconds: events[k].start.milliseconds + now.milliseconds - Meter.t0.milliseconds)
                    events[k].end = Timestamp(milliseconds: events[k].end.milliseconds + now.milliseconds - Meter.t0.milliseconds)
                }
                try e.execute(.recordUsage(RecordUsage(events: events)), at: now)
            case 2:
                try e.execute(
                    .deposit(
                        Deposit(
                            org: org, amount: Money(cents: Int64(1 + rng.next(below: 50_000))), currency: .usd,
                            reference: "p\(step)")), at: now)
            case 3:
                try e.execute(
                    .grantCredit(GrantCredit(org: org, amount: Money(cents: Int64(1 + rng.next(below: 5000))), description: "c")),
                    at: now)
            default:
                let last = Period(containing: now).previous
                try e.execute(.closePeriod(ClosePeriod(period: last)), at: now)
            }
            #expect(e.state.billing.ledger.checkBalanced(), "seed \(seed) step \(step)")
        }
        // Every invoice's total is what it added to the receivable, less what the wallet paid.
        let b = e.state.billing
        for org: OrgID in ["acme", "beta"] {
            let invoiced = (b.invoicesByOrg[org] ?? []).reduce(0) { $0 + b.invoices[$1]!.amountDue.micros }
            let open = b.open[org]?.values.reduce(0) { $0 + $1.total.micros } ?? 0
            #expect(b.ledger.balance(.receivable(org)).micros == invoiced + open, "seed \(seed) org \(org)")
        }
    }
}

@Suite struct MoneyAdmissionTests {
    static func spec(_ hours: Int64? = 2, fallback: Bool = false) -> JobSpec {
        var s = Fixture.spec(8)
        s.maxDurationSeconds = hours.map { $0 * 3600 }
        if fallback { s.budgetFallback = .spot }
        return s
    }

    static func refusal(_ e: inout Engine, _ spec: JobSpec) -> String {
        do {
            _ = try Fixture.submit(&e, spec, at: Meter.t0)
            return "admitted"
        } catch let error as StratusError {
            return error.message
        } catch { return "\(error)" }
    }

    @Test func aCreditLimitCapsWhatJobsMayCommitAndHoldsAreReleased() throws {
        var e = try Meter.engine()
        try e.execute(.setCreditLimit(SetCreditLimit(org: "acme", limit: Money.parse("100")!)), at: Meter.t0)
        // 8 GPUs x 2 h x 6.16 = 98.56 fits under 100 and is held.
        let first = try Fixture.submit(&e, Self.spec(), at: Meter.t0)
        #expect(e.state.billing.spendable("acme")?.description == "1.44")
        #expect(e.state.billing.ledger.pendingDebits(.receivable("acme")).description == "98.56")
        let before = e.state
        let why = Self.refusal(&e, Self.spec())
        #expect(why.hasPrefix("credit: projected cost 98.56 exceeds the 1.44 org acme may still spend"), "\(why)")
        #expect(e.state == before)
        #expect(Self.refusal(&e, Self.spec(nil)).hasPrefix("max_duration: required, because org acme has a credit limit"))
        // Money paid in raises what may be spent; spot (8 x 2 h x 2.46 = 39.36) now fits, on-demand does not.
        try e.execute(.deposit(Deposit(org: "acme", amount: Money.parse("50")!, currency: .usd, reference: "")), at: Meter.t0)
        let offer = Self.refusal(&e, Self.spec())
        #expect(offer.contains("as spot it would cost at most 39.36"), "\(offer)")
        let fallback = try Fixture.submit(&e, Self.spec(fallback: true), at: Meter.t0)
        #expect(e.state.jobs[fallback]?.spec.tier == .spot)
        #expect(e.state.jobs[fallback]?.events.first?.message.contains("runs as spot") == true)
        // Cancelling a queued job voids its hold.
        try e.execute(.cancelJob(CancelJob(job: first, by: "key-1")), at: Meter.t0)
        #expect(e.state.billing.ledger.pendingDebits(.receivable("acme")).description == "39.36")
        #expect(e.state.billing.ledger.holds.values.contains { $0.status == .voided })
        #expect(e.state.billing.ledger.checkBalanced())
        // The internal org and orgs without a limit are not checked.
        _ = try Fixture.submit(&e, Fixture.spec(8), org: InternalOrg.id, at: Meter.t0)
        _ = try Fixture.submit(&e, Fixture.spec(8), org: "beta", at: Meter.t0)
    }

    @Test func budgetsAlertAtThresholdsAndCanRefuseWork() throws {
        var e = try Meter.engine()
        try e.execute(
            .setBudget(Budget(org: "acme", project: "train", monthly: Money.parse("100")!, enforce: false)), at: Meter.t0)
        func use(_ id: String, gpus: Int) throws {
            try e.execute(
                .recordUsage(RecordUsage(events: [Meter.event(id, gpus: gpus, start: -3600, seconds: 3600)])), at: Meter.t0)
        }
        try use("a", gpus: 10)  // 61.60: 50%
        #expect(e.state.billing.alerts.map(\.percent) == [50])
        try use("b", gpus: 4)  // 86.24: 80%
        try use("c", gpus: 1)  // 92.40: still 80%, no new alert
        #expect(e.state.billing.alerts.map(\.percent) == [50, 80])
        try use("d", gpus: 2)  // 104.72: 100%
        #expect(e.state.billing.alerts.map(\.percent) == [50, 80, 100])
        #expect(e.state.billing.alerts.last?.spent.description == "104.72")
        // Not enforced: work is still admitted. Enforced: refused with the numbers.
        var s = Self.spec()
        s.project = "train"
        _ = try Fixture.submit(&e, s, at: Meter.t0)
        try e.execute(.setBudget(Budget(org: "acme", project: "train", monthly: Money.parse("300")!)), at: Meter.t0)
        // 300 - 104.72 charged = 195.28: one more job's 98.56 fits and is held, a second does not.
        _ = try Fixture.submit(&e, s, at: Meter.t0)
        let why = Self.refusal(&e, s)
        #expect(
            why.hasPrefix("budget: projected cost 98.56 exceeds the 96.72 left of project train's monthly budget of 300.00"),
            "\(why)")
        #expect(throws: StratusError.self) {
            try e.execute(.setBudget(Budget(org: "acme", project: "nope", monthly: Money.parse("1")!)), at: Meter.t0)
        }
        #expect(throws: StratusError.self) {
            try e.execute(
                .setBudget(Budget(org: "acme", project: "train", monthly: Money.parse("1")!, alertPercents: [80, 50])),
                at: Meter.t0)
        }
    }
}

@Suite struct SpotMarketTests {
    let onDemand = Money.parse("6.16")!

    @Test func theTargetRunsFromFloorToCeilingWithTheSquareOfUtilization() {
        let m = SpotMarket()
        #expect(m.target(onDemand: onDemand, .init(gpus: 100, committed: 0)).description == "1.54")
        #expect(m.target(onDemand: onDemand, .init(gpus: 100, committed: 100)).description == "6.16")
        #expect(m.target(onDemand: onDemand, .init(gpus: 100, committed: 50)).description == "2.695")
        #expect(m.target(onDemand: onDemand, .init(gpus: 100, committed: 500)).description == "6.16")
        #expect(m.target(onDemand: onDemand, .init(gpus: 0, committed: 0)).description == "6.16")
    }

    @Test func thePriceMovesAQuarterOfTheWayInCents() {
        let m = SpotMarket()
        let full = SpotMarket.Supply(gpus: 100, committed: 100)
        var p = Money.parse("2.00")!
        var path: [String] = []
        for _ in 0..<4 {
            p = m.next(current: p, onDemand: onDemand, full)
            path.append(p.description)
        }
        #expect(path == ["3.04", "3.82", "4.41", "4.85"])
        // Close to the target it still moves a cent at a time, and then stays.
        #expect(m.next(current: Money.parse("6.15")!, onDemand: onDemand, full).description == "6.16")
        #expect(m.next(current: Money.parse("6.16")!, onDemand: onDemand, full).description == "6.16")
        #expect(m.next(current: nil, onDemand: onDemand, full).description == "6.16")
    }

    @Test func utilizationMovesThePriceAndBidsBelowItArePreemptedOrWait() throws {
        var e = try Meter.engine()
        // Half the 64 H100 on on-demand work: u = 50%, target 2.695; from 2.46 a quarter of the way is 2.52.
        for _ in 0..<4 { _ = try Fixture.submit(&e, Fixture.spec(8), at: Meter.t0) }
        var bid = Fixture.spec(8, tier: .spot)
        bid.maxPrice = Money.parse("2.50")!
        let spot = try Fixture.submit(&e, bid, at: Meter.t0)
        try e.schedule(at: Meter.t0)
        #expect(e.state.jobs[spot]?.state == .starting)
        let supply = e.state.spotSupply(at: Meter.t0)
        #expect(supply[SKU(gpuModel: "H100", region: "local", tier: .spot)] == .init(gpus: 64, committed: 32))
        let updates = e.state.spotPriceUpdates(SpotMarket(), at: Meter.t0)
        #expect(updates.map(\.point.price.description) == ["2.52"])
        try e.execute(.setSpotPrices(SetSpotPrices(prices: updates, noticeSeconds: 120)), at: Meter.t0)
        let stopped = try #require(e.state.jobs[spot])
        #expect(stopped.preemptedBy == State.spotMarket)
        #expect(stopped.allocations.allSatisfy { $0.stopRequested && $0.stopDeadline == Meter.t0.adding(seconds: 120) })
        #expect(stopped.reason == "preempted: spot price 2.52 in local is above max_price 2.50")
        // History is kept and queryable.
        #expect(e.state.billing.prices.list[SKU(gpuModel: "H100", region: "local", tier: .spot)]?.count == 1)
        // A new bid below the price waits; once the price falls under it, it runs.
        var low = Fixture.spec(8, tier: .spot)
        low.maxPrice = Money.parse("2.00")!
        let waiting = try Fixture.submit(&e, low, at: Meter.t0)
        let later = Meter.t0.adding(seconds: 300)
        try e.schedule(at: later)
        #expect(e.state.jobs[waiting]?.state == .queued)
        let cheap = ListPrice(
            sku: SKU(gpuModel: "H100", region: "local", tier: .spot), point: PricePoint(from: later, price: Money.parse("1.90")!))
        try e.execute(.setSpotPrices(SetSpotPrices(prices: [cheap], noticeSeconds: 120)), at: later)
        try e.schedule(at: later)
        #expect(e.state.jobs[waiting]?.state == .starting)
        #expect(throws: StratusError.self) {
            try e.execute(
                .setSpotPrices(
                    SetSpotPrices(
                        prices: [
                            ListPrice(
                                sku: SKU(gpuModel: "H100", region: "*", tier: .spot), point: PricePoint(from: later, price: .zero)
                            )
                        ],
                        noticeSeconds: 120)), at: later)
        }
    }
}

@Suite struct CommitmentTests {
    @Test func usageDrawsDownAtADiscountAndTheShortfallIsInvoicedAtTheEnd() throws {
        var e = try Meter.engine()
        let september = Period(containing: Meter.t0)
        // 1,000 over two months (September and October) at 20% off on-demand.
        let id = try e.execute(
            .createCommitment(
                CreateCommitment(
                    org: "acme", amount: Money.parse("1000")!, start: september, months: 2, discountBasisPoints: 2000)),
            at: Meter.t0
        ).id
        #expect(throws: StratusError.self) {
            try e.execute(
                .createCommitment(
                    CreateCommitment(
                        org: "acme", amount: Money.parse("5")!, start: september.next, months: 1, discountBasisPoints: 0)),
                at: Meter.t0)
        }
        #expect(throws: StratusError.self) {
            try e.execute(
                .createCommitment(
                    CreateCommitment(
                        org: "beta", amount: Money.parse("5")!, start: september.previous, months: 1, discountBasisPoints: 0)),
                at: Meter.t0)
        }
        // 8 GPU-h on-demand at 6.16 - 20% = 4.928: 39.42 (39.424); spot is not discounted: 8 x 2.46 = 19.68.
        try e.execute(.recordUsage(RecordUsage(events: [Meter.event("a"), Meter.event("b", tier: .spot)])), at: Meter.t0)
        var c = try #require(e.state.billing.commitments[id])
        #expect(c.drawn.description == "59.10")
        let preview = e.state.billing.preview(org: "acme", now: Meter.t0)
        #expect(preview.lines.first { $0.tier == .onDemand }?.unitPrice.description == "4.928")
        #expect(preview.lines.first { $0.tier == .onDemand }?.listPrice.description == "6.16")
        // Projection: at the pace so far over the whole term.
        #expect(c.projected(at: Meter.t0)!.micros > c.drawn.micros)
        // Closing September does not true up; closing October (the last month) does.
        try e.execute(.closePeriod(ClosePeriod(period: september)), at: september.end.adding(seconds: 3600))
        #expect(e.state.billing.commitments[id]?.trueUp == nil)
        let end = september.next.end.adding(seconds: 3600)
        try e.execute(.closePeriod(ClosePeriod(period: september.next)), at: end)
        c = try #require(e.state.billing.commitments[id])
        #expect(c.trueUp?.description == "940.90")
        let october = try #require(e.state.billing.invoices[Invoice.id(org: "acme", period: september.next)])
        #expect(october.fees.map(\.amount.description) == ["940.90"])
        #expect(october.total.description == "940.90")
        #expect(october.csv.contains(",fee,"))
        #expect(e.state.billing.ledger.balance(.commitmentRevenue).description == "940.90")
        #expect(e.state.billing.ledger.checkBalanced())
    }
}

@Suite struct SeenSetTests {
    @Test func idsAreRememberedThroughGrowthPruningAndSnapshots() throws {
        var b = Billing()
        b.prices.set(SKU(gpuModel: "H100", region: "*", tier: .onDemand), PricePoint(from: .zero, price: Money.parse("1")!))
        // Events ending 0 to 29 days ago.
        let events = (0..<5000).map { i in
            Meter.event("id-\(i)", org: "acme", start: -Int64(i % 30) * 86400 - 3600, seconds: 3600)
        }
        b.record(events, now: Meter.t0)
        #expect(b.rememberedEvents == 5000)
        let allSeen = events.allSatisfy(b.isSeen)
        #expect(allSeen)
        // ("ab", "c") and ("a", "bc") are different ids.
        var x = Meter.event("c")
        x.source = "ab"
        var y = Meter.event("bc")
        y.source = "a"
        b.record([x], now: Meter.t0)
        #expect(!b.isSeen(y))
        // A snapshot round trip keeps every id.
        let copy = try JSONDecoder().decode(Billing.self, from: JSONEncoder().encode(b))
        #expect(copy == b)
        let copySeen = events.allSatisfy(copy.isSeen)
        #expect(copySeen)
        // Ten days on, ids of events that ended more than the late window ago are forgotten.
        let later = Meter.t0.adding(seconds: 10 * 86400)
        b.record([Meter.event("later", start: 10 * 86400 - 3600)], now: later)
        #expect(b.rememberedEvents < 5000)
        #expect(b.isSeen(events[0]))
        #expect(!b.isSeen(events[29]))
    }

    /// Events counted one command at a time (allocations' usage) are forgotten after the
    /// late window too: a year of them does not pile up.
    @Test func idsCountedOneByOneAreForgottenAfterTheLateWindow() {
        var b = Billing()
        b.prices.set(SKU(gpuModel: "H100", region: "*", tier: .onDemand), PricePoint(from: .zero, price: Money.parse("1")!))
        let days = b.lateWindowSeconds / 86400 + 10
        for d in 0..<days {
            let now = Meter.t0.adding(seconds: d * 86400)
            for i in 0..<10 {
                var tally = Billing.Tally()
                b.count(Meter.event("d\(d)-\(i)", start: d * 86400 - 3600), now: now, into: &tally)
                b.post(tally, now: now)
            }
        }
        #expect(b.eventsCounted == UInt64(days * 10))
        // Only the window's days (and the day pruning last ran) are remembered.
        #expect(b.rememberedEvents <= Int(b.lateWindowSeconds / 86400 + 3) * 10)
        #expect(b.isSeen(Meter.event("d\(days - 1)-0", start: (days - 1) * 86400 - 3600)))
        #expect(!b.isSeen(Meter.event("d0-0", start: -3600)))
        #expect(b.ledger.checkBalanced())
    }
}

extension SeenSetTests {
    /// The control plane's own events (allocations that ended) are billed without being
    /// remembered: the state ends each allocation once. Outside batches may not use their
    /// source, so none can repeat one; outside events are remembered as before.
    @Test func allocationEventsAreNotRememberedAndOutsideBatchesMayNotUseTheirSource() throws {
        var b = Billing()
        b.prices.set(SKU(gpuModel: "H100", region: "*", tier: .onDemand), PricePoint(from: .zero, price: Money.parse("1")!))
        var own = Meter.event("job-1/0/node-1")
        own.source = UsageEvent.allocationSource
        var tally = Billing.Tally()
        b.count(own, now: Meter.t0, into: &tally)
        b.post(tally, now: Meter.t0)
        #expect(b.eventsCounted == 1)
        #expect(b.rememberedEvents == 0)
        #expect(b.ledger.balance(.receivable("acme")).description == "8.00")  // 8 GPU-h x $1
        // An outside batch naming that source is refused, whatever else it holds.
        do {
            _ = try b.check([Meter.event("x"), own], now: Meter.t0)
            Issue.record("an outside batch with the allocations' source was accepted")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("events[1]"))
            #expect(error.message.contains("control plane's own meter"))
        }
        // Through the state too: refused, and nothing changes.
        var e = try Meter.engine()
        let seq = e.state.seq
        #expect(throws: StratusError.self) { try e.execute(.recordUsage(RecordUsage(events: [own])), at: Meter.t0) }
        #expect(e.state.seq == seq)
        #expect(e.state.billing.ledger.balance(.receivable("acme")) == .zero)
        // Outside events are still remembered.
        b.record([Meter.event("x")], now: Meter.t0)
        #expect(b.rememberedEvents == 1)
    }
}

@Suite struct UsageLogEncodingTests {
    @Test func batchesRoundTripThroughTheCompactLogEncoding() throws {
        var odd = Meter.event("a\tb\nc\\d-é")
        odd.source = "src\\t"
        odd.subject = "-"
        var none = Meter.event("-")
        none.subject = nil
        var plain = Meter.event("x")
        plain.subject = "job-1"
        let batch = RecordUsage(events: [odd, none, plain])
        let data = try JSONEncoder().encode(Command.recordUsage(batch))
        let back = try JSONDecoder().decode(Command.self, from: data)
        #expect(back == .recordUsage(batch))
        #expect(throws: (any Error).self) { try UsageEventLines.decode("too\tfew\tfields\n") }
    }
}

@Suite struct SLATests {
    @Test func aLateOnDemandStartCreditsTheTenant() throws {
        var e = try Meter.engine()
        try e.execute(.createSLA(CreateSLA(org: nil, objective: .onDemandStartSeconds(60), creditPercent: 10)), at: Meter.t0)
        #expect(throws: StratusError.self) {
            try e.execute(.createSLA(CreateSLA(org: nil, objective: .onDemandStartSeconds(60), creditPercent: 0)), at: Meter.t0)
        }
        let job = try Fixture.submit(&e, Fixture.spec(8), at: Meter.t0)
        let start = Meter.t0.adding(seconds: 120)
        try e.schedule(at: start)
        let node = try #require(e.state.jobs[job]?.allocations.first?.node)
        try e.execute(.allocationStarted(AllocationStarted(job: job, node: node)), at: start)
        try e.execute(
            .allocationExited(AllocationExited(job: job, node: node, exitCode: 0, reason: nil)), at: start.adding(seconds: 3600))
        let preview = e.state.billing.preview(org: "acme", now: start.adding(seconds: 3600))
        #expect(preview.usageTotal.description == "49.28")
        #expect(preview.credits.map(\.amount.description) == ["4.92"])
        #expect(preview.credits.first?.description.contains("started 120 s after submission (SLA: 60 s)") == true)
        #expect(preview.total.description == "44.36")
        #expect(e.state.billing.ledger.balance(.slaCredits).description == "4.92")
        // A job that starts in time gets no credit.
        let quick = try Fixture.submit(&e, Fixture.spec(8), at: start.adding(seconds: 3600))
        try e.schedule(at: start.adding(seconds: 3610))
        let n2 = try #require(e.state.jobs[quick]?.allocations.first?.node)
        try e.execute(.allocationStarted(AllocationStarted(job: quick, node: n2)), at: start.adding(seconds: 3610))
        try e.execute(
            .allocationExited(AllocationExited(job: quick, node: n2, exitCode: 0, reason: nil)), at: start.adding(seconds: 7210))
        #expect(e.state.billing.preview(org: "acme", now: start.adding(seconds: 7210)).credits.count == 1)
    }

    @Test func aShortSpotNoticeCreditsTheTenant() throws {
        var e = try Meter.engine()
        // The deployment gives 120 s of notice; this tenant was promised 300 s.
        try e.execute(.createSLA(CreateSLA(org: "acme", objective: .spotNoticeSeconds(300), creditPercent: 50)), at: Meter.t0)
        var spots: [JobID] = []
        for _ in 0..<8 { spots.append(try Fixture.submit(&e, Fixture.spec(8, tier: .spot), at: Meter.t0)) }
        try e.schedule(at: Meter.t0)
        for j in spots {
            let node = try #require(e.state.jobs[j]?.allocations.first?.node)
            try e.execute(.allocationStarted(AllocationStarted(job: j, node: node)), at: Meter.t0)
        }
        _ = try Fixture.submit(&e, Fixture.spec(8, tier: .internal), org: InternalOrg.id, at: Meter.t0.adding(seconds: 3600))
        let plan = try e.schedule(at: Meter.t0.adding(seconds: 3600))
        let victim = try #require(plan.preemptions.first?.victims.first)
        let alloc = try #require(e.state.jobs[victim]?.allocations.first)
        #expect(alloc.noticeAt == Meter.t0.adding(seconds: 3600))
        // Killed at the deadline, 120 s after the notice.
        try e.execute(
            .allocationExited(AllocationExited(job: victim, node: alloc.node, exitCode: nil, reason: "preempted")),
            at: Meter.t0.adding(seconds: 3720))
        let credits = e.state.billing.preview(org: "acme", now: Meter.t0.adding(seconds: 3720)).credits
        // 8 GPUs x 3,720 s at 2.46 = 20.336 -> 20.34; half is 10.17.
        #expect(credits.map(\.amount.description) == ["10.17"])
        #expect(credits.first?.description.contains("stopped 120 s after its preemption notice (SLA: 300 s)") == true)
    }
}

@Suite struct BlockBillingTests {
    @Test func aCapacityBlockIsPaidUpFrontAndItsJobsAreNotChargedAgain() throws {
        var e = try Meter.engine()
        try e.execute(
            .setPrices(
                SetPrices(list: [
                    ListPrice(
                        sku: SKU(gpuModel: "H100", region: "*", tier: .reserved),
                        point: PricePoint(from: Timestamp(seconds: 1_700_000_000), price: Money.parse("4.92")!))
                ])), at: Meter.t0)
        let start = Meter.t0.adding(seconds: 600)
        let spec = ReservationSpec(
            project: nil, gpuModel: "H100", gpus: 16, racks: nil, site: nil, start: .at(start), durationSeconds: 2 * 3600,
            end: nil)
        let id = ReservationID(
            try e.execute(.createReservation(CreateReservation(org: "acme", spec: spec, by: "key-1")), at: Meter.t0).id)
        // 16 GPUs x 2 h x 4.92 = 157.44, on this month's invoice and in the ledger.
        var preview = e.state.billing.preview(org: "acme", now: Meter.t0)
        #expect(preview.fees.map(\.amount.description) == ["157.44"])
        #expect(preview.fees.first?.description.contains("Capacity block res-1: 16 H100") == true)
        #expect(e.state.billing.ledger.balance(.revenue(.reserved)).description == "157.44")
        // A job in the block runs an hour: its GPU-hours show at zero.
        var job = Fixture.spec(8, tier: .reserved)
        job.reservation = id
        let j = try Fixture.submit(&e, job, at: Meter.t0)
        try e.schedule(at: start)
        let node = try #require(e.state.jobs[j]?.allocations.first?.node)
        try e.execute(.allocationStarted(AllocationStarted(job: j, node: node)), at: start)
        try e.execute(
            .allocationExited(AllocationExited(job: j, node: node, exitCode: 0, reason: nil)), at: start.adding(seconds: 3600))
        preview = e.state.billing.preview(org: "acme", now: start.adding(seconds: 3600))
        #expect(preview.lines.map(\.gpuSeconds) == [8 * 3600])
        #expect(preview.lines.map(\.amount) == [.zero])
        #expect(preview.total.description == "157.44")
        // With a credit limit below the block's price, the block is refused and nothing is charged.
        try e.execute(.setCreditLimit(SetCreditLimit(org: "beta", limit: Money.parse("100")!)), at: Meter.t0)
        let before = e.state
        #expect(throws: StratusError.self) {
            try e.execute(.createReservation(CreateReservation(org: "beta", spec: spec, by: "key-1")), at: Meter.t0)
        }
        #expect(e.state == before)
    }
}

@Suite struct ProviderCostTests {
    @Test func capacityBoughtFromOthersIsACostUntilPaid() throws {
        var e = try Meter.engine()
        try e.execute(
            .recordProviderCost(
                ProviderCost(provider: "aws", kind: .cost, amount: Money.parse("1000")!, currency: .usd, reference: "inv-1")),
            at: Meter.t0)
        try e.execute(
            .recordProviderCost(
                ProviderCost(provider: "aws", kind: .payment, amount: Money.parse("600")!, currency: .usd, reference: "wire-1")),
            at: Meter.t0)
        let l = e.state.billing.ledger
        #expect(l.balance(.cost("aws")).description == "1000.00")
        #expect(l.balance(.payable("aws")).description == "400.00")
        #expect(l.balance(.cash).description == "-600.00")
        #expect(l.checkBalanced())
        let before = e.state
        #expect(throws: StratusError.self) {
            try e.execute(
                .recordProviderCost(
                    ProviderCost(provider: "aws", kind: .payment, amount: Money.parse("401")!, currency: .usd, reference: "")),
                at: Meter.t0)
        }
        #expect(throws: StratusError.self) {
            try e.execute(
                .recordProviderCost(
                    ProviderCost(provider: "AWS!", kind: .cost, amount: Money.parse("1")!, currency: .usd, reference: "")),
                at: Meter.t0)
        }
        #expect(throws: StratusError.self) {
            try e.execute(
                .recordProviderCost(
                    ProviderCost(provider: "aws", kind: .cost, amount: Money.parse("1")!, currency: .eur, reference: "")),
                at: Meter.t0)
        }
        #expect(e.state == before)
    }
}

@Suite struct ReservedAvailabilityTests {
    /// A 5-day block of 8 H100; its work loses its node for 2 hours before it runs again:
    /// 16 of 960 reserved GPU-hours not delivered (98.33%). An SLA of 99.5% is breached
    /// and credits 10% of the month's block (960 x 4.92 = 4723.20): 472.32. One of 98%
    /// is not.
    @Test func aBlockThatLosesItsNodeCreditsItsSLA() throws {
        var e = try Meter.engine()
        let t0 = Meter.t0
        try e.execute(
            .setPrices(
                SetPrices(list: [
                    ListPrice(
                        sku: SKU(gpuModel: "H100", region: "*", tier: .reserved),
                        point: PricePoint(from: Timestamp(seconds: 1_700_000_000), price: Money.parse("4.92")!))
                ])), at: t0)
        try e.execute(.createSLA(CreateSLA(org: nil, objective: .reservedAvailabilityPermille(995), creditPercent: 10)), at: t0)
        try e.execute(
            .createSLA(CreateSLA(org: "acme", objective: .reservedAvailabilityPermille(980), creditPercent: 50)), at: t0)
        try e.execute(
            .createAgentToken(CreateAgentToken(name: "fleet", node: nil, secretHash: Fixture.hash(100), hint: "sa_")), at: t0)
        try e.execute(NodeAgentStateTests.register("node-1", rack: nil), at: t0)
        for i in 2...8 {
            try e.execute(
                .setNodeState(
                    SetNodeState(
                        node: NodeID("node-\(i)"), state: .cordoned, reason: nil, requeue: false, noticeSeconds: 0, by: "key-1")),
                at: t0)
        }
        let start = t0.adding(seconds: 600)
        let block = ReservationSpec(
            project: nil, gpuModel: "H100", gpus: 8, racks: nil, site: nil, start: .at(start), durationSeconds: 120 * 3600,
            end: nil)
        let id = ReservationID(
            try e.execute(.createReservation(CreateReservation(org: "acme", spec: block, by: "key-1")), at: t0).id)
        var spec = Fixture.spec(8, tier: .reserved)
        spec.reservation = id
        let job = try Fixture.submit(&e, spec, at: t0)
        try e.schedule(at: start)
        try e.execute(.allocationStarted(AllocationStarted(job: job, node: "node-1", attempt: 0)), at: start)
        let lastSeen = start.adding(seconds: 3600)
        try e.execute(.nodeLost(NodeLost(node: "node-1", lastSeen: lastSeen)), at: lastSeen.adding(seconds: 60))
        #expect(e.state.jobs[job]?.state == .queued)
        #expect(try e.schedule(at: lastSeen.adding(seconds: 120)).placements.isEmpty, "nowhere to run: capacity not delivered")
        try e.execute(NodeAgentStateTests.register("node-1", rack: nil), at: lastSeen.adding(seconds: 7000))
        let back = lastSeen.adding(seconds: 7200)
        #expect(try e.schedule(at: back).placements.first?.job == job)
        #expect(e.state.reservationOutages[id]?.first?.to == back)

        let september = Period(containing: t0)
        try e.execute(.closePeriod(ClosePeriod(period: september)), at: september.end.adding(seconds: 86400))
        let next = e.state.billing.preview(org: "acme", now: september.end.adding(seconds: 86400))
        let credits = next.credits.filter { $0.id.hasPrefix("sla-") }
        #expect(credits.map(\.amount.description) == ["472.32"], "\(credits)")
        #expect(credits.first?.description.contains("delivered 98.33% of its 960 reserved GPU-hours") == true)
        #expect(credits.first?.description.contains("(SLA: 99.5%)") == true)
        #expect(e.state.billing.ledger.checkBalanced())
        #expect(e.state.reservationOutages[id] == nil, "the block ended in the closed month: its outages are dropped")
    }
}

/// `agent_reports`: agents' reports that arrive together, as one command.
@Suite struct AgentReportsTests {
    /// acme's 3-node gang placed at `Meter.t0`: the engine, the job and its nodes.
    static func placedGang() throws -> (Engine, JobID, [NodeID]) {
        var e = try Meter.engine()
        let job = try Fixture.submit(&e, Fixture.spec(8, nodes: 3))
        try e.schedule(at: Meter.t0)
        let nodes = try #require(e.state.jobs[job]?.allocations.map(\.node))
        try #require(nodes.count == 3)
        return (e, job, nodes)
    }

    @Test func reportsTogetherLeaveTheStateReportsOneByOneWould() throws {
        var (one, job, nodes) = try Self.placedGang()
        var (together, _, _) = try Self.placedGang()
        let end = Meter.t0.adding(seconds: 1800)
        for n in nodes { try one.execute(.allocationStarted(AllocationStarted(job: job, node: n)), at: Meter.t0) }
        for n in nodes {
            try one.execute(.allocationExited(AllocationExited(job: job, node: n, exitCode: 0, reason: nil)), at: end)
        }
        let started = try together.execute(
            .agentReports(AgentReports(started: nodes.map { AllocationStarted(job: job, node: $0) })), at: Meter.t0)
        #expect(started == .applied("3"))
        let exits = nodes.map { AllocationExited(job: job, node: $0, exitCode: 0, reason: nil) }
        #expect(try together.execute(.agentReports(AgentReports(exited: exits)), at: end) == .applied("3"))
        #expect(together.state.jobs[job]?.state == .succeeded)
        #expect(together.state.jobs[job] == one.state.jobs[job])
        #expect(together.state.usage.records == one.state.usage.records)
        let a = one.state.billing.preview(org: "acme", now: end)
        let b = together.state.billing.preview(org: "acme", now: end)
        #expect(b.lines == a.lines)
        #expect(b.total.description == "73.92")  // 3 nodes x 8 GPUs x 0.5 h = 12 GPU-h x 6.16
        #expect(
            together.state.billing.ledger.balance(.receivable("acme")) == one.state.billing.ledger.balance(.receivable("acme")))
        // The gang's usage is one transfer, not one per node.
        #expect(together.state.billing.ledger.transferCount == one.state.billing.ledger.transferCount - 2)
        #expect(together.state.billing.ledger.checkBalanced())
        #expect(together.state.holdingJobs().isEmpty)
        #expect(together.state.counterProblems().isEmpty)
        // Sent again (an agent retrying): known, nothing changes.
        #expect(try together.execute(.agentReports(AgentReports(exited: exits)), at: end) == .unchanged("0"))
    }

    @Test func oneBadReportRefusesTheWholeCommandAndChangesNothing() throws {
        var (e, job, nodes) = try Self.placedGang()
        try e.execute(
            .agentReports(AgentReports(started: nodes.map { AllocationStarted(job: job, node: $0) })), at: Meter.t0)
        let before = e.state
        func refusal(_ reports: AgentReports) -> StratusError? {
            do {
                try e.execute(.agentReports(reports), at: Meter.t0.adding(seconds: 60))
                return nil
            } catch {
                return error as? StratusError
            }
        }
        let stranger = AllocationExited(job: job, node: "node-99", exitCode: 0, reason: nil)
        let ok = AllocationExited(job: job, node: nodes[0], exitCode: 0, reason: nil)
        let bad = refusal(AgentReports(exited: [ok, stranger]))
        #expect(bad?.code == .failedPrecondition)
        #expect(bad?.message.hasPrefix("exited[1]: job \(job) has no allocation on node node-99") == true)
        let twice = refusal(AgentReports(exited: [ok, ok]))
        #expect(twice?.code == .invalidArgument)
        #expect(twice?.message == "exited[1]: job \(job) on \(nodes[0]) is named twice")
        let many = Array(
            repeating: AllocationStarted(job: job, node: nodes[0]), count: Limits.maxReportsPerCommand + 1)
        #expect(refusal(AgentReports(started: many))?.code == .limitExceeded)
        #expect(e.state == before)
    }
}
