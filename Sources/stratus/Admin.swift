import ArgumentParser
import Foundation
import StratusCore

struct Fleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the fleet (GPUs by model, state and tier) or change it.",
        subcommands: [Show.self, Apply.self, Nodes.self], defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "GPU counts by model, state and tier.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/fleet")
                if global.json { return Output.json(data) }
                try Fleet.printSummary(data)
            }
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or update regions, sites, racks and nodes from YAML.")
        @Argument var file: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let spec = try readSpecFile(file)
                _ = try FleetSpec.parse(spec)
                let data = try await global.client().call(.POST, "/v1/fleet", body: try jsonData(spec))
                if global.json { return Output.json(data) }
                print("Applied \(file).")
                try Fleet.printSummary(data)
            }
        }
    }

    struct Nodes: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List nodes.")
        @Option(name: .long) var limit = 1000
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/fleet/nodes?limit=\(limit)")
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                Output.table(
                    ["NODE", "REGION", "SITE", "RACK", "GPU", "GPUS", "FREE", "STATE"],
                    Output.items(obj).map { n in
                        ["name", "region", "site", "rack", "gpu", "gpus", "gpus_free", "state"].map { Output.str(n[$0]) }
                    })
            }
        }
    }

    static func printSummary(_ data: Data) throws {
        let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        let sites = obj["sites"] as? [[String: Any]] ?? []
        Output.table(
            ["SITE", "REGION", "POWER MW", "PUE", "RACKS", "NODES", "GPU KW (x PUE)"],
            sites.map { s in ["name", "region", "power_mw", "pue", "racks", "nodes", "gpu_power_kw"].map { Output.str(s[$0]) } })
        print("")
        let tiers = Tier.allCases.map(\.rawValue)
        let models = obj["models"] as? [[String: Any]] ?? []
        Output.table(
            ["GPU", "NODES", "NODE STATES", "GPUS", "FREE", "UNAVAILABLE"] + tiers.map { $0.uppercased() },
            models.map { m in
                let byTier = m["allocated_by_tier"] as? [String: Any] ?? [:]
                let byState = (m["nodes_by_state"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
                    .map { "\(Output.str($0.value)) \($0.key)" }.joined(separator: ", ")
                return [Output.str(m["gpu"]), Output.str(m["nodes"]), byState]
                    + ["gpus", "free", "unavailable"].map { Output.str(m[$0]) }
                    + tiers.map { Output.str(byTier[$0] ?? 0) }
            })
    }
}

struct Orgs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Organizations (tenants).", subcommands: [Create.self, List.self], defaultSubcommand: List.self)

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an org with a default project (operator).")
        @Argument var name: String
        @Option(name: .long) var displayName: String?
        @Option(name: .long, help: "Fair-share weight (default 1).") var weight: Int?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = ["name": name]
                if let displayName { body["display_name"] = displayName }
                if let weight { body["weight"] = weight }
                let data = try await global.client().call(.POST, "/v1/orgs", body: try jsonData(body))
                if global.json { return Output.json(data) }
                print("Created org \(name) with project \(name)/default.")
                print("Give it a key: stratus keys create --org \(name) --role org-admin --name admin")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List orgs you can see.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/orgs?limit=1000")
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                Output.table(
                    ["ORG", "DISPLAY NAME", "WEIGHT", "CREATED"],
                    Output.items(obj).map { item in ["name", "display_name", "weight", "created_at"].map { Output.str(item[$0]) }
                    })
            }
        }
    }
}

