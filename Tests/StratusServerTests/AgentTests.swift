import Foundation
import Logging
import StratusAgent
import StratusControl
import StratusCore
import StratusServer
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real agent running real processes against a real control plane (in-memory store).
@Suite struct AgentTests {
    func submit(_ cloud: TestCloud, run: String, gpus: Int = 2, maxDuration: Int64? = nil) async throws -> JobID {
        let spec = JobSpec(name: "a", gpuModel: "H100", gpusPerNode: gpus, run: run, maxDurationSeconds: maxDuration)
        let outcome = try await cloud.plane.execute(
            .submitJob(SubmitJob(org: "internal", spec: spec, idempotencyKey: nil, by: "key-1")))
        try await cloud.plane.schedule()
        return JobID(outcome.id)
    }

    /// Runs the agent for node-1 while `body` runs, then stops it.
    func withAgent(_ cloud: TestCloud, _ body: () async throws -> Void) async throws {
        var agent = NodeAgent(
            node: "node-1", link: LocalAgentLink(plane: cloud.plane), files: cloud.files, logger: Logger(label: "test"))
        agent.pollInterval = .milliseconds(50)
        agent.stopGraceSeconds = 2
        let task = Task { await agent.run() }
        defer { task.cancel() }
        try await body()
        task.cancel()
        await task.value
    }

    func waitFor(_ cloud: TestCloud, _ job: JobID, seconds: Int = 30, _ done: @escaping @Sendable (Job) -> Bool) async throws
        -> Job
    {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            let j = await cloud.plane.read { $0.jobs[job]! }
            if done(j) { return j }
            try await Task.sleep(for: .milliseconds(50))
        }
        return await cloud.plane.read { $0.jobs[job]! }
    }

    func log(_ cloud: TestCloud, _ job: JobID) -> String {
        (try? String(contentsOfFile: cloud.files.logPath(job: job, node: "node-1"), encoding: .utf8)) ?? ""
    }

    @Test func runsWithOnlyItsGPUsVisibleAndReportsTheExitCode() async throws {
        let cloud = try await TestCloud.make()
        let first = try await submit(
            cloud, run: "echo \"gpus=$CUDA_VISIBLE_DEVICES nv=$NVIDIA_VISIBLE_DEVICES rank=$NODE_RANK\"; exit 0")
        let second = try await submit(cloud, run: "echo \"gpus=$CUDA_VISIBLE_DEVICES\" >&2; exit 7", gpus: 3)
        try await withAgent(cloud) {
            let a = try await waitFor(cloud, first) { $0.state.isTerminal }
            let b = try await waitFor(cloud, second) { $0.state.isTerminal }
            #expect(a.state == .succeeded)
            #expect(log(cloud, first) == "gpus=0,1 nv=0,1 rank=0\n")
            #expect(b.state == .failed)
            #expect(b.allocations.first?.exitCode == 7)
            #expect(b.reason == "exit code 7 on node-1")
            #expect(log(cloud, second) == "gpus=2,3,4\n", "stderr is captured too")
        }
    }

    @Test func enforcesMaxDuration() async throws {
        let cloud = try await TestCloud.make()
        let job = try await submit(cloud, run: "echo start; sleep 60", maxDuration: 1)
        try await withAgent(cloud) {
            let j = try await waitFor(cloud, job) { $0.state.isTerminal }
            #expect(j.state == .failed)
            #expect(j.allocations.first?.endReason == "max_duration exceeded (1s)")
            let ran =
                j.allocations.first.flatMap { a in a.startedAt.flatMap { s in a.endedAt.map { s.milliseconds(until: $0) } } } ?? 0
            #expect(ran >= 1000 && ran < 10_000, "stopped after about a second: \(ran) ms")
        }
    }

    @Test func cancelStopsTheWholeProcessTree() async throws {
        let cloud = try await TestCloud.make()
        // The job starts a grandchild that ignores nothing and would outlive a plain kill of the shell.
        let job = try await submit(cloud, run: "sleep 300 & echo $! > child.pid; wait")
        try await withAgent(cloud) {
            _ = try await waitFor(cloud, job) { $0.state == .running }
            let pidFile = cloud.files.workDir(job: job, node: "node-1") + "/child.pid"
            var child: Int32 = 0
            for _ in 0..<100 where child == 0 {
                child =
                    Int32(
                        (try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                            ?? "") ?? 0
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(child > 0)
            #expect(alive(child), "the grandchild runs")
            try await cloud.plane.execute(.cancelJob(CancelJob(job: job, by: "key-1")))
            let j = try await waitFor(cloud, job) { $0.state.isTerminal }
            #expect(j.state == .cancelled)
            try await Task.sleep(for: .milliseconds(200))
            #expect(!alive(child), "the grandchild was stopped with its process group")
            #expect(await cloud.plane.read { $0.usage.records.count } == 1)
        }
    }

    /// Whether a process exists and is not a zombie (an orphan's zombie may linger when
    /// PID 1 does not reap).
    func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }
}
