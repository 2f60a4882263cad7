import ArgumentParser
import Foundation
import StratusCore

/// List prices, negotiated prices and price history.
struct Prices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List prices per GPU model, region and tier (per GPU-hour), and their history.",
        subcommands: [List.self, Set.self, History.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        @Option(name: .long, help: "Only this GPU model.") var gpu: String?
        @Option(name: .long, help: "Only this tier.") var tier: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var params: [String] = []
                if let gpu { params.append("gpu=\(percentEncode(gpu))") }
                if let tier { params.append("tier=\(percentEncode(tier))") }
                let data = try await global.client().call(
                    .GET, "/v1/prices" + (params.isEmpty ? "" : "?" + params.joined(separator: "&")))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { r in
                    [
                        Output.str(r["gpu"]), Output.str(r["region"]), Output.str(r["tier"]),
                        "\(Output.str(r["price"])) \(Output.str(r["currency"]))", Output.str(r["your_price"]),
                        Output.str(r["from"]),
                    ]
                }
                if rows.isEmpty { return print("No prices set.") }
                Output.table(["GPU", "REGION", "TIER", "PRICE/GPU-HOUR", "YOUR PRICE", "SINCE"], rows)
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a list price from a time on (history is kept), or an org's negotiated price or discount.",
            discussion: """
                Examples:
                  stratus prices set --gpu H100 --tier on-demand --price 6.16
                  stratus prices set --gpu H100 --region us-east --tier spot --price 2.10 --from 2026-12-01T00:00:00Z
                  stratus prices set --org acme --tier on-demand --discount 15%
                """)
        @Option(name: .long, help: "GPU model (default for --org: every model).") var gpu: String?
        @Option(name: .long, help: "Region (default: every region without its own price).") var region: String?
        @Option(name: .long, help: "Tier: reserved, on-demand or spot.") var tier: String
        @Option(name: .long, help: "Price per GPU-hour, e.g. 6.16.") var price: String?
        @Option(name: .long, help: "With --org: a discount off the list price, e.g. 15%.") var discount: String?
        @Option(name: .long, help: "A negotiated price for this org only.") var org: String?
        @Option(name: .long, help: "When it applies from: now (default) or an RFC 3339 time.") var from: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var row: [String: Any] = ["tier": tier]
                if let gpu { row["gpu"] = gpu }
                if let region { row["region"] = region }
                if let price { row["price"] = price }
                if let from { row["from"] = from }
                var body: [String: Any] = [:]
                if let org {
                    row["org"] = org
                    if let discount { row["discount"] = discount }
                    body["org_prices"] = [row]
                } else {
                    guard gpu != nil, price != nil else {
                        throw CLIError("give --gpu and --price (or --org with --price or --discount)")
                    }
                    guard discount == nil else { throw CLIError("--discount is for an org's price: add --org") }
                    body["prices"] = [row]
                }
                let data = try await global.client().call(.POST, "/v1/prices", body: try jsonData(body))
                if global.json { return Output.json(data) }
                print("Price set.")
            }
        }
    }

    struct History: AsyncParsableCommand {
        @Option(name: .long, help: "GPU model.") var gpu: String
        @Option(name: .long, help: "Tier.") var tier: String
        @Option(name: .long, help: "Region (default: *).") var region: String?
        @Option(name: .long, help: "How many points, newest first.") var limit = 20
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var path = "/v1/prices/history?gpu=\(percentEncode(gpu))&tier=\(percentEncode(tier))&limit=\(limit)"
                if let region { path += "&region=\(percentEncode(region))" }
                let data = try await global.client().call(.GET, path)
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { [Output.str($0["from"]), Output.str($0["price"])] }
                if rows.isEmpty { return print("No prices for \(gpu) \(tier) in \(region ?? "*").") }
                Output.table(["FROM", "PRICE/GPU-HOUR"], rows)
            }
        }
    }
}