struct Share: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fair share: each org's weight, decayed GPU time and place in line (lowest score first).")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let data = try await global.client().call(.GET, "/v1/fairshare")
            if global.json { return Output.json(data) }
            let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            func number(_ v: Any?) -> Double? { (v as? Double) ?? (v as? NSNumber)?.doubleValue ?? (v as? Int).map(Double.init) }
            func fixed(_ d: Double?, _ digits: Int) -> String { d.map { String(format: "%.\(digits)f", $0) } ?? "-" }
            Output.table(
                ["ORG", "WEIGHT", "GPU-HOURS (DECAYED)", "RUNNING GPUS", "SHARE"],
                Output.items(obj).map { r in
                    [
                        Output.str(r["org"]), Output.str(r["weight"]), fixed(number(r["usage_gpu_hours"]), 3),
                        Output.str(r["running_gpus"]), fixed(number(r["share"]).map { $0 * 100 }, 1) + "%",
                    ]
                })
        }
    }
}

struct Quotas: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "GPU quotas of orgs and projects.", subcommands: [List.self, SetLimit.self, Remove.self],
        defaultSubcommand: List.self)

    struct Scope: ParsableArguments {
        @Option(name: .long, help: "Org (operators; others use their own).") var org: String?
        @Option(name: .long, help: "Project name (omit for the whole org: operators only).") var project: String?
        @Option(name: .long, help: "Only this GPU model.") var gpu: String?
        @Option(name: .long, help: "Only this region.") var region: String?

        var body: [String: Any] {
            var b: [String: Any] = [:]
            if let org { b["org"] = org }
            if let project { b["project"] = project }
            if let gpu { b["gpu"] = gpu }
            if let region { b["region"] = region }
            return b
        }
    }

    struct List: AsyncParsableCommand {
        @Option(name: .long) var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/quotas" + (org.map { "?org=\(percentEncode($0))" } ?? ""))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { q in
                    ["org", "project", "gpu", "region", "used", "limit"].map { Output.str(q[$0]) }
                }
                if rows.isEmpty { return print("No quotas.") }
                Output.table(["ORG", "PROJECT", "GPU", "REGION", "USED", "LIMIT"], rows)
            }
        }
    }

    struct SetLimit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Set a quota: at most LIMIT GPUs held at once.")
        @Argument var limit: Int
        @OptionGroup var scope: Scope
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body = scope.body
                body["limit"] = limit
                let data = try await global.client().call(.POST, "/v1/quotas", body: try jsonData(body))
                if global.json { return Output.json(data) }
                let q = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                print("Quota set: \(Output.str(q["used"]))/\(Output.str(q["limit"])) GPUs in use.")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        @OptionGroup var scope: Scope
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body = scope.body
                body["limit"] = NSNull()
                let data = try await global.client().call(.POST, "/v1/quotas", body: try jsonData(body))
                if global.json { return Output.json(data) }
                print("Quota removed.")
            }
        }
    }
}

struct Reserve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hold GPUs back for internal demand: on-demand sales leave them free (operator).",
        subcommands: [List.self, SetReserve.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/capacity/reserves")
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map { r in
                    [
                        Output.str(r["gpu"]), Output.str(r["site"] ?? "all"), Output.str(r["gpus_now"]),
                        String((r["series"] as? [Any])?.count ?? 0),
                    ]
                }
                if rows.isEmpty { return print("No internal reserves.") }
                Output.table(["GPU", "SITE", "HELD NOW", "SERIES POINTS"], rows)
            }
        }
    }

    struct SetReserve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Set a fixed reserve (GPUS) or a forecast series from a YAML file; 0 GPUs removes it.")
        @Option(name: .long) var gpu: String
        @Option(name: .long, help: "Only this site (default: the whole fleet).") var site: String?
        @Argument(help: "GPUs to hold now and on.") var gpus: Int?
        @Option(name: .long, help: "YAML list of {from_unix_ms, gpus} points.") var series: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = ["gpu": gpu]
                if let site { body["site"] = site }
                if let gpus, gpus > 0 { body["gpus"] = gpus }
                let payload: Data
                if let series {
                    guard case .array(let points) = try readSpecFile(series) else {
                        throw CLIError("\(series): expected a list of {from_unix_ms, gpus}")
                    }
                    var spec = try JSONSerialization.jsonObject(with: try jsonData(body)) as? [String: Any] ?? [:]
                    spec["series"] = try JSONSerialization.jsonObject(with: try jsonData(SpecValue.array(points)))
                    payload = try JSONSerialization.data(withJSONObject: spec)
                } else {
                    payload = try jsonData(body)
                }
                let data = try await global.client().call(.POST, "/v1/capacity/reserves", body: payload)
                if global.json { return Output.json(data) }
                let r = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                print("Holding \(Output.str(r["gpus_now"])) \(gpu) for internal demand\(site.map { " in \($0)" } ?? "").")
            }
        }
    }
}

