import ArgumentParser
import Foundation
import StratusCore

struct Launch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Submit a job from a YAML spec.")

    @Argument(help: "Job spec (YAML), e.g. examples/hello.yaml.")
    var file: String

    @Option(name: .long, help: "Makes retries safe: the same key returns the same job.")
    var idempotencyKey: String?

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let spec = try readSpecFile(file)
            _ = try JobSpec.parse(spec)  // the same checks the server makes, before the network
            var headers: [(String, String)] = []
            if let idempotencyKey { headers.append(("Idempotency-Key", idempotencyKey)) }
            let data = try await global.client().call(.POST, "/v1/jobs", body: try jsonData(spec), headers: headers)
            if global.json { return Output.json(data) }
            let job = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            print("Submitted \(Output.str(job["id"])) (\(Output.str(job["name"])), \(Output.str(job["state"])))")
            print("Follow it with: stratus logs \(Output.str(job["id"])) --follow")
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show jobs, or one job in detail.")

    @Argument(help: "Job ID; omit to list jobs.")
    var job: String?

    @Option(name: .long, help: "Only jobs in this state.")
    var state: String?

    @Option(name: .long, help: "How many jobs to list.")
    var limit = 50

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let client = global.client()
            if let job {
                let data = try await client.call(.GET, "/v1/jobs/\(percentEncode(job))")
                if global.json { return Output.json(data) }
                let j = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let res = (j["resources"] as? [String: Any])?["accelerators"]
                var lines: [(String, String)] = [
                    ("job", Output.str(j["id"])), ("name", Output.str(j["name"])), ("state", Output.str(j["state"])),
                    ("org/project", Output.str(j["project"])), ("tier", Output.str(j["tier"])),
                    ("resources", "\(Output.str(res)) x \(Output.str(j["num_nodes"])) node(s)"),
                    ("submitted", Output.str(j["submitted_at"])), ("placed", Output.str(j["placed_at"])),
                    ("started", Output.str(j["started_at"])),
                    ("ended", Output.str(j["ended_at"])),
                ]
                if let r = j["reason"] as? String { lines.append(("reason", r)) }
                if let w = j["wait_reason"] as? String { lines.append(("waiting", w)) }
                if let q = j["queue_position"] as? Int { lines.append(("queue position", String(q))) }
                for a in j["allocations"] as? [[String: Any]] ?? [] {
                    var text = "\(Output.str(a["node"])) GPUs \(Output.str(a["gpus"]))"
                    if let code = a["exit_code"] as? Int { text += " exit \(code)" }
                    if let why = a["end_reason"] as? String { text += " (\(why))" }
                    lines.append(("rank \(Output.str(a["rank"]))", text))
                }
                if let attempt = j["attempt"] as? Int, attempt > 0 { lines.append(("attempt", String(attempt + 1))) }
                for (k, v) in lines { print("\(k.padding(toLength: 15, withPad: " ", startingAt: 0)) \(v)") }
                let events = j["events"] as? [[String: Any]] ?? []
                if !events.isEmpty { print("events:") }
                for e in events.suffix(10) {
                    print("  \(Output.shortTime(e["at"]))  \(Output.str(e["kind"])): \(Output.str(e["message"]))")
                }
                return
            }
            var query = "?limit=\(limit)"
            if let state { query += "&state=\(percentEncode(state))" }
            let data = try await client.call(.GET, "/v1/jobs\(query)")
            if global.json { return Output.json(data) }
            let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            let rows = Output.items(obj).map { j -> [String] in
                let res = (j["resources"] as? [String: Any])?["accelerators"]
                return [
                    Output.str(j["id"]), Output.str(j["name"]), Output.str(j["state"]), Output.str(j["tier"]),
                    "\(Output.str(res))x\(Output.str(j["num_nodes"]))", Output.str(j["project"]),
                    Output.shortTime(j["submitted_at"]), Output.str(j["wait_reason"] ?? j["reason"]),
                ]
            }
            if rows.isEmpty { return print("No jobs.") }
            Output.table(["ID", "NAME", "STATE", "TIER", "GPUS", "PROJECT", "SUBMITTED", "REASON"], rows)
        }
    }
}