/// Prints a CloudEvents batch for the last hour: a starting point for a meter, and for trying `usage post`.
struct UsageExample: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "example", abstract: "Print a CloudEvents usage batch for the last hour (to edit or post).")
    @Option(name: .long) var org = "acme"
    @Option(name: .long) var project = "default"
    @Option(name: .long) var region = "local"
    @Option(name: .long, help: "How many events.") var count = 3

    func run() async throws {
        let now = Int64(Date().timeIntervalSince1970)
        let events: [[String: Any]] = (0..<max(1, min(count, Limits.maxUsageEventsPerBatch))).map { i in
            let end = Timestamp(seconds: now - Int64(60 * i))
            let start = end.adding(seconds: -3600)
            return [
                "specversion": "1.0", "type": "dev.stratus.usage.gpu", "id": "example-\(now)-\(i)",
                "source": "meter/example", "subject": "vm-\(i)", "time": end.description,
                "data": [
                    "org": org, "project": project, "gpu_model": "H100", "region": region,
                    "tier": i % 2 == 0 ? "on-demand" : "spot", "gpus": 8, "start": start.description, "end": end.description,
                ],
            ]
        }
        let data = try JSONSerialization.data(withJSONObject: events, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Posts usage measured elsewhere (CloudEvents JSON files), in batches.
struct UsagePost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "post",
        abstract: "Post usage events from a CloudEvents JSON file (one event or an array); resending is safe.")
    @Argument var file: String
    @Option(name: .long, help: "Events per request (at most 10000).") var batch = 1000
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("\(file): cannot read file") }
            guard batch >= 1, batch <= Limits.maxUsageEventsPerBatch else {
                throw CLIError("--batch: must be 1 to \(Limits.maxUsageEventsPerBatch)")
            }
            let parsed = try JSONSerialization.jsonObject(with: data)
            let events = (parsed as? [Any]) ?? [parsed]
            var counted = 0
            var duplicates = 0
            var start = 0
            while start < events.count {
                let chunk = Array(events[start..<min(events.count, start + batch)])
                let body = try JSONSerialization.data(withJSONObject: chunk)
                let reply = try await global.client().object(.POST, "/v1/usage/events", body: body)
                counted += reply["counted"] as? Int ?? 0
                duplicates += reply["duplicates"] as? Int ?? 0
                start += chunk.count
                if events.count > batch {
                    FileHandle.standardError.write(Data("\r\(start)/\(events.count) events".utf8))
                }
            }
            if events.count > batch { FileHandle.standardError.write(Data("\n".utf8)) }
            print("\(counted) counted, \(duplicates) already counted.")
        }
    }
}

