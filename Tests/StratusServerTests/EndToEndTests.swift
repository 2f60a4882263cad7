import AsyncHTTPClient
import Foundation
import NIOCore
import StratusCore
import StratusLedger
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The whole product as a user runs it: `stratus up` as a separate process and the
/// `stratus` CLI against it.
@Suite(.serialized) struct EndToEndTests {
    /// The `stratus` binary built beside this test bundle (or `$STRATUS_BIN`).
    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["STRATUS_BIN"] { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("stratus").path
    }

    struct Run {
        let code: Int32
        let out: String
        let err: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:] }
    }

    final class Cluster {
        let dir: String
        let port: Int
        var server: Process?
        var env: [String: String]

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("stratus-e2e-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            port = try Self.freePort()
            env = ProcessInfo.processInfo.environment
            env["STRATUS_URL"] = "http://127.0.0.1:\(port)"
            env["STRATUS_CONFIG"] = "\(dir)/cli-config.json"
            env["STRATUS_API_KEY"] = nil
        }

        static func freePort() throws -> Int {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = 0
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
            }
            guard ok else { throw CocoaError(.fileReadUnknown) }
            return Int(UInt16(bigEndian: addr.sin_port))
        }

        /// Starts `stratus up` and waits until /healthz answers.
        func up(logName: String, _ extra: [String] = []) async throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: EndToEndTests.binary)
            // A relative data directory, as `stratus up` is usually run; cwd is `dir`.
            p.arguments = ["up", "--data", "data", "--port", String(port)] + extra
            p.currentDirectoryURL = URL(fileURLWithPath: dir)
            _ = FileManager.default.createFile(atPath: "\(dir)/\(logName)", contents: nil)
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(dir)/\(logName)"))
            p.standardOutput = log
            p.standardError = log
            try p.run()
            server = p
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                if cli(["status"]).err.contains("cannot reach") == false { return }
                #expect(p.isRunning, "stratus up exited early: \(serverLog(logName))")
                if !p.isRunning { return }
                try await Task.sleep(for: .milliseconds(200))
            }
            Issue.record("stratus up did not answer within 60 s: \(serverLog(logName))")
        }

        /// SIGTERM, as Ctrl-C would, and wait for a clean exit.
        func stop() async throws -> Int32 {
            guard let p = server else { return -1 }
            kill(p.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(30)
            while p.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            server = nil
            return p.terminationStatus
        }

        func serverLog(_ name: String) -> String {
            (try? String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8)) ?? ""
        }

        @discardableResult
        func cli(_ args: [String], key: String? = nil) -> Run {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: EndToEndTests.binary)
            p.arguments = args
            p.currentDirectoryURL = URL(fileURLWithPath: dir)
            var env = self.env
            if let key { env["STRATUS_API_KEY"] = key }
            p.environment = env
            let out = Pipe()
            let err = Pipe()
            p.standardOutput = out
            p.standardError = err
            do { try p.run() } catch { return Run(code: -1, out: "", err: "\(error)") }
            let o = out.fileHandleForReading.readDataToEndOfFile()
            let e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return Run(
                code: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
        }

        func waitForState(_ job: String, _ wanted: String, key: String? = nil) async throws -> [String: Any] {
            let deadline = ContinuousClock.now + .seconds(60)
            var last: [String: Any] = [:]
            while ContinuousClock.now < deadline {
                last = cli(["status", job, "--json"], key: key).json
                if last["state"] as? String == wanted { return last }
                try await Task.sleep(for: .milliseconds(200))
            }
            let nodes = cli(["nodes"]).out
            let logs = (try? FileManager.default.contentsOfDirectory(atPath: dir))?.filter { $0.hasSuffix(".log") } ?? []
            let tails = logs.map { "\($0): \(serverLog($0).suffix(3000))" }.joined(separator: "\n")
            Issue.record("\(job) never reached \(wanted): \(last)\nnodes:\n\(nodes)\n\(tails)")
            return last
        }

        deinit {
            if let p = server, p.isRunning { kill(p.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func launchRunLogsUsageAndRestart() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the stratus binary first: \(Self.binary)")
        let c = try Cluster()
        try await c.up(logName: "up1.log")
        let first = c.serverLog("up1.log")
        #expect(first.contains("Operator admin key"))
        let keyPath = "\(c.dir)/data/admin.key"
        let admin = try String(contentsOfFile: keyPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(admin.hasPrefix("sk_"))
        let mode = (try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600)

        let login = c.cli(["login", "--url", "http://127.0.0.1:\(c.port)", "--key-file", keyPath])
        #expect(login.code == 0, "\(login.err)")

        try """
        name: e2e
        resources:
          accelerators: H100:2
        run: |
          echo "gpus=$CUDA_VISIBLE_DEVICES job=$STRATUS_JOB_ID greeting=$GREETING"
          echo "notice=$STRATUS_PREEMPTION_NOTICE_FILE" > notice-path.txt
          sleep 1
        envs:
          GREETING: hello
        max_duration: 5m
        """.write(toFile: "\(c.dir)/job.yaml", atomically: true, encoding: .utf8)
        let launched = c.cli(["launch", "job.yaml", "--json"])
        #expect(launched.code == 0, "\(launched.err)")
        let job = try #require(launched.json["id"] as? String)

        let done = try await c.waitForState(job, "succeeded")
        #expect((done["allocations"] as? [[String: Any]])?.first?["exit_code"] as? Int == 0)
        // Placed, then started: both moments are shown, in that order.
        let placed = try #require(done["placed_at"] as? String)
        let started = try #require(done["started_at"] as? String)
        #expect(placed >= (done["submitted_at"] as? String ?? "") && placed <= started)
        #expect(c.cli(["status", job]).out.contains("placed          \(placed)"))
        let noticePath = try String(contentsOfFile: "\(c.dir)/data/work/\(job)/node-1/notice-path.txt", encoding: .utf8)
        #expect(noticePath.hasPrefix("notice=/"), "the job gets an absolute notice path: \(noticePath)")
        let logs = c.cli(["logs", job])
        #expect(logs.out == "gpus=0,1 job=\(job) greeting=hello\n")
        let usage = c.cli(["usage", "--json", "--job", job])
        let total = usage.json["total_gpu_milliseconds"] as? Int ?? 0
        #expect(total >= 2000, "2 GPUs for at least a second: \(usage.out)")

        // The scheduler's answers, through the CLI.
        let why = c.cli(["why", job])
        #expect(why.code == 0)
        #expect(why.out.contains("\(job) (on-demand): ended: succeeded"), "\(why.out)")
        let quote = c.cli(["quote", "job.yaml"])
        #expect(quote.code == 0, "\(quote.err)")
        #expect(quote.out.contains("on-demand") && quote.out.contains("now"), "\(quote.out)")
        let share = c.cli(["share", "--json"])
        #expect((share.json["items"] as? [[String: Any]])?.contains { $0["org"] as? String == "internal" } == true)

        // A second tenant with its own key sees only its own jobs.
        #expect(c.cli(["orgs", "create", "acme"]).code == 0)
        let tenantKey = try #require(
            c.cli(["keys", "create", "--org", "acme", "--role", "member", "--json"]).json["secret"] as? String)
        let tenantView = c.cli(["status", "--json"], key: tenantKey)
        #expect((tenantView.json["items"] as? [Any])?.isEmpty == true, "\(tenantView.out)")
        let peek = c.cli(["status", job], key: tenantKey)
        #expect(peek.code == 1)
        #expect(peek.err.contains("not found"))

        // Bad input: clear message, non-zero exit.
        try "name: [unclosed\n".write(toFile: "\(c.dir)/bad.yaml", atomically: true, encoding: .utf8)
        let bad = c.cli(["launch", "bad.yaml"])
        #expect(bad.code != 0)
        #expect(bad.err.contains("bad.yaml: malformed YAML"))
        try "resources: {accelerators: H100:99}\nrun: x\n".write(toFile: "\(c.dir)/big.yaml", atomically: true, encoding: .utf8)
        let big = c.cli(["launch", "big.yaml"])
        #expect(big.code != 0)
        #expect(big.err.contains("at most 72 GPUs per node"))

        #expect(try await c.stop() == 0, "clean exit on SIGTERM: \(c.serverLog("up1.log"))")

        // Restart: the same job, logs and usage are all still there; no new key.
        try await c.up(logName: "up2.log")
        #expect(!c.serverLog("up2.log").contains("Operator admin key"))
        let again = c.cli(["status", job, "--json"]).json
        #expect(again["state"] as? String == "succeeded")
        #expect(again["submitted_at"] as? String == done["submitted_at"] as? String)
        #expect(again["placed_at"] as? String == done["placed_at"] as? String)
        #expect(c.cli(["logs", job]).out == logs.out)
        #expect(c.cli(["usage", "--json", "--job", job]).json["total_gpu_milliseconds"] as? Int == total)
        #expect(c.cli(["status", "--json"], key: tenantKey).code == 0, "tenant keys survive restarts")
        #expect(try await c.stop() == 0)
    }

    @Test func crashAndRestartLosesNothingAcknowledged() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        let c = try Cluster()
        try await c.up(logName: "up1.log")
        let admin = try String(contentsOfFile: "\(c.dir)/data/admin.key", encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        c.env["STRATUS_API_KEY"] = admin
        try "resources: {accelerators: H100:8}\nnum_nodes: 8\nrun: echo $$ > $STRATUS_JOB_ID.pid; echo started; sleep 300\n"
            .write(toFile: "\(c.dir)/long.yaml", atomically: true, encoding: .utf8)
        try "resources: {accelerators: H100:1}\nrun: echo after\n".write(
            toFile: "\(c.dir)/small.yaml", atomically: true, encoding: .utf8)
        let long = try #require(c.cli(["launch", "long.yaml", "--json"]).json["id"] as? String)
        _ = try await c.waitForState(long, "running")
        // Acknowledged while the fleet is full: it must survive the crash.
        let queued = try #require(
            c.cli(["launch", "small.yaml", "--json", "--idempotency-key", "small-1"]).json["id"] as? String)
        let pidFile = "\(c.dir)/data/work/\(long)/node-1/\(long).pid"
        var orphan: Int32 = 0
        for _ in 0..<100 where orphan == 0 {
            orphan =
                Int32(
                    (try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                ) ?? 0
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(orphan > 0)

        kill(c.server!.processIdentifier, SIGKILL)
        c.server!.waitUntilExit()
        c.server = nil
        #expect(AgentTests().alive(orphan), "the job outlives a kill -9 of the server")

        try await c.up(logName: "up2.log")
        // The restarted in-process agents adopt the job: it keeps running, not started twice.
        try await Task.sleep(for: .seconds(2))
        let adopted = c.cli(["status", long, "--json"]).json
        #expect(adopted["state"] as? String == "running", "\(adopted)")
        #expect(AgentTests().alive(orphan), "the adopted process still runs")
        #expect(c.serverLog("up2.log").contains("adopted \(long)#1 (pid"), "\(c.serverLog("up2.log"))")
        let log = (try? String(contentsOfFile: "\(c.dir)/data/logs/\(long)/node-1.log", encoding: .utf8)) ?? ""
        #expect(log.components(separatedBy: "started").count == 2, "started once: \(log)")
        // Stopping it still works through the adopted process group.
        #expect(c.cli(["cancel", long]).code == 0)
        let cancelled = try await c.waitForState(long, "cancelled")
        #expect(cancelled["state"] as? String == "cancelled")
        try await Task.sleep(for: .milliseconds(300))
        #expect(!AgentTests().alive(orphan), "the adopted process group was stopped")
        // The queued job was acknowledged before the crash; now it runs.
        let done = try await c.waitForState(queued, "succeeded")
        #expect(done["id"] as? String == queued)
        let retry = c.cli(["launch", "small.yaml", "--json", "--idempotency-key", "small-1"])
        #expect(retry.json["id"] as? String == queued, "the idempotency key survived the crash")
        #expect(try await c.stop() == 0)
    }

    /// Kill -9 the server while it ingests a stream of usage events, restart, resend
    /// every batch not acknowledged: nothing lost, nothing counted twice, the ledger
    /// balanced, and the charges equal to a recomputation from the raw events.
    @Test func killDashNineWhileIngestingUsageLosesAndDoublesNothing() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        let c = try Cluster()
        try await c.up(logName: "up1.log")
        let admin = try String(contentsOfFile: "\(c.dir)/data/admin.key", encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        c.env["STRATUS_API_KEY"] = admin
        #expect(c.cli(["orgs", "create", "acme"]).code == 0)
        #expect(c.cli(["projects", "create", "train", "--org", "acme"]).code == 0)

        // 40 batches of 250 events from the last hour, on-demand and spot, two projects.
        let now = Timestamp(seconds: Int64(Date().timeIntervalSince1970))
        var rng = SeededRandom(seed: 42)
        var events: [UsageEvent] = []
        for i in 0..<10_000 {
            let seconds = Int64(1 + rng.next(below: 1800))
            let end = now.adding(seconds: -Int64(rng.next(below: 1800)) - 1)
            events.append(
                UsageEvent(
                    source: "meter/e2e", id: "u\(i)", org: "acme", project: i % 3 == 0 ? "train" : "default", gpuModel: "H100",
                    region: i % 2 == 0 ? "us-east" : "eu-west", tier: i % 5 == 0 ? .spot : .onDemand,
                    gpus: 1 + Int(rng.next(below: 8)), start: end.adding(seconds: -seconds), end: end))
        }
        func body(_ batch: ArraySlice<UsageEvent>) -> String {
            "["
                + batch.map { e in
                    #"{"specversion":"1.0","type":"dev.stratus.usage.gpu","id":"\#(e.id)","source":"\#(e.source)","data":{"org":"acme","project":"\#(e.project)","gpu_model":"H100","region":"\#(e.region)","tier":"\#(e.tier.rawValue)","gpus":\#(e.gpus),"start":"\#(e.start)","end":"\#(e.end)"}}"#
                }.joined(separator: ",") + "]"
        }
        let batches = stride(from: 0, to: events.count, by: 250).map { events[$0..<min(events.count, $0 + 250)] }
        func post(_ batch: ArraySlice<UsageEvent>) async -> Bool {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(c.port)/v1/usage/events")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(admin)")
            request.headers.add(name: "Content-Type", value: "application/cloudevents-batch+json")
            request.body = .bytes(ByteBuffer(string: body(batch)))
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(10)) else { return false }
            _ = try? await response.body.collect(upTo: 1 << 24)
            return response.status == .ok
        }

        // Send in order; kill -9 the server a few milliseconds into batch 12.
        var acknowledged = Set<Int>()
        let server = try #require(c.server)
        for (i, batch) in batches.enumerated() {
            if i == 12 {
                Task {
                    try await Task.sleep(for: .milliseconds(3))
                    kill(server.processIdentifier, SIGKILL)
                }
            }
            // A client stops at the first failure and resends from there once the server is back.
            guard await post(batch) else { break }
            acknowledged.insert(i)
        }
        server.waitUntilExit()
        c.server = nil
        #expect(acknowledged.contains(11), "batches before the kill were acknowledged")
        #expect(acknowledged.count < batches.count, "the kill interrupted the stream")

        try await c.up(logName: "up2.log")
        for (i, batch) in batches.enumerated() where !acknowledged.contains(i) {
            #expect(await post(batch), "resending batch \(i)")
        }
        // Resending acknowledged batches too (a client unsure of its acks) changes nothing.
        #expect(await post(batches[0]))

        let ledger = c.cli(["ledger", "--json"]).json
        #expect(ledger["balanced"] as? Bool == true, "\(ledger)")
        var recomputed = Billing()
        for (sku, point) in PriceBook.defaultPoints(at: now) { recomputed.prices.set(sku, point) }
        for start in stride(from: 0, to: events.count, by: Limits.maxUsageEventsPerBatch) {
            _ = try recomputed.ingest(
                Array(events[start..<min(events.count, start + Limits.maxUsageEventsPerBatch)]), now: now, commit: true)
        }
        let accounts = ledger["accounts"] as? [[String: Any]] ?? []
        let receivable = accounts.first { $0["account"] as? String == "receivable/acme" }?["balance"] as? String
        #expect(receivable == recomputed.ledger.balance(.receivable("acme")).description)
        let period = Period(containing: now)
        let preview = c.cli(["invoices", "preview", "--org", "acme", "--format", "json"]).json
        let lines = preview["lines"] as? [[String: Any]] ?? []
        let expected = Invoice.build(
            org: "acme", period: period, charges: recomputed.open["acme"]?[period] ?? PeriodCharges(), currency: .usd,
            issuedAt: now)
        #expect(lines.map { $0["gpu_seconds"] as? Int ?? -1 } == expected.lines.map { Int($0.gpuSeconds) })
        #expect(lines.map { $0["amount"] as? String ?? "" } == expected.lines.map(\.amount.description))
        #expect(preview["total"] as? String == expected.total.description)
        #expect(try await c.stop() == 0)
    }
}