struct Quote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dry run: when could this job start in each tier, and at what price? Changes nothing.")

    @Argument var file: String
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let spec = try readSpecFile(file)
            _ = try JobSpec.parse(spec)
            let data = try await global.client().call(.POST, "/v1/quotes", body: try jsonData(spec))
            if global.json { return Output.json(data) }
            let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            Output.table(
                ["TIER", "PRICE/GPU-HOUR", "COST (MAX DURATION)", "EARLIEST START", "WHY NOT NOW"],
                Output.items(obj).map { r in
                    let start =
                        (r["starts_now"] as? Bool) == true
                        ? "now" : (r["earliest_start"] as? String ?? "unknown (running work has no time limit)")
                    let currency = Output.str(r["currency"])
                    let price = (r["price_per_gpu_hour"] as? String).map { "\($0) \(currency)" } ?? "-"
                    let cost = (r["projected_cost"] as? String).map { "\($0) \(currency)" } ?? "-"
                    let why = (r["refused_because"] as? String).map { "refused: \($0)" } ?? (r["reasons"] as? [String])?.first
                    return [Output.str(r["tier"]), price, cost, start, why ?? "-"]
                })
        }
    }
}

struct Why: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Why a job is not running, per constraint.")

    @Argument var job: String

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let data = try await global.client().call(.GET, "/v1/jobs/\(percentEncode(job))/explain")
            if global.json { return Output.json(data) }
            let e = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            print("\(Output.str(e["job"])) (\(Output.str(e["tier"]))): \(Output.str(e["summary"]))")
            if let position = e["queue_position"] as? Int { print("queue position: \(position)") }
            if e["state"] as? String == "queued" {
                print("earliest start: \(e["estimated_start"] as? String ?? "unknown (running work has no time limit)")")
            }
            for reason in e["reasons"] as? [String] ?? [] { print("  - \(reason)") }
            if let victims = e["preempting"] as? [String], !victims.isEmpty {
                print("  preempting: \(victims.joined(separator: ", "))")
            }
        }
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a job's output.")

    @Argument var job: String

    @Flag(name: .shortAndLong, help: "Keep printing until the job ends.")
    var follow = false

    @Option(name: .long, help: "Node of a multi-node job (default: rank 0).")
    var node: String?

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let client = global.client()
            var offset = 0
            while true {
                var query = "?offset=\(offset)"
                if let node { query += "&node=\(percentEncode(node))" }
                let data = try await client.call(.GET, "/v1/jobs/\(percentEncode(job))/logs\(query)")
                if global.json, !follow { return Output.json(data) }
                let chunk = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let text = chunk["data"] as? String ?? ""
                if !text.isEmpty {
                    FileHandle.standardOutput.write(Data(text.utf8))
                }
                let next = chunk["next_offset"] as? Int ?? offset
                let complete = chunk["complete"] as? Bool ?? true
                if !follow || (complete && next == offset) { return }
                if next == offset { try await Task.sleep(for: .milliseconds(500)) }
                offset = next
            }
        }
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job (running processes get SIGTERM).")

    @Argument var job: String

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await cli {
            let data = try await global.client().call(.POST, "/v1/jobs/\(percentEncode(job))/cancel")
            if global.json { return Output.json(data) }
            let j = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            print(
                "\(Output.str(j["id"])): \(Output.str(j["state"]))\(j["reason"] is String ? " (\(Output.str(j["reason"])))" : "")"
            )
        }
    }
}

struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "GPU time used, and posting usage measured elsewhere.",
        subcommands: [Report.self, UsagePost.self, UsageExample.self], defaultSubcommand: Report.self)

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "report", abstract: "GPU time used, grouped (default: project, GPU model, tier).")

        @Option(name: .long, help: "Comma-separated: org, project, job, gpu_model, tier, node.")
        var groupBy: String?

        @Option(name: .long, help: "Only this org (operators).")
        var org: String?

        @Option(name: .long, help: "Only this job.")
        var job: String?

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var params: [String] = []
                if let groupBy { params.append("group_by=\(percentEncode(groupBy))") }
                if let org { params.append("org=\(percentEncode(org))") }
                if let job { params.append("job=\(percentEncode(job))") }
                let data = try await global.client().call(
                    .GET, "/v1/usage" + (params.isEmpty ? "" : "?" + params.joined(separator: "&")))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let dims = obj["group_by"] as? [String] ?? []
                let rows = Output.items(obj).map { row -> [String] in
                    let key = row["key"] as? [String: Any] ?? [:]
                    let ms = row["gpu_milliseconds"] as? Int64 ?? Int64(row["gpu_milliseconds"] as? Int ?? 0)
                    return dims.map { Output.str(key[$0]) } + [DecimalText.format(ms, scale: 1000), Output.str(row["records"])]
                }
                if rows.isEmpty { return print("No usage recorded yet (usage is recorded when a job's process ends).") }
                Output.table(dims.map { $0.uppercased() } + ["GPU-SECONDS", "RECORDS"], rows)
                let total = obj["total_gpu_milliseconds"] as? Int64 ?? Int64(obj["total_gpu_milliseconds"] as? Int ?? 0)
                print("total: \(DecimalText.format(total, scale: 1000)) GPU-seconds")
            }
        }
    }
}
