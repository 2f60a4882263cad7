import Foundation
import Hummingbird
import StratusControl
import StratusCore
import StratusLedger

/// Prices, usage ingestion, the ledger and invoices.
extension API {
    struct PriceView: Encodable {
        let gpu: String
        let region: String
        let tier: String
        /// Per GPU-hour.
        let price: String
        let from: String
        let currency: String
        /// What the caller's org pays, where it differs (negotiated price or discount).
        let yourPrice: String?
    }

    struct InvoiceLineView: Encodable {
        let kind: String
        let forPeriod: String?
        let project: String
        let gpu: String
        let region: String
        let tier: String
        let gpuSeconds: Int64
        let gpuHours: String
        let unitPrice: String
        let listPrice: String
        let amount: String
    }

    struct CreditView: Encodable {
        let id: String
        let kind: String
        let description: String
        let amount: String
    }

    struct InvoiceView: Encodable {
        let id: String
        let org: String
        let period: String
        let status: String
        let currency: String
        let issuedAt: String
        let lines: [InvoiceLineView]
        let credits: [CreditView]
        let fees: [CreditView]
        let usageTotal: String
        let adjustmentsTotal: String
        let creditsTotal: String
        let feesTotal: String
        let total: String
        let paidFromWallet: String
        let amountDue: String

        init(_ i: Invoice, status: String) {
            id = i.id
            org = i.org.rawValue
            period = i.period.description
            self.status = status
            currency = i.currency.rawValue
            issuedAt = i.issuedAt.description
            lines = i.lines.map { l in
                InvoiceLineView(
                    kind: l.kind.rawValue, forPeriod: l.forPeriod?.description, project: l.project, gpu: l.gpuModel,
                    region: l.region, tier: l.tier.rawValue, gpuSeconds: l.gpuSeconds, gpuHours: Invoice.gpuHours(l.gpuSeconds),
                    unitPrice: l.unitPrice.description, listPrice: l.listPrice.description, amount: l.amount.description)
            }
            credits = i.credits.map {
                CreditView(id: $0.id, kind: $0.kind.rawValue, description: $0.description, amount: $0.amount.description)
            }
            fees = i.fees.map { CreditView(id: $0.id, kind: "fee", description: $0.description, amount: $0.amount.description) }
            feesTotal = i.feesTotal.description
            usageTotal = i.usageTotal.description
            adjustmentsTotal = i.adjustmentsTotal.description
            creditsTotal = i.creditsTotal.description
            total = i.total.description
            paidFromWallet = i.paidFromWallet.description
            amountDue = i.amountDue.description
        }
    }

    struct AccountView: Encodable {
        let account: String
        /// In the account's normal direction: what a receivable is owed, what a wallet holds.
        let balance: String
        let debitsPosted: String
        let creditsPosted: String
        let debitsPending: String
        let creditsPending: String
    }

    static func accountView(_ id: AccountID, _ b: AccountBalance) -> AccountView {
        AccountView(
            account: id.rawValue, balance: b.balance(of: id).description, debitsPosted: b.debitsPosted.description,
            creditsPosted: b.creditsPosted.description, debitsPending: b.debitsPending.description,
            creditsPending: b.creditsPending.description)
    }

    /// Accounts an org may see: its own.
    static func owns(_ org: OrgID, _ account: AccountID) -> Bool {
        account == .receivable(org) || account == .wallet(org)
    }

