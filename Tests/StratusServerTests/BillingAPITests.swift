import Foundation
import HummingbirdTesting
import StratusAgent
import StratusControl
import StratusCore
import StratusLedger
import StratusServer
import Testing

/// A CloudEvents usage event as an outside meter would post it.
func usageEvent(
    _ id: String, org: String = "acme", gpus: Int = 8, tier: String = "on-demand", start: Timestamp, end: Timestamp,
    source: String = "meter/test", extra: String = ""
) -> String {
    #"{"specversion":"1.0","type":"dev.stratus.usage.gpu","id":"\#(id)","source":"\#(source)","time":"\#(end)","data":{"org":"\#(org)","gpu_model":"H100","region":"us-east","tier":"\#(tier)","gpus":\#(gpus),"start":"\#(start)","end":"\#(end)"}\#(extra)}"#
}

@Suite struct BillingAPITests {
    static func hourAgo() -> (Timestamp, Timestamp) {
        let now = Timestamp(seconds: WallClock.now().milliseconds / 1000)
        return (now.adding(seconds: -3600), now)
    }

    @Test(arguments: Mode.allCases)
    func usageEventsAreCountedOnceAndBadOnesChangeNothing(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        let (start, end) = Self.hourAgo()
        try await cloud.app().test(mode.setup) { client in
            let batch =
                "[\(usageEvent("e1", start: start, end: end)),\(usageEvent("e2", gpus: 2, tier: "spot", start: start, end: end))]"
            let first = try await client.call(.post, "/v1/usage/events", key: cloud.admin, body: batch)
            #expect(first.status == 200, "\(first.text)")
            #expect(first["counted"] as? Int == 2)
            let again = try await client.call(.post, "/v1/usage/events", key: cloud.admin, body: batch)
            #expect(again["counted"] as? Int == 0)
            #expect(again["duplicates"] as? Int == 2)
            let ledger = await cloud.plane.read { $0.billing.ledger }
            #expect(ledger.balance(.receivable("acme")).description == "54.20")  // 8 x 6.16 + 2 x 2.46

            let seq = await cloud.seq
            func refused(_ body: String, _ status: Int, _ text: String, key: String? = nil) async throws {
                let r = try await client.call(.post, "/v1/usage/events", key: key ?? cloud.admin, body: body)
                #expect(r.status == status, "\(r.text)")
                #expect(r.errorMessage.contains(text), "\(r.errorMessage)")
            }
            // The same id with other content.
            try await refused("[\(usageEvent("e1", gpus: 4, start: start, end: end))]", 409, "different content")
            // Tenants cannot post usage, not even their own.
            try await refused(usageEvent("t1", start: start, end: end), 403, "operator", key: acme)
            try await refused(usageEvent("f1", start: start, end: end.adding(seconds: 3600)), 400, "in the future")
            try await refused(
                usageEvent("l1", start: start.adding(seconds: -40 * 86400), end: end.adding(seconds: -40 * 86400)), 409,
                "late-usage window")
            try await refused(usageEvent("g1", gpus: -1, start: start, end: end), 400, "gpus")
            try await refused(usageEvent("o1", org: "ghost", start: start, end: end), 404, "org 'ghost'")
            try await refused(
                usageEvent("s1", start: start, end: end).replacingOccurrences(of: "\"1.0\"", with: "\"0.3\""), 400,
                "events[0].specversion")
            try await refused(
                "[\(usageEvent("ok", start: start, end: end)),\(usageEvent("bad", start: start, end: end).replacingOccurrences(of: "\"gpus\":8", with: "\"gpus\":\"8\""))]",
                400, "events[1].data.gpus")
            try await refused("{not json", 400, "JSON")
            try await refused("[]", 400, "empty")
            // One bad event refuses the whole batch: "ok" was not counted.
            #expect(await cloud.seq == seq)
            #expect(await cloud.plane.read { $0.billing.ledger.balance(.receivable("acme")).description } == "54.20")
        }
    }

    @Test func pricesAreSetByOperatorsAndSeenByTenants() async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        try await cloud.app().test(.router) { client in
            let set = try await client.call(
                .post, "/v1/prices", key: cloud.admin,
                body:
                    #"{"prices":[{"gpu":"H100","region":"us-east","tier":"spot","price":"2.10"}],"org_prices":[{"org":"acme","tier":"on-demand","discount":"15%"}]}"#
            )
            #expect(set.status == 201, "\(set.text)")
            let list = try await client.call(.get, "/v1/prices?gpu=H100&tier=on-demand", key: acme)
            let row = try #require(list.items.first { $0["region"] as? String == "*" })
            #expect(row["price"] as? String == "6.16")
            #expect(row["your_price"] as? String == "5.236")
            let history = try await client.call(.get, "/v1/prices/history?gpu=H100&tier=spot&region=us-east", key: acme)
            #expect(history.items.map { $0["price"] as? String } == ["2.10"])
            for (body, status, text) in [
                (#"{"prices":[{"gpu":"H100","tier":"spot","price":"-1"}]}"#, 400, "negative"),
                (#"{"prices":[{"gpu":"H999","tier":"spot","price":"1"}]}"#, 400, "unknown GPU model"),
                (#"{"prices":[{"gpu":"H100","tier":"spot","price":"1"}],"currency":"XYZ"}"#, 400, "unknown currency"),
                (#"{"prices":[{"gpu":"H100","tier":"spot","price":"1"}],"currency":"EUR"}"#, 400, "bills in USD"),
                (
                    #"{"prices":[{"gpu":"H100","tier":"spot","price":"1","from":"2020-01-01T00:00:00Z"}]}"#, 409,
                    "history is not rewritten"
                ),
                (#"{"prices":[{"gpu":"H100","tier":"gold","price":"1"}]}"#, 400, "tier"),
                (#"{"prices":[{"gpu":"H100","tier":"spot","price":"99999999999999"}]}"#, 400, "larger than the limit"),
            ] {
                let r = try await client.call(.post, "/v1/prices", key: cloud.admin, body: body)
                #expect(r.status == status, "\(body): \(r.text)")
                #expect(r.errorMessage.contains(text), "\(r.errorMessage)")
            }
            let tenant = try await client.call(
                .post, "/v1/prices", key: acme, body: #"{"prices":[{"gpu":"H100","tier":"spot","price":"0.01"}]}"#)
            #expect(tenant.status == 403)
            // Quotes carry the caller's price and the projected cost of max_duration.
            let quote = try await client.call(
                .post, "/v1/quotes", key: acme, body: jobBody("H100:8", extra: #""max_duration":"2h""#))
            let onDemand = try #require(quote.items.first { $0["tier"] as? String == "on-demand" })
            #expect(onDemand["price_per_gpu_hour"] as? String == "5.236")
            #expect(onDemand["projected_cost"] as? String == "83.78")  // 16 GPU-h x 5.236 = 83.776
        }
    }

    @Test func invoicesAreIssuedPerOrgAndOnlyItsOwnerSeesThem() async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        let beta = try await cloud.tenant("beta")
        let now = WallClock.now()
        let last = Period(containing: now).previous
        // Usage two days before this month began: last month, inside the late window.
        let end = Period(containing: now).start.adding(seconds: -2 * 86400)
        try await cloud.app().test(.router) { client in
            let posted = try await client.call(
                .post, "/v1/usage/events", key: cloud.admin, body: usageEvent("x1", start: end.adding(seconds: -1800), end: end))
            #expect(posted.status == 200, "\(posted.text)")
            #expect(
                try await client.call(.post, "/v1/orgs/acme/deposits", key: cloud.admin, body: #"{"amount":"10"}"#).status == 201)
            #expect(try await client.call(.post, "/v1/orgs/acme/deposits", key: acme, body: #"{"amount":"10"}"#).status == 403)
            #expect(
                try await client.call(.post, "/v1/orgs/acme/deposits", key: cloud.admin, body: #"{"amount":"-10"}"#).status == 400
            )
            #expect(
                try await client.call(
                    .post, "/v1/orgs/acme/deposits", key: cloud.admin, body: #"{"amount":"10","currency":"EUR"}"#
                )
                .status == 400)
            let credit = try await client.call(
                .post, "/v1/orgs/acme/credits", key: cloud.admin, body: #"{"amount":"1.50","description":"goodwill"}"#)
            #expect(credit.status == 201)
            #expect(try await client.call(.post, "/v1/periods/\(Period(containing: now))/close", key: cloud.admin).status == 409)
            #expect(try await client.call(.post, "/v1/periods/\(last)/close", key: acme).status == 403)
            let closed = try await client.call(.post, "/v1/periods/\(last)/close", key: cloud.admin)
            #expect(closed.status == 200)
            #expect(closed["status"] as? String == "closed")
            let id = "inv-\(last)-acme"
            let mine = try await client.call(.get, "/v1/invoices", key: acme)
            #expect(mine.items.map { $0["id"] as? String } == [id])
            let invoice = try await client.call(.get, "/v1/invoices/\(id)", key: acme)
            #expect(invoice["total"] as? String == "24.64")  // 4 GPU-h x 6.16
            #expect(invoice["paid_from_wallet"] as? String == "10.00")
            #expect(invoice["amount_due"] as? String == "14.64")
            // Another tenant sees neither the invoice nor its existence.
            #expect(try await client.call(.get, "/v1/invoices", key: beta).items.isEmpty)
            #expect(try await client.call(.get, "/v1/invoices/\(id)", key: beta).status == 404)
            #expect(try await client.call(.get, "/v1/invoices/preview-acme", key: beta).status == 404)
            #expect(try await client.call(.get, "/v1/ledger/accounts?org=acme", key: beta).status == 404)
            let betaLedger = try await client.call(.get, "/v1/ledger/accounts", key: beta)
            #expect((betaLedger["accounts"] as? [[String: Any]])?.isEmpty == true)
            #expect(betaLedger["balanced"] == nil)
            #expect(try await client.call(.get, "/v1/ledger/transfers", key: beta).items.isEmpty)
            // The credit was granted this month: it is on the preview, not on last month's invoice.
            let preview = try await client.call(.get, "/v1/invoices/preview-acme", key: acme)
            #expect(preview["credits_total"] as? String == "1.50")
            // Formats.
            let csv = try await client.call(.get, "/v1/invoices/\(id)?format=csv", key: acme)
            #expect(csv.text.contains("\(id),acme,\(last),usage,,default,H100,us-east,on-demand,14400,4,6.16,24.64,USD"))
            let html = try await client.call(.get, "/v1/invoices/\(id)?format=html", key: acme)
            #expect(html.text.hasPrefix("<!doctype html>") && html.text.contains("Amount due"))
            let focus = try await client.call(.get, "/v1/invoices/\(id)?format=focus", key: acme)
            let focusLines = focus.text.split(separator: "\n")
            #expect(focusLines.first == Substring(Invoice.focusColumns.joined(separator: ",")))
            #expect(focusLines.count == 2)
            #expect(focusLines.last?.hasPrefix("24.64,acme,") == true)
            #expect(try await client.call(.get, "/v1/invoices/\(id)?format=pdf", key: acme).status == 400)
            let operatorLedger = try await client.call(.get, "/v1/ledger/accounts", key: cloud.admin)
            #expect(operatorLedger["balanced"] as? Bool == true)
        }
    }

    @Test func budgetsAndCreditLimitsThroughTheAPI() async throws {
        let cloud = try await TestCloud.make()
        let acmeAdmin = try await cloud.tenant("acme", role: .orgAdmin)
        let acmeMember = try await cloud.tenant("acme")
        let beta = try await cloud.tenant("beta", role: .orgAdmin)
        try await cloud.app().test(.router) { client in
            let set = try await client.call(.put, "/v1/budgets", key: acmeAdmin, body: #"{"monthly":"50","alerts":[50,100]}"#)
            #expect(set.status == 200, "\(set.text)")
            #expect(try await client.call(.put, "/v1/budgets", key: acmeMember, body: #"{"monthly":"1"}"#).status == 403)
            #expect(try await client.call(.put, "/v1/budgets", key: beta, body: #"{"org":"acme","monthly":"1"}"#).status == 404)
            #expect(try await client.call(.put, "/v1/budgets", key: acmeAdmin, body: #"{"monthly":"-1"}"#).status == 400)
            #expect(
                try await client.call(.put, "/v1/budgets", key: acmeAdmin, body: #"{"monthly":"1","alerts":[0]}"#).status == 400)
            let mine = try await client.call(.get, "/v1/budgets", key: acmeMember)
            #expect(mine.items.first?["monthly"] as? String == "50.00")
            #expect(try await client.call(.get, "/v1/budgets", key: beta).items.isEmpty)
            // 8 GPUs x 2 h x 6.16 = 98.56 is over the 50.00 budget: refused, and the answer says why.
            let refused = try await client.call(
                .post, "/v1/jobs", key: acmeMember, body: jobBody("H100:8", extra: #""max_duration":"2h""#))
            #expect(refused.status == 409)
            #expect(
                refused.errorMessage.hasPrefix("budget: projected cost 98.56 exceeds the 50.00 left"), "\(refused.errorMessage)")
            #expect(refused.errorMessage.contains("as spot it would cost at most 39.36"))
            // A quote of the same spec still prices it, with the refusal beside the price.
            let quote = try await client.call(
                .post, "/v1/quotes", key: acmeMember, body: jobBody("H100:8", extra: #""max_duration":"2h""#))
            #expect(quote.status == 200, "\(quote.text)")
            let onDemand = quote.items.first { $0["tier"] as? String == "on-demand" }
            #expect(onDemand?["projected_cost"] as? String == "98.56")
            #expect((onDemand?["refused_because"] as? String)?.hasPrefix("budget: projected cost 98.56") == true)
            let spotQuote = quote.items.first { $0["tier"] as? String == "spot" }
            #expect(spotQuote?["projected_cost"] as? String == "39.36")
            #expect(spotQuote?["refused_because"] == nil || spotQuote?["refused_because"] is NSNull)
            let spot = try await client.call(
                .post, "/v1/jobs", key: acmeMember, body: jobBody("H100:8", extra: #""max_duration":"2h","on_budget":"spot""#))
            #expect(spot.status == 201, "\(spot.text)")
            #expect(spot["tier"] as? String == "spot")

            #expect(
                try await client.call(.put, "/v1/orgs/acme/credit-limit", key: acmeAdmin, body: #"{"limit":"10"}"#).status == 403)
            let limited = try await client.call(.put, "/v1/orgs/beta/credit-limit", key: cloud.admin, body: #"{"limit":"10"}"#)
            #expect(limited["spendable"] as? String == "10.00")
            let money = try await client.call(.get, "/v1/orgs/beta/money", key: beta)
            #expect(money["credit_limit"] as? String == "10.00")
            #expect(try await client.call(.get, "/v1/orgs/beta/money", key: acmeMember).status == 404)
        }
    }

    @Test func commitmentsAndSLAsThroughTheAPI() async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme", role: .orgAdmin)
        let beta = try await cloud.tenant("beta", role: .orgAdmin)
        let month = Period(containing: WallClock.now())
        try await cloud.app().test(.router) { client in
            let body = #"{"org":"acme","amount":"12000","start":"\#(month)","months":12,"discount":"20%"}"#
            #expect(try await client.call(.post, "/v1/commitments", key: acme, body: body).status == 403)
            let created = try await client.call(.post, "/v1/commitments", key: cloud.admin, body: body)
            #expect(created.status == 201, "\(created.text)")
            #expect(created["discount"] as? String == "20%")
            #expect(created["remaining"] as? String == "12000.00")
            #expect(try await client.call(.post, "/v1/commitments", key: cloud.admin, body: body).status == 409)
            let bad = #"{"org":"acme","amount":"-5","start":"\#(month.next.next.next)"}"#
            #expect(try await client.call(.post, "/v1/commitments", key: cloud.admin, body: bad).status == 400)
            #expect(try await client.call(.get, "/v1/commitments", key: acme).items.count == 1)
            #expect(try await client.call(.get, "/v1/commitments", key: beta).items.isEmpty)

            let sla = #"{"objective":"on_demand_start","seconds":300,"credit":"10%","org":"acme"}"#
            #expect(try await client.call(.post, "/v1/slas", key: acme, body: sla).status == 403)
            #expect(try await client.call(.post, "/v1/slas", key: cloud.admin, body: sla).status == 201)
            #expect(
                try await client.call(
                    .post, "/v1/slas", key: cloud.admin, body: #"{"objective":"uptime","seconds":1,"credit":"5%"}"#
                )
                .status == 400)
            #expect(try await client.call(.get, "/v1/slas", key: acme).items.count == 1)
            #expect(try await client.call(.get, "/v1/slas", key: beta).items.isEmpty)

            let cost = try await client.call(.post, "/v1/providers/aws/costs", key: cloud.admin, body: #"{"amount":"500"}"#)
            #expect(cost.status == 201)
            #expect(cost["owed"] as? String == "500.00")
            #expect(try await client.call(.post, "/v1/providers/aws/costs", key: acme, body: #"{"amount":"5"}"#).status == 403)
            #expect(
                try await client.call(.post, "/v1/providers/aws/payments", key: cloud.admin, body: #"{"amount":"600"}"#).status
                    == 409)
            let paid = try await client.call(.post, "/v1/providers/aws/payments", key: cloud.admin, body: #"{"amount":"500"}"#)
            #expect(paid["owed"] as? String == "0.00")
        }
    }
}
