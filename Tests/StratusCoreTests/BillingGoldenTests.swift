import Foundation
import StratusControl
import StratusCore
import StratusLedger
import StratusStore
import Testing

/// Golden invoice vectors: inputs and the exact expected invoices, checked in under
/// Golden/. The amounts of invoices-1 worked by hand (price x GPU-seconds / 3600,
/// rounded half up to the cent per line):
///
/// acme, 2026-10 (10% off on-demand):
///   infer spot @2.00      2 h x 4 GPUs            =  7,200 GPU-s ->   4.00
///   infer spot @2.50      1 h x 4 GPUs + 1 s      = 14,401 GPU-s ->  10.00 (10.000694)
///   train on-demand @4.50 (5.00 us-east from 10-15) 1 h x 8    = 28,800 GPU-s ->  36.00
///   train on-demand @5.544 (6.16 `*`) 10 h x 8 + 1 h x 8 (u1 once) = 316,800 GPU-s -> 487.87 (487.872)
///   total 537.87, 100.00 from the wallet, 437.87 due
/// beta, 2026-10: 1 GPU, 30 min 0.5 s billed as 1,801 s at 6.16 -> 3.08 (3.081722)
/// acme, 2026-11: u4's second in November (0.00), u5 arriving after the close as an
///   adjustment for 2026-10 (8 GPU-h at 4.50 = 36.00), a 20.00 credit: total 16.00
@Suite struct BillingGoldenTests {
    struct Vector: Decodable {
        var orgs: [String: [String]]
        var steps: [Step]
    }

    struct Step: Decodable {
        var at: String
        var prices: [PriceRow]?
        var org_prices: [OrgPriceRow]?
        var usage: [EventRow]?
        var deposit: MoneyRow?
        var credit: MoneyRow?
        var close: String?
    }

    struct PriceRow: Decodable {
        var gpu, region, tier, price, from: String
    }

    struct OrgPriceRow: Decodable {
        var org, gpu, region, tier, from: String
        var price: String?
        var discount_bps: Int?
    }

    struct EventRow: Decodable {
        var id, org, project, gpu, region, tier: String
        var gpus: Int
        var start, end: String
    }

    struct MoneyRow: Decodable {
        var org, amount: String
        var description: String?
    }