/// `stratus sim` as a user runs it: the same trace twice, in two processes, gives the
/// same summary, series and report byte for byte (no hashing order or wall clock leaks
/// into the run).
@Suite struct SimulationCLITests {
    @Test func aTraceRunTwiceGivesTheSameSummary() throws {
        try #require(FileManager.default.isExecutableFile(atPath: EndToEndTests.binary))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stratus-sim-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 300 jobs from 5 virtual clusters over a day, 1-32 GPUs: enough to queue on 64 GPUs.
        var rows = ["timestamp,duration,num_gpus,gpu_time,cluster"]
        var x: UInt64 = 7
        for i in 0..<300 {
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let gpus = [1, 1, 2, 4, 8, 16, 32][Int(x >> 40) % 7]
            let minute = i * 4 + Int(x >> 50) % 4
            let duration = 60 + Int(x >> 33) % 7200
            rows.append(
                "2017-10-01 \(String(format: "%02d:%02d", minute / 60 % 24, minute % 60)):00,\(duration).0,\(gpus),0,vc\(Int(x >> 45) % 5)"
            )
        }
        try rows.joined(separator: "\n").write(toFile: "\(dir)/trace.csv", atomically: true, encoding: .utf8)
        var outputs: [Data] = []
        for run in 0..<2 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: EndToEndTests.binary)
            p.arguments = ["sim", "--philly", "\(dir)/trace.csv", "--gpus", "64", "--out", "\(dir)/out\(run)"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            for file in ["summary.json", "series.csv", "report.html"] {
                outputs.append(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out\(run)/\(file)")))
            }
        }
        #expect(outputs[0] == outputs[3] && outputs[1] == outputs[4] && outputs[2] == outputs[5], "byte for byte")
        let summary = try JSONSerialization.jsonObject(with: outputs[0]) as? [String: Any] ?? [:]
        #expect(summary["jobs"] as? Int == 300)
        #expect(summary["ledger_balanced"] as? Bool == true)
        let queued = ((summary["tiers"] as? [String: Any])?["on-demand"] as? [String: Any])?["queue_delay_seconds"]
        #expect(((queued as? [String: Any])?["p99"] as? Int ?? 0) > 0, "the trace queues on 64 GPUs")
    }

