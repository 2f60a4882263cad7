import ArgumentParser
import Foundation
import Logging
import StratusCore
import StratusScheduler
import StratusServer

@main
struct Stratus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stratus",
        abstract: "Run an AI cloud: GPU fleet, tenants, jobs and usage.",
        subcommands: [
            Up.self, AgentCommand.self, Login.self, Launch.self, Status.self, Why.self, Quote.self, Logs.self, Top.self,
            Cancel.self, Usage.self, Share.self,
            Quotas.self, Reservations.self, Prices.self, Invoices.self, InvoiceCommand.self, LedgerCommand.self, Budgets.self,
            Commitments.self, SLAs.self,
            Fleet.self, Nodes.self,
            Orgs.self,
            Projects.self, Members.self, Keys.self, Sim.self, Bench.self,
        ])
}

/// Options every client command takes.
struct GlobalOptions: ParsableArguments {
    @Flag(name: .long, help: "Print the server's JSON instead of a table.")
    var json = false

    @Option(name: .long, help: "Server URL (default: $STRATUS_URL, the login config, or http://127.0.0.1:8080).")
    var url: String?

    @Option(name: .long, help: "API key (default: $STRATUS_API_KEY or the login config).")
    var apiKey: String?

    func client() -> APIClient {
        let env = ProcessInfo.processInfo.environment
        let config = CLIConfig.load()
        let url = url ?? env["STRATUS_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? config.url ?? "http://127.0.0.1:8080"
        let key = apiKey ?? env["STRATUS_API_KEY"].flatMap { $0.isEmpty ? nil : $0 } ?? config.apiKey
        return APIClient(baseURL: url.hasSuffix("/") ? String(url.dropLast()) : url, apiKey: key)
    }
}

/// Runs a client command body, turning failures into one clear line and exit code 1.
func cli(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as APIFailure {
        FileHandle.standardError.write(Data("error: \(e)\n".utf8))
        throw ExitCode(1)
    } catch let e as CLIError {
        FileHandle.standardError.write(Data("error: \(e)\n".utf8))
        throw ExitCode(1)
    } catch let e as StratusError {
        FileHandle.standardError.write(Data("error: \(e.message) (\(e.code.rawValue))\n".utf8))
        throw ExitCode(1)
    }
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the control plane, scheduler and local agents on an embedded database.")

    @Option(name: .long, help: "Data directory (created if missing).")
    var data = ".stratus"

    @Option(name: .long, help: "Port for the HTTP API (0 picks a free one).")
    var port = 8080

    @Option(name: .long, help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Notice preempted spot jobs get before they are killed (e.g. 120s, 2m).")
    var preemptionNotice = "120s"

    @Option(name: .long, help: "How a project takes back quota other projects' spot work borrowed: preempt or wait.")
    var quotaReclaim = "preempt"

    @Option(
        name: .long,
        help: "Tiers to offer, highest priority first (default: internal,reserved,on-demand,spot; spot, if offered, last).")
    var tiers: String?

    @Flag(
        name: .long, inversion: .prefixedNo,
        help: "Load the demo fleet (8 nodes x 8 H100 run by in-process agents) into a new data directory.")
    var demoFleet = true

    @Option(name: .long, help: "How often networked agents heartbeat (e.g. 10s).")
    var heartbeat = "10s"

    @Option(name: .long, help: "Silence after which a networked agent's node is lost and its work ends as node_lost.")
    var nodeLostAfter = "50s"

    @Option(
        name: .long,
        help: "How long a job is kept after it ends (at least 1h); then it is forgotten, its charges staying on invoices.")
    var retainJobs = "90d"

    func run() async throws {
        var logger = Logger(label: "stratus")
        logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        do {
            var options = Server.Options(dataDirectory: data, host: host, port: port)
            options.preemptionNoticeSeconds = try DurationText.parseSeconds(preemptionNotice, field: "--preemption-notice")
            guard let reclaim = TieredScheduler.QuotaReclaim(rawValue: quotaReclaim) else {
                throw StratusError(.invalidArgument, "--quota-reclaim: '\(quotaReclaim)' is not preempt or wait")
            }
            options.quotaReclaim = reclaim
            options.demoFleet = demoFleet
            options.heartbeatSeconds = try DurationText.parseSeconds(heartbeat, field: "--heartbeat")
            options.nodeLostSeconds = try DurationText.parseSeconds(nodeLostAfter, field: "--node-lost-after")
            guard options.heartbeatSeconds >= 1, options.nodeLostSeconds > options.heartbeatSeconds else {
                throw StratusError(.invalidArgument, "--node-lost-after must be longer than --heartbeat (at least 1 s)")
            }
            options.retainJobsSeconds = try DurationText.parseSeconds(retainJobs, field: "--retain-jobs")
            guard options.retainJobsSeconds >= Limits.minJobRetentionSeconds else {
                throw StratusError(.invalidArgument, "--retain-jobs: at least 1h (\(retainJobs) given)")
            }
            if let tiers {
                options.tiers = try tiers.split(separator: ",").map { name throws(StratusError) in
                    guard let tier = Tier(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                        throw StratusError(
                            .invalidArgument,
                            "--tiers: '\(name)' is not one of \(Tier.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return tier
                }
            }
            try await Server.run(options, logger: logger)
        } catch let e as StratusError {
            FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Save the server URL and API key for later commands (checked against the server first).")

    @Option(name: .long, help: "Server URL.")
    var url = "http://127.0.0.1:8080"

    @Option(name: .long, help: "API key.")
    var key: String?

    @Option(name: .long, help: "File holding the API key (e.g. .stratus/admin.key).")
    var keyFile: String?

    @Flag(name: .long) var json = false

    func run() async throws {
        try await cli {
            var secret = key
            if let keyFile {
                guard let text = try? String(contentsOfFile: keyFile, encoding: .utf8) else {
                    throw CLIError("\(keyFile): cannot read file")
                }
                secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard let secret, !secret.isEmpty else { throw CLIError("give --key KEY or --key-file FILE") }
            let base = url.hasSuffix("/") ? String(url.dropLast()) : url
            let me = try await APIClient(baseURL: base, apiKey: secret).object(.GET, "/v1/whoami")
            try CLIConfig(url: base, apiKey: secret).save()
            if json {
                Output.json(try jsonData(me))
            } else {
                let org = Output.str(me["org"])
                print(
                    "Logged in to \(base) as \(Output.str(me["role"]))\(org.isEmpty ? "" : " of org \(org)") (key \(Output.str(me["key"])))"
                )
                print("Saved to \(CLIConfig.path)")
            }
        }
    }
}