struct Projects: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Projects within an org.", subcommands: [Create.self, List.self], defaultSubcommand: List.self)

    struct Create: AsyncParsableCommand {
        @Argument var name: String
        @Option(name: .long, help: "Org (operators; others use their own).") var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = ["name": name]
                if let org { body["org"] = org }
                let data = try await global.client().call(.POST, "/v1/projects", body: try jsonData(body))
                if global.json { return Output.json(data) }
                let p = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                print("Created project \(Output.str(p["id"])).")
            }
        }
    }

    struct List: AsyncParsableCommand {
        @Option(name: .long) var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(
                    .GET, "/v1/projects?limit=1000" + (org.map { "&org=\(percentEncode($0))" } ?? ""))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                Output.table(
                    ["PROJECT", "ORG", "CREATED"],
                    Output.items(obj).map { item in ["id", "org", "created_at"].map { Output.str(item[$0]) } })
            }
        }
    }
}

struct Members: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "People in an org and their roles.", subcommands: [Add.self, List.self], defaultSubcommand: List.self)

    struct Add: AsyncParsableCommand {
        @Argument var email: String
        @Option(name: .long, help: "org-admin, member or viewer.") var role = "member"
        @Option(name: .long) var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = ["email": email, "role": role]
                if let org { body["org"] = org }
                let data = try await global.client().call(.POST, "/v1/members", body: try jsonData(body))
                if global.json { return Output.json(data) }
                let m = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                print("Added \(email) to \(Output.str(m["org"])) as \(role).")
            }
        }
    }

    struct List: AsyncParsableCommand {
        @Option(name: .long) var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(
                    .GET, "/v1/members?limit=1000" + (org.map { "&org=\(percentEncode($0))" } ?? ""))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                Output.table(
                    ["ID", "ORG", "EMAIL", "ROLE"],
                    Output.items(obj).map { item in ["id", "org", "email", "role"].map { Output.str(item[$0]) } })
            }
        }
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "API keys.", subcommands: [Create.self, List.self, Revoke.self], defaultSubcommand: List.self)

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; its secret is shown once.")
        @Option(name: .long, help: "Org the key belongs to (operators; org admins use their own).") var org: String?
        @Option(name: .long, help: "operator-admin, org-admin, member or viewer.") var role = "member"
        @Option(name: .long) var name = ""
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = ["role": role, "name": name]
                if let org { body["org"] = org }
                let data = try await global.client().call(.POST, "/v1/keys", body: try jsonData(body))
                if global.json { return Output.json(data) }
                let k = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                print("Created \(Output.str(k["id"])) (\(role)\(org.map { " of \($0)" } ?? "")). Secret, shown once:")
                print("")
                print("    \(Output.str(k["secret"]))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        @Option(name: .long) var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(
                    .GET, "/v1/keys?limit=1000" + (org.map { "&org=\(percentEncode($0))" } ?? ""))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                Output.table(
                    ["ID", "ORG", "ROLE", "NAME", "HINT", "REVOKED"],
                    Output.items(obj).map { item in
                        ["id", "org", "role", "name", "hint", "revoked_at"].map { Output.str(item[$0]) }
                    })
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        @Argument var id: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.POST, "/v1/keys/\(percentEncode(id))/revoke")
                if global.json { return Output.json(data) }
                print("Revoked \(id).")
            }
        }
    }
}