    /// Runs the built `stratus` with `args` to its end: its exit status and standard error.
    static func stratus(_ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: EndToEndTests.binary)
        p.arguments = args
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// `stratus up` refuses a job retention shorter than an hour, naming the option,
    /// before it opens anything.
    @Test func upRefusesARetentionUnderAnHour() throws {
        try #require(FileManager.default.isExecutableFile(atPath: EndToEndTests.binary))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stratus-retain-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, text) = try Self.stratus(["up", "--data", dir, "--port", "0", "--retain-jobs", "10m"])
        #expect(status != 0)
        #expect(text.contains("--retain-jobs: at least 1h (10m given)"))
        #expect(!FileManager.default.fileExists(atPath: dir))
    }

    /// Two small scenarios compared from the command line: the report puts both side by
    /// side, each run's files are written, two processes give the same bytes, and a bad
    /// scenario is refused with the field named and a non-zero exit.
    @Test func aWhatIfComparisonRunsFromTheCommandLine() throws {
        try #require(FileManager.default.isExecutableFile(atPath: EndToEndTests.binary))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stratus-whatif-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sell = """
            name: sell the surplus
            seed: 5
            start: 2027-01-01
            horizon_days: 3
            sites:
              - name: dal
                build_out: [{at: 2027-01-01, mw: 0.2, gpu_model: H100}]
            internal:
              inference: {gpu_model: H100, gpus_at_peak: 48}
            demand:
              - {name: od, tier: on_demand, gpu_model: H100, arrivals_per_day: 12, sizes: {8: 100%}, mean_duration: 2h}
              - {name: sp, tier: spot, gpu_model: H100, arrivals_per_day: 30, sizes: {8: 100%}, mean_duration: 3h, elasticity: 1}

            """
        let idle = sell.replacingOccurrences(of: "sell the surplus", with: "keep it idle").replacingOccurrences(
            of:
                "  - {name: sp, tier: spot, gpu_model: H100, arrivals_per_day: 30, sizes: {8: 100%}, mean_duration: 3h, elasticity: 1}\n",
            with: "")
        try sell.write(toFile: "\(dir)/sell.yaml", atomically: true, encoding: .utf8)
        try idle.write(toFile: "\(dir)/idle.yaml", atomically: true, encoding: .utf8)
        try "start: 2027-01-01\nsites: [{name: a, build_out: [{at: 2027-01-01, mw: -1, gpu_model: H100}]}]\n".write(
            toFile: "\(dir)/bad.yaml", atomically: true, encoding: .utf8)
        func sim(_ args: [String]) throws -> (Int32, String) { try Self.stratus(["sim"] + args) }
        var outputs: [Data] = []
        for run in 0..<2 {
            let (status, _) = try sim(["\(dir)/sell.yaml", "--compare", "\(dir)/idle.yaml", "--out", "\(dir)/w\(run)"])
            #expect(status == 0)
            for file in ["report.html", "comparison.json", "a/summary.json", "b/months.csv"] {
                outputs.append(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/w\(run)/\(file)")))
            }
        }
        #expect(outputs[0..<4] == outputs[4..<8], "byte for byte")
        let html = String(decoding: outputs[0], as: UTF8.self)
        #expect(html.contains("What-if: sell the surplus vs keep it idle") && html.contains("<polyline"))
        let both = try JSONSerialization.jsonObject(with: outputs[1]) as? [String: Any] ?? [:]
        let a = both["a"] as? [String: Any] ?? [:]
        let b = both["b"] as? [String: Any] ?? [:]
        let tiersA = a["tiers"] as? [String: Any] ?? [:]
        let tiersB = b["tiers"] as? [String: Any] ?? [:]
        #expect(tiersA["spot"] != nil && tiersB["spot"] == nil, "only the first sells spot")
        #expect(a["ledger_balanced"] as? Bool == true && b["ledger_balanced"] as? Bool == true)
        let (status, stderr) = try sim(["\(dir)/bad.yaml", "--out", "\(dir)/bad"])
        #expect(status != 0)
        #expect(stderr.contains("sites[0].build_out[0].mw"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/bad"), "nothing written")
    }
}
