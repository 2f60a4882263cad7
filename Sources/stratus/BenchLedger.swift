import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import StratusAgent
import StratusControl
import StratusCore
import StratusLedger
import StratusServer
import StratusStore
import StratusStoreSQLite

/// `stratus bench ledger`: usage events rated and posted per second in memory (through
/// the state machine, as the server applies them), durable ingestion through the HTTP API
/// into SQLite, and the time to close a month for many orgs. Prints JSON.
struct LedgerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ledger")

    @Option(help: "Events for the in-memory run.") var events = 1_000_000
    @Option(help: "Events for the SQLite run through the API.") var sqliteEvents = 400_000
    @Option(help: "Events per batch (one request, one log entry).") var batch = 5000
    @Option(help: "Concurrent HTTP clients in the SQLite run.") var clients = 4
    @Option(help: "Orgs whose month is closed.") var orgs = 100_000
    @Option var seed: UInt64 = 42

    /// Events spread over `orgCount` orgs (default project), H100 on-demand or spot in
    /// two regions, 1-8 GPUs, up to an hour each, ending within the last week.
    static func makeEvents(_ count: Int, orgCount: Int, now: Timestamp, prefix: String, rng: inout SeededRandom) -> [UsageEvent] {
        (0..<count).map { i in
            let seconds = Int64(1 + rng.next(below: 3600))
            let end = now.adding(seconds: -Int64(rng.next(below: 7 * 86400)) - 60)
            return UsageEvent(
                source: "bench", id: "\(prefix)\(i)", org: OrgID("org-\(i % orgCount)"), project: "default",
                gpuModel: "H100", region: i % 2 == 0 ? "us-east" : "eu-west", tier: i % 4 == 0 ? .spot : .onDemand,
                gpus: 1 + Int(rng.next(below: 8)), start: end.adding(seconds: -seconds), end: end)
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    func run() async throws {
        let now = Timestamp(seconds: Int64(Date().timeIntervalSince1970))
        var rng = SeededRandom(seed: seed)
        let clock = ContinuousClock()

        // 1. In memory: the state machine over the in-memory store, as the server runs it.
        var engine = try Engine(store: MemoryStore())
        try engine.execute(
            .bootstrap(
                CreateKey(org: nil, role: .operatorAdmin, name: "op", secretHash: String(repeating: "0", count: 64), hint: "")),
            at: now)
        let memoryOrgs = 1000
        for o in 0..<memoryOrgs { try engine.execute(.createOrg(CreateOrg(id: OrgID("org-\(o)"), displayName: "")), at: now) }
        try engine.execute(
            .setPrices(SetPrices(list: PriceBook.defaultPoints(at: now).map { ListPrice(sku: $0.0, point: $0.1) })), at: now)
        let memoryEvents = Self.makeEvents(events, orgCount: memoryOrgs, now: now, prefix: "m", rng: &rng)
        // Batches as the API hands them over: one array per request.
        let batches = stride(from: 0, to: memoryEvents.count, by: batch).map {
            Array(memoryEvents[$0..<min(memoryEvents.count, $0 + batch)])
        }
        let t0 = clock.now
        for chunk in batches {
            try engine.execute(.recordUsage(RecordUsage(events: chunk)), at: now)
        }
        let engineSeconds = Self.seconds(clock.now - t0)
        precondition(engine.state.billing.ledger.checkBalanced(), "ledger out of balance")
        FileHandle.standardError.write(Data("memory, state machine: \(events) events in \(engineSeconds) s\n".utf8))

        // 1b. Rating and posting alone: the same events, already validated, into the ledger.
        var rated = Billing()
        for (sku, point) in PriceBook.defaultPoints(at: now) { rated.prices.set(sku, point) }
        let r0 = clock.now
        for chunk in batches { rated.record(chunk, now: now) }
        let memorySeconds = Self.seconds(clock.now - r0)
        precondition(rated.ledger.checkBalanced() && rated.eventsCounted == UInt64(events))
        precondition(rated.ledger.accounts == engine.state.billing.ledger.accounts, "rating differs from the state machine's")
        let transfers = rated.ledger.transferCount
        FileHandle.standardError.write(Data("memory, rating and posting: \(events) events in \(memorySeconds) s\n".utf8))

        // 2. Durable, through the API: a real HTTP server on loopback over SQLite.
        let sqlite = try await sqliteRun(now: now, rng: &rng)
        FileHandle.standardError.write(Data("sqlite: \(sqliteEvents) events in \(sqlite) s\n".utf8))

        // 3. Month close: `orgs` orgs with usage on a few lines each.
        var billing = Billing()
        for (sku, point) in PriceBook.defaultPoints(at: now) { billing.prices.set(sku, point) }
        let lastMonth = Period(containing: now).previous
        let inMonth = lastMonth.start.adding(seconds: 86400)
        for o in 0..<orgs {
            for k in 0..<3 {
                billing.count(
                    UsageEvent(
                        source: "bench", id: "c\(o)-\(k)", org: OrgID("org-\(o)"), project: "p\(k % 2)", gpuModel: "H100",
                        region: "us-east", tier: k == 2 ? .spot : .onDemand, gpus: 8, start: inMonth,
                        end: inMonth.adding(seconds: Int64(600 + k))), now: inMonth.adding(seconds: 3600))
            }
        }
        let c0 = clock.now
        let issued = billing.close(lastMonth, now: lastMonth.end.adding(seconds: 86400))
        let closeSeconds = Self.seconds(clock.now - c0)
        precondition(issued.count == orgs && billing.ledger.checkBalanced())

        struct Result: Encodable {
            /// Rating and posting validated events.
            let events_per_s_memory: Int
            /// The whole state machine: validate, log (in memory), rate, post.
            let events_per_s_memory_state_machine: Int
            let events_per_s_sqlite: Int
            let month_close_s: Double
            let orgs: Int
            let memory_events: Int
            let memory_transfers: UInt64
            let sqlite_events: Int
            let batch: Int
            let clients: Int
        }
        let result = Result(
            events_per_s_memory: Int(Double(events) / memorySeconds),
            events_per_s_memory_state_machine: Int(Double(events) / engineSeconds),
            events_per_s_sqlite: Int(Double(sqliteEvents) / sqlite),
            month_close_s: (closeSeconds * 1000).rounded() / 1000, orgs: orgs, memory_events: events,
            memory_transfers: transfers, sqlite_events: sqliteEvents, batch: batch, clients: clients)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
    }

    /// Seconds to post `sqliteEvents` as CloudEvents batches from `clients` concurrent
    /// clients to a server on loopback that logs each batch durably in SQLite.
    func sqliteRun(now: Timestamp, rng: inout SeededRandom) async throws -> Double {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stratus-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plane = try ControlPlane(store: try SQLiteStore(path: "\(dir)/stratus.db"), clock: { WallClock.now() })
        let admin = APIKeySecret.generate()
        try await plane.execute(
            .bootstrap(CreateKey(org: nil, role: .operatorAdmin, name: "op", secretHash: APIKeySecret.hash(admin), hint: "")))
        let orgCount = 100
        for o in 0..<orgCount { try await plane.execute(.createOrg(CreateOrg(id: OrgID("org-\(o)"), displayName: ""))) }
        try await plane.execute(
            .setPrices(SetPrices(list: PriceBook.defaultPoints(at: now).map { ListPrice(sku: $0.0, point: $0.1) })))
        let events = Self.makeEvents(sqliteEvents, orgCount: orgCount, now: now, prefix: "s", rng: &rng)
        let bodies: [ByteBuffer] = stride(from: 0, to: events.count, by: batch).map { from in
            let chunk = events[from..<min(events.count, from + batch)]
            var text = "["
            for (k, e) in chunk.enumerated() {
                if k > 0 { text += "," }
                text +=
                    #"{"specversion":"1.0","type":"dev.stratus.usage.gpu","id":"\#(e.id)","source":"bench","data":{"org":"\#(e.org)","gpu_model":"H100","region":"\#(e.region)","tier":"\#(e.tier.rawValue)","gpus":\#(e.gpus),"start":"\#(e.start)","end":"\#(e.end)"}}"#
            }
            return ByteBuffer(string: text + "]")
        }
        let port = try await withCheckedThrowingContinuation { (ready: CheckedContinuation<Int, any Error>) in
            let app = Application(
                router: API(plane: plane, files: JobFiles(root: dir)).router(),
                configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { channel in ready.resume(returning: channel.localAddress?.port ?? 0) })
            Task { try await app.runService() }
        }
        let clock = ContinuousClock()
        let t0 = clock.now
        let clients = self.clients
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<clients {
                group.addTask {
                    for i in stride(from: c, to: bodies.count, by: clients) {
                        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/usage/events")
                        request.method = .POST
                        request.headers.add(name: "Authorization", value: "Bearer \(admin)")
                        request.headers.add(name: "Content-Type", value: "application/cloudevents-batch+json")
                        request.body = .bytes(bodies[i])
                        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
                        let reply = try await response.body.collect(upTo: 64 << 20)
                        guard response.status == .ok else {
                            throw StratusError(.internal, "batch \(i): \(response.status) \(String(buffer: reply))")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = Self.seconds(clock.now - t0)
        let counted = await plane.read { $0.billing.eventsCounted }
        precondition(counted == UInt64(sqliteEvents), "counted \(counted) of \(sqliteEvents)")
        return elapsed
    }
}