struct Invoices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Invoices per org per month; the month so far; closing a month.",
        subcommands: [List.self, Show.self, Preview.self, Close.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        @Option(name: .long, help: "Only this org (operators).") var org: String?
        @Option(name: .long, help: "Only this month (YYYY-MM).") var period: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var params = ["limit=\(Limits.maxPageSize)"]
                if let org { params.append("org=\(percentEncode(org))") }
                if let period { params.append("period=\(percentEncode(period))") }
                let data = try await global.client().call(.GET, "/v1/invoices?" + params.joined(separator: "&"))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { i in
                    [
                        Output.str(i["id"]), Output.str(i["org"]), Output.str(i["period"]), Output.str(i["total"]),
                        Output.str(i["paid_from_wallet"]), Output.str(i["amount_due"]), Output.str(i["currency"]),
                    ]
                }
                if rows.isEmpty {
                    return print(
                        "No invoices yet (a month is invoiced a day after it ends; `stratus invoices preview` shows this month).")
                }
                Output.table(["ID", "ORG", "PERIOD", "TOTAL", "PREPAID", "DUE", "CURRENCY"], rows)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        @Argument(help: "Invoice ID, e.g. inv-2026-10-acme.") var id: String
        @Option(name: .long, help: "text (default), json, csv, html or focus (FinOps FOCUS 1.0 CSV).") var format = "text"
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli { try await Invoices.show(id, format: format, global: global) }
        }
    }

    struct Preview: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Charges of the month so far.")
        @Option(name: .long, help: "Org (operators; default: your own).") var org: String?
        @Option(name: .long, help: "text (default), json, csv, html or focus.") var format = "text"
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var name = org
                if name == nil {
                    let me = try await global.client().object(.GET, "/v1/whoami")
                    name = (me["org"] as? String).flatMap { $0.isEmpty ? nil : $0 }
                }
                guard let name else { throw CLIError("give --org ORG") }
                try await Invoices.show("preview-\(name)", format: format, global: global)
            }
        }
    }

    struct Close: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Close a month now (operators): issue its invoices; later usage for it becomes an adjustment.")
        @Argument(help: "Month, YYYY-MM.") var period: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.POST, "/v1/periods/\(percentEncode(period))/close")
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                print("\(period): \(Output.str(obj["status"])), \(Output.str(obj["invoices"])) invoices.")
            }
        }
    }

    static func show(_ id: String, format: String, global: GlobalOptions) async throws {
        let wire = format == "text" ? "json" : format
        let data = try await global.client().call(.GET, "/v1/invoices/\(percentEncode(id))?format=\(percentEncode(wire))")
        if format != "text" || global.json {
            if wire == "json" { return Output.json(data) }
            return FileHandle.standardOutput.write(data)
        }
        let i = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        print(
            "Invoice \(Output.str(i["id"])) (\(Output.str(i["status"]))): org \(Output.str(i["org"])), \(Output.str(i["period"])), \(Output.str(i["currency"]))"
        )
        let lines = (i["lines"] as? [[String: Any]] ?? []).map { l in
            let what = l["kind"] as? String == "adjustment" ? "adjustment for \(Output.str(l["for_period"]))" : "usage"
            return [
                Output.str(l["project"]), Output.str(l["gpu"]), Output.str(l["region"]), Output.str(l["tier"]), what,
                Output.str(l["gpu_hours"]), Output.str(l["unit_price"]), Output.str(l["amount"]),
            ]
        }
        if !lines.isEmpty {
            Output.table(["PROJECT", "GPU", "REGION", "TIER", "KIND", "GPU-HOURS", "UNIT PRICE", "AMOUNT"], lines)
        }
        for f in i["fees"] as? [[String: Any]] ?? [] {
            print("\(Output.str(f["description"])): \(Output.str(f["amount"]))")
        }
        for c in i["credits"] as? [[String: Any]] ?? [] {
            print("credit \(Output.str(c["id"])): -\(Output.str(c["amount"]))  \(Output.str(c["description"]))")
        }
        print(
            "usage \(Output.str(i["usage_total"]))  adjustments \(Output.str(i["adjustments_total"]))  blocks and true-ups \(Output.str(i["fees_total"]))  credits -\(Output.str(i["credits_total"]))"
        )
        print(
            "total \(Output.str(i["total"]))  paid from prepaid balance \(Output.str(i["paid_from_wallet"]))  due \(Output.str(i["amount_due"]))"
        )
    }
}