    static func tier(_ text: String, field: String) throws(StratusError) -> Tier {
        guard let t = Tier(rawValue: text) else {
            throw StratusError(
                .invalidArgument, "\(field): '\(text)' is not one of \(Tier.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return t
    }

    static func time(_ text: String?, field: String, now: Timestamp) throws(StratusError) -> Timestamp {
        guard let text else { return Timestamp(seconds: now.milliseconds / 1000) }
        if text == "now" { return Timestamp(seconds: now.milliseconds / 1000) }
        guard let t = ISO8601.parse(text) else {
            throw StratusError(.invalidArgument, "\(field): '\(text)' is not an RFC 3339 time")
        }
        return t
    }

    func invoiceForCaller(_ id: String, _ p: Principal) async throws -> (Invoice, String) {
        let now = await plane.now
        if id.hasPrefix("preview-") {
            // preview-ORG: the month so far.
            let org = OrgID(String(id.dropFirst("preview-".count)))
            try p.requireRead(org, "invoice", id)
            guard await plane.read({ $0.orgs[org] }) != nil else { throw StratusError.notFound("invoice", id) }
            return (await plane.read { $0.billing.preview(org: org, now: now) }, "open")
        }
        guard let invoice = await plane.read({ $0.billing.invoices[id] }) else { throw StratusError.notFound("invoice", id) }
        try p.requireRead(invoice.org, "invoice", id)
        return (invoice, "issued")
    }

    static func text(_ body: String, contentType: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: Data(body.utf8))))
    }

    func addBilling(_ v1: RouterGroup<StratusContext>) {
        v1.get("prices") { req, ctx in
            let p = try ctx.caller()
            let now = await plane.now
            let model = req.query("gpu")
            let tierFilter = try req.query("tier").map { t throws(StratusError) in try Self.tier(t, field: "tier") }
            let rows = await plane.read { s in
                s.billing.prices.list.keys.sorted().compactMap { sku -> PriceView? in
                    guard model == nil || sku.gpuModel == model, tierFilter == nil || sku.tier == tierFilter,
                        let point = s.billing.prices.listPoint(sku, at: now)
                    else { return nil }
                    let mine = p.org.flatMap { s.billing.prices.price(org: $0, sku, at: now) }
                    return PriceView(
                        gpu: sku.gpuModel, region: sku.region, tier: sku.tier.rawValue, price: point.price.description,
                        from: point.from.description, currency: s.billing.currency.rawValue,
                        yourPrice: mine == point.price ? nil : mine?.description)
                }
            }
            return JSON.response(Page(items: rows, nextCursor: nil))
        }
        v1.get("prices/history") { req, ctx in
            _ = try ctx.caller()
            guard let model = req.query("gpu"), let tierText = req.query("tier") else {
                throw StratusError(.invalidArgument, "gpu and tier: required (e.g. ?gpu=H100&tier=spot&region=us-east)")
            }
            let sku = SKU(
                gpuModel: model, region: req.query("region") ?? SKU.anyRegion, tier: try Self.tier(tierText, field: "tier"))
            let limit = try Pagination.limit(req, byDefault: Limits.maxPageSize)
            let points = await plane.read { $0.billing.prices.list[sku] ?? [] }
            struct Point: Encodable {
                let from: String
                let price: String
            }
            // Newest first.
            return JSON.response(
                Page(
                    items: points.suffix(limit).reversed().map { Point(from: $0.from.description, price: $0.price.description) },
                    nextCursor: nil))
        }
        v1.post("prices") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("setting prices")
            let now = await plane.now
            var body = try SpecObject(try await JSON.body(req), path: "")
            if let c = try body.string("currency") {
                let currency = try Currency.parse(c, field: "currency")
                let mine = await plane.read { $0.billing.currency }
                guard currency == mine else {
                    throw StratusError(
                        .invalidArgument, "currency: this deployment bills in \(mine.rawValue), not \(currency.rawValue)")
                }
            }
            var list: [ListPrice] = []
            for (i, v) in (try body.array("prices") ?? []).enumerated() {
                var o = try SpecObject(v, path: "prices[\(i)]")
                let gpu = try o.requiredString("gpu")
                let region = try o.string("region") ?? SKU.anyRegion
                let tier = try Self.tier(try o.requiredString("tier"), field: "prices[\(i)].tier")
                let sku = SKU(gpuModel: GPUCatalog.model(named: gpu)?.name ?? gpu, region: region, tier: tier)
                let price = try Money.parse(try o.requiredString("price"), field: "prices[\(i)].price")
                let from = try Self.time(try o.string("from"), field: "prices[\(i)].from", now: now)
                try o.finish()
                list.append(ListPrice(sku: sku, point: PricePoint(from: from, price: price)))
            }
            var orgPrices: [OrgPrice] = []
            for (i, v) in (try body.array("org_prices") ?? []).enumerated() {
                var o = try SpecObject(v, path: "org_prices[\(i)]")
                let org = OrgID(try o.requiredString("org"))
                let gpu = try o.string("gpu") ?? "*"
                let region = try o.string("region") ?? "*"
                let tier = try Self.tier(try o.requiredString("tier"), field: "org_prices[\(i)].tier")
                let price = try o.string("price").map { t throws(StratusError) in
                    try Money.parse(t, field: "org_prices[\(i)].price")
                }
                let discount = try o.string("discount").map { t throws(StratusError) -> Int in
                    let text = t.hasSuffix("%") ? String(t.dropLast()) : t
                    guard let bps = DecimalText.parse(text, scale: 100), bps >= 0, bps <= 10_000 else {
                        throw StratusError(.invalidArgument, "org_prices[\(i)].discount: '\(t)' is not a percentage (e.g. 15%)")
                    }
                    return Int(bps)
                }
                orgPrices.append(
                    OrgPrice(
                        org: org, gpuModel: gpu == "*" ? gpu : GPUCatalog.model(named: gpu)?.name ?? gpu,
                        region: region, tier: tier,
                        from: try Self.time(try o.string("from"), field: "org_prices[\(i)].from", now: now), price: price,
                        discountBasisPoints: discount))
                try o.finish()
            }
            try body.finish()
            let outcome = try await plane.execute(.setPrices(SetPrices(list: list, orgPrices: orgPrices)))
            return JSON.response(["result": outcome.id], status: .created)
        }

        v1.post("usage/events") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("posting usage events")
            let events = try CloudEvents.decode(try await JSON.rawBody(req, limit: Limits.maxUsageBodyBytes))
            let outcomes = try await plane.recordUsage(events)
            struct Result: Encodable {
                let counted: Int
                let duplicates: Int
                let results: [[String: String]]
            }
            let counted = outcomes.filter { $0 == .counted }.count
            return JSON.response(
                Result(
                    counted: counted, duplicates: outcomes.count - counted,
                    results: zip(events, outcomes).map { ["id": $0.id, "source": $0.source, "outcome": $1.rawValue] }))
        }

        v1.get("ledger/accounts") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            struct Ledger: Encodable {
                let currency: String
                let accounts: [AccountView]
                /// Operators only: the sums over the whole book.
                let totalDebits: String?
                let totalCredits: String?
                let balanced: Bool?
                let transfers: UInt64?
            }
            let view = await plane.read { s in
                let l = s.billing.ledger
                let rows = l.accounts.keys.sorted().filter { id in
                    if let org = filter ?? p.org { return Self.owns(org, id) }
                    return true
                }.map { Self.accountView($0, l.accounts[$0]!) }
                let op = p.isOperator && filter == nil
                return Ledger(
                    currency: s.billing.currency.rawValue, accounts: rows, totalDebits: op ? l.totalDebits.description : nil,
                    totalCredits: op ? l.totalCredits.description : nil, balanced: op ? l.checkBalanced() : nil,
                    transfers: op ? l.transferCount : nil)
            }
            return JSON.response(view)
        }
        v1.get("ledger/transfers") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p) ?? p.org
            struct TransferView: Encodable {
                let id: UInt64
                let debit: String
                let credit: String
                let amount: String
                let at: String
                let code: String
                let ref: String
            }
            let limit = try Pagination.limit(req)
            let rows = await plane.read { s in
                s.billing.ledger.journal.reversed().lazy.filter { t in
                    guard let org = filter else { return true }
                    return Self.owns(org, t.debit) || Self.owns(org, t.credit)
                }.prefix(limit).map {
                    TransferView(
                        id: $0.id, debit: $0.debit.rawValue, credit: $0.credit.rawValue, amount: $0.amount.description,
                        at: $0.at.description, code: $0.code.rawValue, ref: $0.ref)
                }
            }
            return JSON.response(Page(items: Array(rows), nextCursor: nil))
        }

        v1.post("orgs/:org/deposits") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("recording a deposit")
            let org = OrgID(try ctx.parameters.require("org"))
            var body = try SpecObject(try await JSON.body(req), path: "")
            let amount = try Money.parse(try body.requiredString("amount"), field: "amount")
            let currency = try Currency.parse(try body.string("currency") ?? "USD", field: "currency")
            let reference = try body.string("reference") ?? ""
            try body.finish()
            try await plane.execute(.deposit(Deposit(org: org, amount: amount, currency: currency, reference: reference)))
            let balance = await plane.read { $0.billing.ledger.balance(.wallet(org)) }
            return JSON.response(["org": org.rawValue, "wallet": balance.description], status: .created)
        }
        v1.post("orgs/:org/credits") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("granting a credit")
            let org = OrgID(try ctx.parameters.require("org"))
            var body = try SpecObject(try await JSON.body(req), path: "")
            let amount = try Money.parse(try body.requiredString("amount"), field: "amount")
            let description = try body.requiredString("description")
            try body.finish()
            let outcome = try await plane.execute(.grantCredit(GrantCredit(org: org, amount: amount, description: description)))
            return JSON.response(["id": outcome.id, "org": org.rawValue, "amount": amount.description], status: .created)
        }

        v1.get("invoices") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let periodFilter = try req.query("period").map { t throws(StratusError) -> Period in
                guard let period = Period.parse(t) else { throw StratusError(.invalidArgument, "period: '\(t)' is not YYYY-MM") }
                return period
            }
            let items = await plane.read { s in
                s.billing.invoices.values.filter {
                    p.canRead($0.org) && (filter == nil || $0.org == filter) && (periodFilter == nil || $0.period == periodFilter)
                }.sorted { ($0.period, $0.org) > ($1.period, $1.org) }
            }
            return JSON.response(
                try Pagination.page(items, key: \.id, request: req, view: { InvoiceView($0, status: "issued") }))
        }
        v1.get("invoices/:id") { req, ctx in
            let p = try ctx.caller()
            let (invoice, status) = try await invoiceForCaller(try ctx.parameters.require("id"), p)
            let orgName = await plane.read { $0.orgs[invoice.org]?.displayName ?? invoice.org.rawValue }
            switch req.query("format") ?? "json" {
            case "json": return JSON.response(InvoiceView(invoice, status: status))
            case "csv": return Self.text(invoice.csv, contentType: "text/csv; charset=utf-8")
            case "html": return Self.text(invoice.htmlPage(orgName: orgName), contentType: "text/html; charset=utf-8")
            case "focus": return Self.text(invoice.focusCSV(orgName: orgName), contentType: "text/csv; charset=utf-8")
            case let other:
                throw StratusError(.invalidArgument, "format: '\(other)' is not one of json, csv, html, focus")
            }
        }
        v1.post("periods/:period/close") { _, ctx in
            let p = try ctx.caller()
            try p.requireOperator("closing a billing period")
            let text = try ctx.parameters.require("period")
            guard let period = Period.parse(text) else {
                throw StratusError(.invalidArgument, "period: '\(text)' is not YYYY-MM")
            }
            let outcome = try await plane.execute(.closePeriod(ClosePeriod(period: period)))
            let issued = await plane.read { s in s.billing.invoices.values.filter { $0.period == period }.count }
            if case .unchanged = outcome {
                return JSON.response(["period": period.description, "status": "already closed", "invoices": "\(issued)"])
            }
            return JSON.response(["period": period.description, "status": "closed", "invoices": "\(issued)"])
        }
        addBudgets(v1)
    }

    struct BudgetView: Encodable {
        let org: String
        let project: String
        let monthly: String
        let spent: String
        let left: String
        let alertPercents: [Int]
        let enforce: Bool
    }

    struct MoneyStanding: Encodable {
        let org: String
        let currency: String
        let wallet: String
        let owed: String
        let held: String
        let creditLimit: String?
        /// What the org may still commit; nil when it has no credit limit.
        let spendable: String?
    }

    func addBudgets(_ v1: RouterGroup<StratusContext>) {
        v1.get("budgets") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let now = await plane.now
            struct Alert: Encodable {
                let org: String
                let project: String
                let period: String
                let percent: Int
                let spent: String
                let budget: String
                let at: String
            }
            struct Budgets: Encodable {
                let items: [BudgetView]
                let alerts: [Alert]
            }
            let view = await plane.read { s in
                let visible = { (org: OrgID) in p.canRead(org) && (filter == nil || org == filter) }
                let items = s.billing.budgets.values.filter { visible($0.org) }.sorted {
                    ($0.org, $0.project) < ($1.org, $1.project)
                }
                .prefix(Limits.maxPageSize).map { b in
                    let spent = s.billing.budgetSpent(b.org, b.project, now: now)
                    return BudgetView(
                        org: b.org.rawValue, project: b.project, monthly: b.monthly.description, spent: spent.description,
                        left: Money(micros: b.monthly.micros - spent.micros).description, alertPercents: b.alertPercents,
                        enforce: b.enforce)
                }
                let alerts = s.billing.alerts.reversed().filter { visible($0.org) }.prefix(Limits.maxPageSize).map {
                    Alert(
                        org: $0.org.rawValue, project: $0.project, period: $0.period.description, percent: $0.percent,
                        spent: $0.spent.description, budget: $0.budget.description, at: $0.at.description)
                }
                return Budgets(items: Array(items), alerts: Array(alerts))
            }
            return JSON.response(view)
        }
        v1.put("budgets") { req, ctx in
            let p = try ctx.caller()
            var body = try SpecObject(try await JSON.body(req), path: "")
            let org = try targetOrg(body.string("org"), p)
            try p.requireAdmin(org, "budget")
            let project = try body.string("project") ?? InternalOrg.defaultProject
            let monthly = try Money.parse(try body.requiredString("monthly"), field: "monthly")
            let alerts = try (body.array("alerts") ?? [.int(50), .int(80), .int(100)]).map { v throws(StratusError) -> Int in
                guard case .int(let n) = v, n >= 1, n <= 1000 else {
                    throw StratusError(.invalidArgument, "alerts: percentages between 1 and 1000")
                }
                return Int(n)
            }
            let enforce = try body.bool("enforce") ?? true
            try body.finish()
            try await plane.execute(
                .setBudget(Budget(org: org, project: project, monthly: monthly, alertPercents: alerts, enforce: enforce)))
            return JSON.response(["org": org.rawValue, "project": project, "monthly": monthly.description])
        }
        v1.put("orgs/:org/credit-limit") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("setting a credit limit")
            let org = OrgID(try ctx.parameters.require("org"))
            var body = try SpecObject(try await JSON.body(req), path: "")
            let limit = try body.string("limit").map { t throws(StratusError) in try Money.parse(t, field: "limit") }
            try body.finish()
            try await plane.execute(.setCreditLimit(SetCreditLimit(org: org, limit: limit)))
            return JSON.response(try await standing(org, p))
        }
        v1.post("commitments") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("creating a commitment")
            var body = try SpecObject(try await JSON.body(req), path: "")
            let org = OrgID(try body.requiredString("org"))
            let amount = try Money.parse(try body.requiredString("amount"), field: "amount")
            let startText = try body.requiredString("start")
            guard let start = Period.parse(startText) else {
                throw StratusError(.invalidArgument, "start: '\(startText)' is not YYYY-MM")
            }
            let months = try body.int("months") ?? 12
            let discountText = try body.string("discount") ?? "0"
            guard
                let bps = DecimalText.parse(
                    discountText.hasSuffix("%") ? String(discountText.dropLast()) : discountText, scale: 100)
            else { throw StratusError(.invalidArgument, "discount: '\(discountText)' is not a percentage (e.g. 20%)") }
            try body.finish()
            let outcome = try await plane.execute(
                .createCommitment(
                    CreateCommitment(
                        org: org, amount: amount, start: start, months: Int(clamping: months),
                        discountBasisPoints: Int(clamping: bps))))
            let now = await plane.now
            let c = await plane.read { $0.billing.commitments[outcome.id]! }
            return JSON.response(CommitmentView(c, now: now), status: .created)
        }
        v1.get("commitments") { req, ctx in
            let p = try ctx.caller()
            let filter = try orgFilter(req, p)
            let now = await plane.now
            let rows = await plane.read { s in
                s.billing.commitments.values.filter { p.canRead($0.org) && (filter == nil || $0.org == filter) }
                    .sorted { ($0.org, $0.id) < ($1.org, $1.id) }.prefix(Limits.maxPageSize).map { CommitmentView($0, now: now) }
            }
            return JSON.response(Page(items: Array(rows), nextCursor: nil))
        }
        v1.post("slas") { req, ctx in
            let p = try ctx.caller()
            try p.requireOperator("creating an SLA")
            var body = try SpecObject(try await JSON.body(req), path: "")
            let org = try body.string("org").map { OrgID($0) }
            let kind = try body.requiredString("objective")
            let seconds = try body.int("seconds") ?? -1
            let target = try body.string("target")
            let objective: SLAObjective
            switch kind {
            case "on_demand_start": objective = .onDemandStartSeconds(seconds)
            case "spot_notice": objective = .spotNoticeSeconds(seconds)
            case "reserved_availability":
                guard let target else { throw StratusError(.invalidArgument, "target: required, e.g. 99.5%") }
                let text = target.hasSuffix("%") ? String(target.dropLast()) : target
                guard let percentTenths = DecimalText.parse(text.trimmingCharacters(in: .whitespaces), scale: 10) else {
                    throw StratusError(.invalidArgument, "target: '\(target)' is not a percentage with at most one decimal")
                }
                objective = .reservedAvailabilityPermille(percentTenths)
            default:
                throw StratusError(
                    .invalidArgument, "objective: '\(kind)' is not on_demand_start, spot_notice or reserved_availability")
            }
            let creditText = try body.requiredString("credit")
            guard let percent = Int(creditText.hasSuffix("%") ? String(creditText.dropLast()) : creditText) else {
                throw StratusError(.invalidArgument, "credit: '\(creditText)' is not a whole percentage (e.g. 10%)")
            }
            try body.finish()
            let outcome = try await plane.execute(.createSLA(CreateSLA(org: org, objective: objective, creditPercent: percent)))
            return JSON.response(["id": outcome.id], status: .created)
        }
        v1.get("slas") { _, ctx in
            let p = try ctx.caller()
            struct View: Encodable {
                let id: String
                let org: String?
                let objective: String
                let creditPercent: Int
            }
            let rows = await plane.read { s in
                s.slas.filter { $0.org == nil || p.canRead($0.org!) }.map {
                    View(id: $0.id, org: $0.org?.rawValue, objective: $0.objective.description, creditPercent: $0.creditPercent)
                }
            }
            return JSON.response(Page(items: rows, nextCursor: nil))
        }
        v1.post("providers/:provider/costs") { req, ctx in
            try await providerCost(req, ctx, kind: .cost)
        }
        v1.post("providers/:provider/payments") { req, ctx in
            try await providerCost(req, ctx, kind: .payment)
        }
        v1.get("orgs/:org/money") { _, ctx in
            let p = try ctx.caller()
            let org = OrgID(try ctx.parameters.require("org"))
            return JSON.response(try await standing(org, p))
        }
    }

    /// Capacity bought from another cloud: its invoices (cost -> payable) and our payments
    /// of them (payable -> cash).
    func providerCost(_ req: Request, _ ctx: StratusContext, kind: ProviderCost.Kind) async throws -> Response {
        let p = try ctx.caller()
        try p.requireOperator("recording what capacity bought from others costs")
        let provider = try ctx.parameters.require("provider")
        var body = try SpecObject(try await JSON.body(req), path: "")
        let amount = try Money.parse(try body.requiredString("amount"), field: "amount")
        let currency = try Currency.parse(try body.string("currency") ?? "USD", field: "currency")
        let reference = try body.string("reference") ?? ""
        try body.finish()
        try await plane.execute(
            .recordProviderCost(
                ProviderCost(provider: provider, kind: kind, amount: amount, currency: currency, reference: reference)))
        let owed = await plane.read { $0.billing.ledger.balance(.payable(provider)) }
        let cost = await plane.read { $0.billing.ledger.balance(.cost(provider)) }
        return JSON.response(["provider": provider, "cost": cost.description, "owed": owed.description], status: .created)
    }

    func standing(_ org: OrgID, _ p: Principal) async throws -> MoneyStanding {
        try p.requireRead(org, "org", org.rawValue)
        guard
            let view = await plane.read({ s -> MoneyStanding? in
                guard s.orgs[org] != nil else { return nil }
                let l = s.billing.ledger
                return MoneyStanding(
                    org: org.rawValue, currency: s.billing.currency.rawValue, wallet: l.balance(.wallet(org)).description,
                    owed: l.balance(.receivable(org)).description, held: l.pendingDebits(.receivable(org)).description,
                    creditLimit: s.billing.creditLimits[org]?.description, spendable: s.billing.spendable(org)?.description)
            })
        else { throw StratusError.notFound("org", org.rawValue) }
        return view
    }

    struct CommitmentView: Encodable {
        let id: String
        let org: String
        let amount: String
        let start: String
        let end: String
        let months: Int
        let discount: String
        let drawn: String
        let remaining: String
        /// Spend by the end of the term at the pace so far.
        let projected: String?
        let projectedShortfall: String?
        /// Invoiced when the term closed.
        let trueUp: String?

        init(_ c: Commitment, now: Timestamp) {
            id = c.id
            org = c.org.rawValue
            amount = c.amount.description
            start = c.start.description
            end = c.end.previous.description
            months = c.months
            discount = DecimalText.format(Int64(c.discountBasisPoints), scale: 100) + "%"
            drawn = c.drawn.description
            remaining = Money(micros: max(0, c.amount.micros - c.drawn.micros)).description
            let p = c.projected(at: now)
            projected = p?.description
            projectedShortfall = p.map { Money(micros: max(0, c.amount.micros - $0.micros)).description }
            trueUp = c.trueUp?.description
        }
    }
}
