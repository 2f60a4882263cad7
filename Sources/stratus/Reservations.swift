import ArgumentParser
import Foundation

/// Capacity blocks: N GPUs of a model for a time window, for one project.
struct Reservations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reserve capacity blocks (N GPUs of a model from a start time for a duration).",
        subcommands: [List.self, Create.self, Show.self, CancelBlock.self], defaultSubcommand: List.self)

    static func row(_ r: [String: Any]) -> [String] {
        let site: Any = r["site"] ?? "*"
        return [
            Output.str(r["id"]), Output.str(r["project"]), Output.str(r["gpu"]), Output.str(r["gpus"]), Output.str(r["used"]),
            Output.str(site), Output.shortTime(r["start"]), Output.shortTime(r["end"]), Output.str(r["status"]),
        ]
    }

    static let headers = ["ID", "PROJECT", "GPU", "GPUS", "USED", "SITE", "START", "END", "STATUS"]

    struct List: AsyncParsableCommand {
        @Option(name: .long, help: "Only this org (operators).") var org: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(
                    .GET, "/v1/reservations" + (org.map { "?org=\(percentEncode($0))" } ?? ""))
                if global.json { return Output.json(data) }
                let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                let rows = Output.items(obj).map(Reservations.row)
                if rows.isEmpty { return print("No reservations.") }
                Output.table(Reservations.headers, rows)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Reserve GPUs; accepted only if the block can be guaranteed.",
            discussion: "Example: stratus reservations create --gpu H100 --gpus 16 --start +1h --duration 2d")
        @Option(name: .long, help: "GPU model, e.g. H100.") var gpu: String
        @Option(name: .long, help: "How many GPUs (or give --racks).") var gpus: Int?
        @Option(name: .long, help: "How many whole racks (NVLink domains) of the model.") var racks: Int?
        @Option(name: .long, help: "now, +DURATION (e.g. +2h) or an RFC 3339 time.") var start = "now"
        @Option(name: .long, help: "Length, e.g. 7d (or give --end).") var duration: String?
        @Option(name: .long, help: "End, as an RFC 3339 time.") var end: String?
        @Option(name: .long, help: "Only in this site (default: anywhere in the fleet).") var site: String?
        @Option(name: .long, help: "Project (default: default).") var project: String?
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                var body: [String: Any] = ["gpu": gpu, "start": start]
                if let gpus { body["gpus"] = gpus }
                if let racks { body["racks"] = racks }
                if let duration { body["duration"] = duration }
                if let end { body["end"] = end }
                if let site { body["site"] = site }
                if let project { body["project"] = project }
                let data = try await global.client().call(.POST, "/v1/reservations", body: try jsonData(body))
                if global.json { return Output.json(data) }
                let r = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                print(
                    "Reserved \(Output.str(r["id"])): \(Output.str(r["gpus"])) \(Output.str(r["gpu"])) from \(Output.str(r["start"])) to \(Output.str(r["end"]))."
                )
                print("Jobs run in it with `reservation: \(Output.str(r["id"]))` in their spec.")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        @Argument var id: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.GET, "/v1/reservations/\(percentEncode(id))")
                if global.json { return Output.json(data) }
                let r = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                Output.table(Reservations.headers, [Reservations.row(r)])
            }
        }
    }

    struct CancelBlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cancel", abstract: "Cancel a reservation: its queued jobs are cancelled, running ones stopped.")
        @Argument var id: String
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await cli {
                let data = try await global.client().call(.POST, "/v1/reservations/\(percentEncode(id))/cancel")
                if global.json { return Output.json(data) }
                print("Cancelled \(id).")
            }
        }
    }
}