/// `stratus invoice show ID`, as the issue and most clouds spell it.
struct InvoiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invoice", abstract: "One invoice (same as `stratus invoices show`).",
        subcommands: [Invoices.Show.self])
}

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger", abstract: "Account balances, recent transfers, deposits and credits.",
        subcommands: [Accounts.self, Transfers.self, DepositCommand.self, CreditCommand.self, CreditLimitCommand.self],
        defaultSubcommand: Accounts.self)

    struct Accounts: AsyncParsableCommand {
        @Option(name: .long, help: "Only this org's accounts (operators).") var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(
                    .GET, "/v1/ledger/accounts" + (org.map { "?org=\(percentEncode($0))" } ?? ""))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = (obj["accounts"] as? [[String: Any]] ?? []).map { a in
                    [Output.str(a["account"]), Output.str(a["balance"]), Output.str(a["debits_pending"])]
                }
                if rows.isEmpty { print("No accounts yet.") } else { Output.table(["ACCOUNT", "BALANCE", "HELD"], rows) }
                if let balanced = obj["balanced"] as? Bool {
                    print(
                        "debits \(Output.str(obj["total_debits"])) = credits \(Output.str(obj["total_credits"])): \(balanced ? "balanced" : "NOT BALANCED")"
                    )
                }
            }
        }
    }

    struct Transfers: AsyncParsableCommand {
        @Option(name: .long, help: "Only this org's (operators).") var org: String?
        @Option(name: .long, help: "How many, newest first.") var limit = 20
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var path = "/v1/ledger/transfers?limit=\(limit)"
                if let org { path += "&org=\(percentEncode(org))" }
                let data = try await global.client().call(.GET, path)
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { t in
                    [
                        Output.str(t["id"]), Output.str(t["at"]), Output.str(t["debit"]), Output.str(t["credit"]),
                        Output.str(t["amount"]), Output.str(t["code"]), Output.str(t["ref"]),
                    ]
                }
                if rows.isEmpty { return print("No transfers yet.") }
                Output.table(["ID", "AT", "DEBIT", "CREDIT", "AMOUNT", "CODE", "REF"], rows)
            }
        }
    }

    struct DepositCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "deposit", abstract: "Record money received into an org's prepaid wallet (operators).")
        @Argument var org: String
        @Argument(help: "Amount, e.g. 500 or 99.95.") var amount: String
        @Option(name: .long, help: "Currency (must be the deployment's).") var currency = "USD"
        @Option(name: .long, help: "Payment reference.") var reference = ""
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let body: [String: Any] = ["amount": amount, "currency": currency, "reference": reference]
                let obj = try await global.client().object(
                    .POST, "/v1/orgs/\(percentEncode(org))/deposits", body: try jsonData(body))
                print("Deposited \(amount) \(currency) for \(org): wallet \(Output.str(obj["wallet"])).")
            }
        }
    }

    struct CreditCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "credit", abstract: "Grant an org a credit, shown on its next invoice (operators).")
        @Argument var org: String
        @Argument(help: "Amount, e.g. 50.") var amount: String
        @Option(name: .long, help: "Why, as the invoice shows it.") var description: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let body: [String: Any] = ["amount": amount, "description": description]
                let obj = try await global.client().object(
                    .POST, "/v1/orgs/\(percentEncode(org))/credits", body: try jsonData(body))
                print("Granted \(Output.str(obj["id"])): \(amount) to \(org).")
            }
        }
    }
}

struct Budgets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Monthly project budgets: spending, alerts at thresholds, and refusal of work over budget.",
        subcommands: [List.self, Set.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        @Option(name: .long, help: "Only this org (operators).") var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/budgets" + (org.map { "?org=\(percentEncode($0))" } ?? ""))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { b in
                    [
                        Output.str(b["org"]), Output.str(b["project"]), Output.str(b["monthly"]), Output.str(b["spent"]),
                        Output.str(b["left"]), Output.str(b["alert_percents"]),
                        (b["enforce"] as? Bool) == true ? "refuse" : "alert only",
                    ]
                }
                if rows.isEmpty { return print("No budgets.") }
                Output.table(["ORG", "PROJECT", "MONTHLY", "SPENT+HELD", "LEFT", "ALERTS %", "OVER BUDGET"], rows)
                for a in (obj["alerts"] as? [[String: Any]] ?? []).prefix(10) {
                    print(
                        "alert: \(Output.str(a["org"]))/\(Output.str(a["project"])) reached \(Output.str(a["percent"]))% of \(Output.str(a["budget"])) in \(Output.str(a["period"])) (\(Output.str(a["at"])))"
                    )
                }
            }
        }
    }

    struct Set: AsyncParsableCommand {
        @Option(name: .long, help: "Project (default: default).") var project: String?
        @Option(name: .long, help: "Monthly amount, e.g. 5000.") var monthly: String
        @Option(name: .long, help: "Alert thresholds in percent, e.g. 50,80,100.") var alerts = "50,80,100"
        @Flag(name: .long, help: "Only alert; do not refuse work over budget.") var alertOnly = false
        @Option(name: .long, help: "Org (operators).") var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let percents = try alerts.split(separator: ",").map { p -> Int in
                    guard let n = Int(p.trimmingCharacters(in: .whitespaces)) else {
                        throw CLIError("--alerts: '\(p)' is not a percentage")
                    }
                    return n
                }
                var body: [String: Any] = ["monthly": monthly, "alerts": percents, "enforce": !alertOnly]
                if let project { body["project"] = project }
                if let org { body["org"] = org }
                let data = try await global.client().call(.PUT, "/v1/budgets", body: try jsonData(body))
                if global.json { return Output.json(data) }
                print("Budget set: \(monthly) a month for \(project ?? "default").")
            }
        }
    }
}

