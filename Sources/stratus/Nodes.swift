import ArgumentParser
import Foundation
import StratusCore

struct Nodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Nodes and their agents: list, show, cordon, drain, agent tokens.",
        subcommands: [List.self, Show.self, Cordon.self, Uncordon.self, Drain.self, Token.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every node with its state and agent.")
        @Option(name: .long) var limit = 1000
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/fleet/nodes?limit=\(limit)")
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                Output.table(
                    ["NODE", "RACK", "GPU", "GPUS", "FREE", "STATE", "AGENT", "LAST HEARTBEAT", "JOBS"],
                    Output.items(obj).map { n in
                        let agent = n["agent"] as? [String: Any]
                        return ["name", "rack", "gpu", "gpus", "gpus_free", "state"].map { Output.str(n[$0]) } + [
                            agent.map { Output.str($0["address"]) } ?? "in-process",
                            agent.map { Output.str($0["last_heartbeat"]) } ?? "-",
                            (n["jobs"] as? [String])?.joined(separator: ",") ?? "",
                        ]
                    })
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One node: state, agent, GPUs, jobs.")
        @Argument var node: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/fleet/nodes/\(percentEncode(node))")
                if global.json { return Output.json(data) }
                Nodes.printNode(data)
            }
        }
    }

    static func printNode(_ data: Data) {
        let n = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        print("\(Output.str(n["name"])): \(Output.str(n["state"]))" + ((n["state_reason"] as? String).map { " (\($0))" } ?? ""))
        print(
            "  \(Output.str(n["gpus"])) x \(Output.str(n["gpu"])) in rack \(Output.str(n["rack"])), site \(Output.str(n["site"])), \(Output.str(n["gpus_free"])) free"
        )
        if let cpus = n["cpus"] as? String {
            print(
                "  \(cpus) CPUs (\(Output.str(n["cpus_free"])) free), \(Output.str(n["memory_mib"])) MiB memory (\(Output.str(n["memory_free_mib"])) free)"
            )
        }
        if let lost = n["lost_at"] as? String { print("  lost: last heard from at \(lost)") }
        if let jobs = n["jobs"] as? [String], !jobs.isEmpty { print("  jobs: \(jobs.joined(separator: ", "))") }
        guard let agent = n["agent"] as? [String: Any] else { return print("  agent: in-process (stratus up)") }
        print(
            "  agent \(Output.str(agent["version"])) at \(Output.str(agent["address"])), registered \(Output.str(agent["registered_at"])), last heartbeat \(Output.str(agent["last_heartbeat"]))"
        )
        for g in agent["gpus"] as? [[String: Any]] ?? [] {
            print(
                "  GPU \(Output.str(g["index"])): \(Output.str(g["name"])) \(Output.str(g["uuid"])) \(Output.str(g["memory_mib"])) MiB"
            )
        }
    }

    static func setState(_ global: GlobalOptions, _ node: String, _ body: [String: Any]) async throws {
        let data = try await global.client().call(.POST, "/v1/fleet/nodes/\(percentEncode(node))/state", body: try jsonData(body))
        if global.json { return Output.json(data) }
        printNode(data)
    }

    struct Cordon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "No new work on the node; running work goes on.")
        @Argument var node: String
        @Option(name: .long, help: "Why, for other operators.") var reason: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = ["state": "cordoned"]
                if let reason { body["reason"] = reason }
                try await Nodes.setState(global, node, body)
            }
        }
    }

    struct Uncordon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Return the node to service.")
        @Argument var node: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli { try await Nodes.setState(global, node, ["state": "ready"]) }
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "No new work on the node; running work finishes, or with --requeue is stopped with notice and requeued.")
        @Argument var node: String
        @Flag(name: .long, help: "Stop running work with notice and put it back in the queue.") var requeue = false
        @Option(name: .long, help: "Notice before requeued work is killed (e.g. 120s).") var notice = "120s"
        @Option(name: .long, help: "Why, for other operators.") var reason: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = [
                    "state": "draining", "requeue": requeue, "notice_s": try DurationText.parseSeconds(notice, field: "--notice"),
                ]
                if let reason { body["reason"] = reason }
                try await Nodes.setState(global, node, body)
            }
        }
    }

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Agent tokens: what `stratus agent` authenticates with (never an API key).",
            subcommands: [Create.self, List.self, Revoke.self], defaultSubcommand: List.self)

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Issue a token; its secret is shown once.")
            @Option(name: .long, help: "Confine the token to this node (default: any node).") var node: String?
            @Option(name: .long) var name: String?
            @Option(name: .long, help: "Write the secret to this file (mode 0600) instead of printing it.") var out: String?
            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await cli {
                    var body: [String: Any] = [:]
                    if let node { body["node"] = node }
                    if let name { body["name"] = name }
                    let data = try await global.client().call(.POST, "/v1/agent-tokens", body: try jsonData(body))
                    let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                    let secret = Output.str(obj["secret"])
                    if let out {
                        guard
                            FileManager.default.createFile(
                                atPath: out, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600])
                        else { throw CLIError("cannot write \(out)") }
                    }
                    if global.json { return Output.json(data) }
                    print(
                        "Agent token \(Output.str(obj["id"])) for \((obj["node"] as? String).map { "node \($0)" } ?? "any node")")
                    if let out {
                        print("Secret written to \(out). Start the agent with: stratus agent --server URL --token-file \(out)")
                    } else {
                        print("Secret (shown once): \(secret)")
                    }
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Agent tokens, revoked ones included.")
            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await cli {
                    let data = try await global.client().call(.GET, "/v1/agent-tokens?limit=1000")
                    if global.json { return Output.json(data) }
                    let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                    Output.table(
                        ["ID", "NAME", "NODE", "HINT", "CREATED", "REVOKED"],
                        Output.items(obj).map { t in
                            [Output.str(t["id"]), Output.str(t["name"]), (t["node"] as? String) ?? "any"]
                                + ["hint", "created_at"].map { Output.str(t[$0]) } + [(t["revoked_at"] as? String) ?? "-"]
                        })
                }
            }
        }

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Revoke a token: its agents are refused from now on.")
            @Argument var id: String
            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await cli {
                    let data = try await global.client().call(.POST, "/v1/agent-tokens/\(percentEncode(id))/revoke")
                    if global.json { return Output.json(data) }
                    print("Revoked \(id).")
                }
            }
        }
    }
}

struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "GPU utilization and memory of a running job, per GPU, from its agents' samples.")
    @Argument var job: String
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let data = try await global.client().call(.GET, "/v1/jobs/\(percentEncode(job))/top")
            if global.json { return Output.json(data) }
            let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            let gpus = obj["gpus"] as? [[String: Any]] ?? []
            print("\(Output.str(obj["job"])): \(Output.str(obj["state"]))")
            if gpus.isEmpty { return print("no samples yet (agents sample every 10 s where nvidia-smi is present)") }
            Output.table(
                ["NODE", "GPU", "UUID", "UTIL %", "MEAN %", "MEMORY MiB", "POWER W", "AT"],
                gpus.map { g in
                    [
                        Output.str(g["node"]), Output.str(g["gpu_index"]), Output.str(g["gpu_uuid"]),
                        Output.str(g["utilization_pct"]), Output.str(g["mean_utilization_pct"]),
                        "\(Output.str(g["memory_used_mib"])) / \(Output.str(g["memory_total_mib"]))",
                        (g["power_w"] as? Int).map(String.init) ?? "-", Output.str(g["at"]),
                    ]
                })
        }
    }
}