    static func time(_ s: String) throws -> Timestamp { try #require(ISO8601.parse(s)) }

    static func golden(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/\(name)")
    }

    /// Runs a vector through the real state machine (commands, as the server logs them).
    static func run(_ name: String) throws -> State {
        let vector = try JSONDecoder().decode(Vector.self, from: Data(contentsOf: golden(name)))
        var e = try Engine(store: MemoryStore())
        let t0 = try time(vector.steps[0].at)
        try e.execute(
            .bootstrap(CreateKey(org: nil, role: .operatorAdmin, name: "op", secretHash: Fixture.hash(1), hint: "sk_1")),
            at: t0)
        for (org, projects) in vector.orgs.sorted(by: { $0.key < $1.key }) {
            try e.execute(.createOrg(CreateOrg(id: OrgID(org), displayName: org.capitalized)), at: t0)
            for p in projects { try e.execute(.createProject(CreateProject(org: OrgID(org), name: p)), at: t0) }
        }
        for step in vector.steps {
            let at = try time(step.at)
            if step.prices != nil || step.org_prices != nil {
                let list = try (step.prices ?? []).map { p in
                    ListPrice(
                        sku: SKU(gpuModel: p.gpu, region: p.region, tier: try #require(Tier(rawValue: p.tier))),
                        point: PricePoint(from: try time(p.from), price: try #require(Money.parse(p.price))))
                }
                let orgPrices = try (step.org_prices ?? []).map { o in
                    OrgPrice(
                        org: OrgID(o.org), gpuModel: o.gpu, region: o.region, tier: try #require(Tier(rawValue: o.tier)),
                        from: try time(o.from), price: o.price.flatMap(Money.parse), discountBasisPoints: o.discount_bps)
                }
                try e.execute(.setPrices(SetPrices(list: list, orgPrices: orgPrices)), at: at)
            }
            if let usage = step.usage {
                let events = try usage.map { u in
                    UsageEvent(
                        source: "golden", id: u.id, org: OrgID(u.org), project: u.project, gpuModel: u.gpu, region: u.region,
                        tier: try #require(Tier(rawValue: u.tier)), gpus: u.gpus, start: try time(u.start),
                        end: try time(u.end))
                }
                try e.execute(.recordUsage(RecordUsage(events: events)), at: at)
            }
            if let d = step.deposit {
                try e.execute(
                    .deposit(
                        Deposit(org: OrgID(d.org), amount: try #require(Money.parse(d.amount)), currency: .usd, reference: "test")
                    ),
                    at: at)
            }
            if let c = step.credit {
                try e.execute(
                    .grantCredit(
                        GrantCredit(
                            org: OrgID(c.org), amount: try #require(Money.parse(c.amount)), description: c.description ?? "")),
                    at: at)
            }
            if let p = step.close { try e.execute(.closePeriod(ClosePeriod(period: try #require(Period.parse(p)))), at: at) }
        }
        return e.state
    }

    static func render(_ state: State) -> String {
        state.billing.invoices.keys.sorted().map { state.billing.invoices[$0]!.csv }.joined(separator: "\n")
    }

    @Test func invoices1MatchTheCheckedInVector() throws {
        let state = try Self.run("invoices-1.json")
        let expected = try String(contentsOf: Self.golden("invoices-1.expected.csv"), encoding: .utf8)
        let actual = Self.render(state)
        if actual != expected, ProcessInfo.processInfo.environment["STRATUS_UPDATE_GOLDEN"] == "1" {
            try actual.write(to: Self.golden("invoices-1.expected.csv"), atomically: true, encoding: .utf8)
        }
        #expect(actual == expected)
    }

    @Test func invoices1AmountsAreTheHandWorkedOnes() throws {
        let b = try Self.run("invoices-1.json").billing
        let oct = try #require(b.invoices["inv-2026-10-acme"])
        #expect(oct.lines.map(\.amount.description) == ["4.00", "10.00", "36.00", "487.87"])
        #expect(oct.lines.map(\.gpuSeconds) == [7200, 14401, 28800, 316_800])
        #expect(oct.lines.map(\.unitPrice.description) == ["2.00", "2.50", "4.50", "5.544"])
        #expect(oct.total.description == "537.87")
        #expect(oct.paidFromWallet.description == "100.00")
        #expect(oct.amountDue.description == "437.87")
        let beta = try #require(b.invoices["inv-2026-10-beta"])
        #expect(beta.total.description == "3.08")
        #expect(beta.lines.map(\.gpuSeconds) == [1801])
        let nov = try #require(b.invoices["inv-2026-11-acme"])
        #expect(nov.lines.map(\.kind) == [.usage, .adjustment])
        #expect(nov.lines[1].forPeriod == Period(year: 2026, month: 10))
        #expect(nov.lines.map(\.amount.description) == ["0.00", "36.00"])
        #expect(nov.creditsTotal.description == "20.00")
        #expect(nov.total.description == "16.00")
        #expect(b.invoices["inv-2026-11-beta"] == nil)
        // What the ledger says agrees with the invoices.
        #expect(b.ledger.checkBalanced())
        #expect(b.ledger.balance(.receivable("acme")).description == "453.87")  // 437.87 + 16.00
        #expect(b.ledger.balance(.receivable("beta")).description == "3.08")
        #expect(b.ledger.balance(.wallet("acme")).description == "0.00")
        #expect(b.ledger.balance(.revenue(.onDemand)).description == "562.95")  // 36 + 487.87 + 3.08 + 36
        #expect(b.ledger.balance(.revenue(.spot)).description == "14.00")
        #expect(b.ledger.balance(.grantedCredits).description == "20.00")
    }
}