struct CreditLimitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credit-limit", abstract: "Cap what an org may owe (operators); `none` removes the cap.")
    @Argument var org: String
    @Argument(help: "Amount, or none.") var limit: String
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let body: [String: Any] = limit == "none" ? [:] : ["limit": limit]
            let obj = try await global.client().object(
                .PUT, "/v1/orgs/\(percentEncode(org))/credit-limit", body: try jsonData(body))
            if global.json { return Output.json(try jsonData(obj)) }
            print(
                "\(org): credit limit \(Output.str(obj["credit_limit"])), may still spend \(Output.str(obj["spendable"])) (wallet \(Output.str(obj["wallet"])), owed \(Output.str(obj["owed"])), held \(Output.str(obj["held"])))."
            )
        }
    }
}

struct Commitments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Spend commitments: drawdown, projection and true-up.", subcommands: [List.self, Create.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        @Option(name: .long, help: "Only this org (operators).") var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(
                    .GET, "/v1/commitments" + (org.map { "?org=\(percentEncode($0))" } ?? ""))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { c in
                    [
                        Output.str(c["id"]), Output.str(c["org"]), Output.str(c["amount"]),
                        "\(Output.str(c["start"]))..\(Output.str(c["end"]))", Output.str(c["discount"]), Output.str(c["drawn"]),
                        Output.str(c["projected"]), Output.str(c["projected_shortfall"]), Output.str(c["true_up"]),
                    ]
                }
                if rows.isEmpty { return print("No commitments.") }
                Output.table(["ID", "ORG", "COMMITTED", "TERM", "DISCOUNT", "DRAWN", "PROJECTED", "SHORTFALL", "TRUE-UP"], rows)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a commitment (operators).",
            discussion:
                "Example: stratus commitments create --org acme --amount 120000 --start 2027-01 --months 12 --discount 20%")
        @Option(name: .long) var org: String
        @Option(name: .long, help: "Total spend committed over the term.") var amount: String
        @Option(name: .long, help: "First month, YYYY-MM.") var start: String
        @Option(name: .long, help: "Length of the term in months.") var months = 12
        @Option(name: .long, help: "Discount on on-demand and reserved prices, e.g. 20%.") var discount = "0%"
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let body: [String: Any] = ["org": org, "amount": amount, "start": start, "months": months, "discount": discount]
                let data = try await global.client().call(.POST, "/v1/commitments", body: try jsonData(body))
                if global.json { return Output.json(data) }
                let c = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                print("Recorded \(Output.str(c["id"])): \(amount) over \(months) months from \(start) at \(discount) off.")
            }
        }
    }
}

struct SLAs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slas", abstract: "Service levels the system checks; breaches credit the tenant on its invoice.",
        subcommands: [List.self, Create.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/slas")
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { s in
                    [
                        Output.str(s["id"]), Output.str(s["org"] ?? "all tenants"), Output.str(s["objective"]),
                        "\(Output.str(s["credit_percent"]))%",
                    ]
                }
                if rows.isEmpty { return print("No SLAs.") }
                Output.table(["ID", "ORG", "OBJECTIVE", "CREDIT"], rows)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an SLA (operators).",
            discussion: """
                Examples: stratus slas create --objective on_demand_start --seconds 300 --credit 10%
                          stratus slas create --objective reserved_availability --target 99.5% --credit 10%
                """)
        @Option(name: .long, help: "on_demand_start, spot_notice or reserved_availability.") var objective: String
        @Option(name: .long, help: "The limit: most seconds to start, or least seconds of notice.") var seconds: Int?
        @Option(name: .long, help: "For reserved_availability: share of reserved GPU-hours delivered per month, e.g. 99.5%.")
        var target: String?
        @Option(name: .long, help: "Share of the affected work's charges credited, e.g. 10%.") var credit: String
        @Option(name: .long, help: "Only this org (default: every tenant).") var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = ["objective": objective, "credit": credit]
                if let seconds { body["seconds"] = seconds }
                if let target { body["target"] = target }
                if let org { body["org"] = org }
                let obj = try await global.client().object(.POST, "/v1/slas", body: try jsonData(body))
                print("Created \(Output.str(obj["id"])).")
            }
        }
    }
}
