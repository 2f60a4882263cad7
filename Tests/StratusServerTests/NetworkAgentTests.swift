import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `stratus agent` as separate processes on loopback against a real `stratus up`: jobs on
/// one and two nodes, a kill -9 of an agent mid-job, an agent restart, GPU discovery and
/// samples through an `nvidia-smi` stand-in that prints what the real one prints, and
/// the separation of agent tokens and API keys.
@Suite(.serialized) struct NetworkAgentTests {
    typealias Cluster = EndToEndTests.Cluster

    /// Prints what `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` prints on
    /// an H100 machine; UUIDs carry $FAKE_GPU_PREFIX so two agents differ.
    static let fakeSMI = """
        #!/bin/sh
        p=${FAKE_GPU_PREFIX:-0000}
        case "$*" in
          *name,memory.total*)
            echo "0, GPU-$p-0000-1111, NVIDIA H100 80GB HBM3, 81559, 700.00"
            echo "1, GPU-$p-0000-2222, NVIDIA H100 80GB HBM3, 81559, 700.00";;
          *utilization.gpu*)
            echo "0, GPU-$p-0000-1111, 87, 40321, 81559, 512.34"
            echo "1, GPU-$p-0000-2222, 3, 1, 81559, [N/A]";;
          *) exit 9;;
        esac
        """

    final class Agents {
        let cluster: Cluster
        var processes: [String: Process] = [:]
        init(_ cluster: Cluster) { self.cluster = cluster }

        /// Starts `stratus agent` for `node` (2 GPUs from the nvidia-smi stand-in), with
        /// flags, or (`fromConfig`) with a config file and the environment.
        func start(_ node: String, prefix: String, token: String = "agent.token", fromConfig: Bool = false) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: EndToEndTests.binary)
            var env = ProcessInfo.processInfo.environment
            if fromConfig {
                let config = "\(cluster.dir)/agent-\(node).yaml"
                let yaml = [
                    "token_file: \(token)", "rack: rack-1", "address: 127.0.0.1", "work_dir: agent-\(node)",
                    "nvidia_smi: \(cluster.dir)/nvidia-smi", "sample_interval: 1s", "labels: {pool: config}",
                ]
                try yaml.joined(separator: "\n").write(toFile: config, atomically: true, encoding: .utf8)
                p.arguments = ["agent", "--config", config]
                env["STRATUS_SERVER"] = "http://127.0.0.1:\(cluster.port)"
                env["STRATUS_NODE"] = node
            } else {
                p.arguments = [
                    "agent", "--server", "http://127.0.0.1:\(cluster.port)", "--token-file", token, "--node", node, "--rack",
                    "rack-1", "--address", "127.0.0.1", "--work-dir", "agent-\(node)", "--nvidia-smi",
                    "\(cluster.dir)/nvidia-smi", "--sample-interval", "1s",
                ]
            }
            p.currentDirectoryURL = URL(fileURLWithPath: cluster.dir)
            env["FAKE_GPU_PREFIX"] = prefix
            env["STRATUS_API_KEY"] = nil
            p.environment = env
            let logPath = "\(cluster.dir)/agent-\(node)-\(processes.count).log"
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            p.standardOutput = log
            p.standardError = log
            try p.run()
            processes[node] = p
        }

        func signal(_ node: String, _ sig: Int32) {
            guard let p = processes[node] else { return }
            kill(p.processIdentifier, sig)
            p.waitUntilExit()
        }

        func logs(_ node: String) -> String {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: cluster.dir)) ?? []
            return files.filter { $0.hasPrefix("agent-\(node)-") && $0.hasSuffix(".log") }.sorted().map {
                (try? String(contentsOfFile: "\(cluster.dir)/\($0)", encoding: .utf8)) ?? ""
            }.joined()
        }

        deinit { for p in processes.values where p.isRunning { kill(p.processIdentifier, SIGKILL) } }
    }

    /// A server with no demo fleet (heartbeat 1 s, lost after 4 s), one rack, a fleet-wide
    /// agent token, and agents gpu-a and gpu-b.
    func world() async throws -> (Cluster, Agents) {
        try #require(FileManager.default.isExecutableFile(atPath: EndToEndTests.binary))
        let c = try Cluster()
        try await c.up(logName: "up.log", ["--no-demo-fleet", "--heartbeat", "1s", "--node-lost-after", "4s"])
        c.env["STRATUS_API_KEY"] = try String(contentsOfFile: "\(c.dir)/data/admin.key", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try Self.fakeSMI.write(toFile: "\(c.dir)/nvidia-smi", atomically: true, encoding: .utf8)
        chmod("\(c.dir)/nvidia-smi", 0o755)
        try
            "regions:\n  - name: lab\n    sites:\n      - name: lab-dc\n        power_mw: 1\n        racks:\n          - name: rack-1\n"
            .write(toFile: "\(c.dir)/fleet.yaml", atomically: true, encoding: .utf8)
        #expect(c.cli(["fleet", "apply", "fleet.yaml"]).code == 0)
        let token = c.cli(["nodes", "token", "create", "--out", "agent.token"])
        #expect(token.code == 0, "\(token.err)")
        let agents = Agents(c)
        try agents.start("gpu-a", prefix: "aaaa")
        try agents.start("gpu-b", prefix: "bbbb", fromConfig: true)
        // Two processes starting on a 2-core machine that runs the whole suite at once:
        // given a minute and a half, and their logs shown if they do not make it.
        try await waitFor(
            "both agents registered", seconds: 90,
            context: { "gpu-a:\n\(agents.logs("gpu-a"))\ngpu-b:\n\(agents.logs("gpu-b"))" }
        ) {
            let nodes = c.cli(["nodes", "--json"]).json["items"] as? [[String: Any]] ?? []
            return nodes.filter { $0["state"] as? String == "ready" }.count == 2
        }
        return (c, agents)
    }

    func waitFor(
        _ what: String, seconds: Int = 30, context: () -> String = { "" }, _ done: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try await done() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("timed out waiting for \(what)\n\(context())")
    }

    func launch(_ c: Cluster, _ yaml: String) throws -> String {
        let name = "job-\(UUID().uuidString.prefix(8)).yaml"
        try yaml.write(toFile: "\(c.dir)/\(name)", atomically: true, encoding: .utf8)
        let r = c.cli(["launch", name, "--json"])
        return try #require(r.json["id"] as? String, "\(r.err)")
    }

    @Test func twoNodeJobSeesWhatLaunchersExpectAndReportsSamples() async throws {
        let (c, agents) = try await world()
        // Discovery: the stand-in's GPUs, mapped to the catalog's H100.
        let node = c.cli(["nodes", "show", "gpu-a", "--json"]).json
        let gpus = (node["agent"] as? [String: Any])?["gpus"] as? [[String: Any]] ?? []
        #expect(gpus.count == 2)
        #expect(gpus.first?["name"] as? String == "NVIDIA H100 80GB HBM3")
        #expect(gpus.first?["uuid"] as? String == "GPU-aaaa-0000-1111")
        #expect(gpus.first?["memory_mib"] as? Int == 81559)
        #expect(node["gpu"] as? String == "H100")
        // gpu-b's agent took its settings from a config file and the environment.
        #expect((c.cli(["nodes", "show", "gpu-b", "--json"]).json["labels"] as? [String: String])?["pool"] == "config")

        let job = try launch(
            c,
            """
            resources: {accelerators: H100:2}
            num_nodes: 2
            run: |
              echo "rank=$NODE_RANK nnodes=$NNODES world=$WORLD_SIZE per_node=$GPUS_PER_NODE master=$MASTER_ADDR:$MASTER_PORT job=$STRATUS_JOB_ID cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES"
              sleep 30
            """)
        // The job runs 30 s (samples every 1 s) so that a busy CI machine, where each CLI
        // call and each process start takes a while, still sees it running with its samples.
        var top: [String: Any] = [:]
        try await waitFor("samples of the running job", seconds: 45) {
            top = c.cli(["top", job, "--json"]).json
            return (top["gpus"] as? [[String: Any]] ?? []).count == 4
        }
        let rows = top["gpus"] as? [[String: Any]] ?? []
        let first = rows.first { $0["node"] as? String == "gpu-a" && $0["gpu_index"] as? Int == 0 }
        #expect(first?["utilization_pct"] as? Int == 87)
        #expect(first?["memory_used_mib"] as? Int == 40321)
        #expect(first?["gpu_uuid"] as? String == "GPU-aaaa-0000-1111")
        #expect(first?["power_w"] as? Int == 512)
        #expect(c.cli(["top", job]).out.contains("GPU-bbbb-0000-1111"))

        let done = try await c.waitForState(job, "succeeded")
        #expect(done["state"] as? String == "succeeded")
        var lines: [String: String] = [:]
        for n in ["gpu-a", "gpu-b"] { lines[n] = c.cli(["logs", job, "--node", n]).out }
        let ranks = Set(lines.values.compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(ranks == ["rank=0", "rank=1"], "\(lines)")
        let port = lines.values.compactMap { text -> String? in
            text.split(separator: " ").first { $0.hasPrefix("master=") }.map(String.init)
        }
        #expect(port.count == 2 && port[0] == port[1] && port[0].hasPrefix("master=127.0.0.1:"), "one MASTER_ADDR:PORT")
        for (n, text) in lines {
            let prefix = n == "gpu-a" ? "aaaa" : "bbbb"
            #expect(text.contains("nnodes=2 world=4 per_node=2"), "\(text)")
            #expect(text.contains("job=\(job)"))
            #expect(
                text.contains(
                    "cuda=GPU-\(prefix)-0000-1111,GPU-\(prefix)-0000-2222 nvidia=GPU-\(prefix)-0000-1111,GPU-\(prefix)-0000-2222"),
                "only its GPUs, by UUID: \(text)")
        }
        _ = agents
        #expect(try await c.stop() == 0)
    }

    @Test func tokensAndKeysAreKeptApart() async throws {
        let (c, agents) = try await world()
        let token = try String(contentsOfFile: "\(c.dir)/agent.token", encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        let admin = c.env["STRATUS_API_KEY"]!
        func status(_ method: String, _ path: String, _ secret: String, _ body: String? = nil) -> (Int, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            p.arguments =
                ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", "Authorization: Bearer \(secret)"]
                + (body.map { ["-d", $0] } ?? []) + ["http://127.0.0.1:\(c.port)\(path)"]
            let out = Pipe()
            p.standardOutput = out
            try? p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let text = String(decoding: data, as: UTF8.self)
            let parts = text.split(separator: "\n")
            return (Int(parts.last ?? "") ?? 0, parts.dropLast().joined(separator: "\n"))
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else {
            Issue.record("curl is needed for this test")
            return
        }
        // An agent token cannot call tenant endpoints; an API key cannot call agent ones.
        #expect(status("GET", "/v1/jobs", token).0 == 403)
        let (code, text) = status("POST", "/v1/agent/heartbeat", admin, #"{"node":"gpu-a"}"#)
        #expect(code == 403 && text.contains("API keys cannot call agent endpoints"))
        #expect(status("POST", "/v1/agent/heartbeat", token, #"{"node":"gpu-a"}"#).0 == 200)
        // A report for a job not assigned to the node is refused.
        let job = try launch(c, "resources: {accelerators: H100:2}\nrun: sleep 30\n")
        _ = try await c.waitForState(job, "running")
        let running = c.cli(["status", job, "--json"]).json
        let on = ((running["allocations"] as? [[String: Any]])?.first?["node"] as? String) ?? ""
        let other = on == "gpu-a" ? "gpu-b" : "gpu-a"
        let refused = status("POST", "/v1/agent/jobs/\(job)/exited", token, #"{"node":"\#(other)","exit_code":0}"#)
        #expect(refused.0 == 409 && refused.1.contains("has no allocation on node \(other)"), "\(refused)")
        // Samples for GPUs the node did not register are refused.
        let bogus = status(
            "POST", "/v1/agent/samples", token,
            #"{"node":"\#(on)","samples":[{"job":"\#(job)","gpu_index":0,"gpu_uuid":"GPU-not-mine","utilization_pct":5}]}"#)
        #expect(bogus.0 == 409, "\(bogus)")
        #expect(c.cli(["status", job, "--json"]).json["state"] as? String == "running", "nothing changed")
        // A token confined to one node cannot speak for another; a revoked one for none.
        let bound = c.cli(["nodes", "token", "create", "--node", "gpu-a", "--json"]).json
        let boundSecret = try #require(bound["secret"] as? String)
        #expect(status("POST", "/v1/agent/heartbeat", boundSecret, #"{"node":"gpu-b"}"#).0 == 403)
        #expect(c.cli(["nodes", "token", "revoke", try #require(bound["id"] as? String)]).code == 0)
        #expect(status("POST", "/v1/agent/heartbeat", boundSecret, #"{"node":"gpu-a"}"#).0 == 401)
        #expect(c.serverLog("up.log").contains("invalid or revoked token"))
        _ = agents
        #expect(c.cli(["cancel", job]).code == 0)
        #expect(try await c.stop() == 0)
    }

    @Test func killDashNineAnAgentMidJobRequeuesItElsewhereAndCountsUsageOnce() async throws {
        let (c, agents) = try await world()
        let job = try launch(
            c,
            """
            resources: {accelerators: H100:2}
            run: |
              if [ "$STRATUS_ATTEMPT" = 0 ]; then echo "first run on $STRATUS_NODE"; sleep 300; fi
              echo "second run on $STRATUS_NODE"
            """)
        _ = try await c.waitForState(job, "running")
        try await Task.sleep(for: .seconds(2))
        let first = ((c.cli(["status", job, "--json"]).json["allocations"] as? [[String: Any]])?.first?["node"] as? String) ?? ""
        let survivor = first == "gpu-a" ? "gpu-b" : "gpu-a"
        let killedAt = Date()
        agents.signal(first, SIGKILL)
        let done = try await c.waitForState(job, "succeeded")
        let lostAfter = Date().timeIntervalSince(killedAt)
        #expect(lostAfter >= 3, "lost only after the timeout (4 s), not at once: \(lostAfter)")
        let allocations = done["allocations"] as? [[String: Any]] ?? []
        #expect(allocations.first?["node"] as? String == survivor)
        let events = (done["events"] as? [[String: Any]] ?? []).compactMap { $0["kind"] as? String }
        #expect(events.contains("node_lost") && events.contains("requeued"), "\(events)")
        #expect(c.cli(["logs", job, "--node", survivor]).out.contains("second run on \(survivor)"))
        let node = c.cli(["nodes", "show", first, "--json"]).json
        #expect(node["state"] as? String == "lost")
        // Usage: one record per run; the first stops when the agent was last heard from.
        let usage = c.cli(["usage", "--json", "--group-by", "node", "--job", job]).json
        let rows = usage["items"] as? [[String: Any]] ?? []
        #expect(rows.count == 2, "\(usage)")
        let firstMs = rows.first { ($0["key"] as? [String: Any])?["node"] as? String == first }?["gpu_milliseconds"] as? Int ?? 0
        #expect(firstMs > 0)
        #expect(firstMs <= 2 * Int((Date().timeIntervalSince(killedAt) - lostAfter + 2 + 2.5) * 1000), "\(firstMs)")
        #expect(rows.allSatisfy { $0["records"] as? Int == 1 }, "each run counted once: \(rows)")

        // The first run's process outlived its agent. A new agent there adopts it, learns
        // the control plane gave it up, and kills it: nothing runs twice.
        let orphans = try String(contentsOfFile: "\(c.dir)/agent-\(first)/work/\(job)/\(first).pid", encoding: .utf8)
        let orphan = Int32(orphans.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(AgentTests().alive(orphan))
        try agents.start(first, prefix: first == "gpu-a" ? "aaaa" : "bbbb")
        try await waitFor("the orphan killed") { !AgentTests().alive(orphan) }
        #expect(agents.logs(first).contains("killing \(job)#1"))
        try await waitFor("the node back") { c.cli(["nodes", "show", first, "--json"]).json["state"] as? String == "ready" }
        #expect(try await c.stop() == 0)
    }

    @Test func aRestartedAgentAdoptsItsWorkOrReportsPreciselyHowItEnded() async throws {
        let (c, agents) = try await world()
        // Both on one node: a cordon keeps gpu-b out.
        #expect(c.cli(["nodes", "cordon", "gpu-b", "--reason", "test"]).code == 0)
        let quick = try launch(c, "resources: {accelerators: H100:1}\nrun: sleep 2; exit 3\n")
        let slow = try launch(
            c, "resources: {accelerators: H100:1}\nrun: echo begin $CUDA_VISIBLE_DEVICES $WORLD_SIZE; sleep 8; echo end\n")
        _ = try await c.waitForState(quick, "running")
        _ = try await c.waitForState(slow, "running")
        agents.signal("gpu-a", SIGTERM)
        #expect(agents.logs("gpu-a").contains("2 jobs keep running"))
        // The quick one ends while no agent runs; the slow one outlives the gap.
        try await Task.sleep(for: .seconds(3))
        try agents.start("gpu-a", prefix: "aaaa")
        let failed = try await c.waitForState(quick, "failed")
        #expect((failed["reason"] as? String)?.contains("exit code 3 on gpu-a") == true, "\(failed)")
        #expect(agents.logs("gpu-a").contains("adopted \(slow)#1"))
        let succeeded = try await c.waitForState(slow, "succeeded")
        #expect(succeeded["state"] as? String == "succeeded")
        let log = c.cli(["logs", slow, "--node", "gpu-a"]).out
        // One GPU of gpu-a, by UUID; the output of an adopted job still arrives, once.
        #expect(
            log == "begin GPU-aaaa-0000-1111 1\nend\n" || log == "begin GPU-aaaa-0000-2222 1\nend\n",
            "\(log)")
        // The drain: gpu-a takes nothing new, gpu-b back in service takes the next job.
        #expect(c.cli(["nodes", "drain", "gpu-a"]).code == 0)
        #expect(c.cli(["nodes", "uncordon", "gpu-b"]).code == 0)
        let next = try launch(c, "resources: {accelerators: H100:1}\nrun: echo ok\n")
        let ran = try await c.waitForState(next, "succeeded")
        #expect((ran["allocations"] as? [[String: Any]])?.first?["node"] as? String == "gpu-b")
        #expect(c.cli(["nodes", "show", "gpu-a", "--json"]).json["state"] as? String == "drained")
        #expect(try await c.stop() == 0)
    }
}
