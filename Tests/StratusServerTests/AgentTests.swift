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
        agent.tickInterval = .milliseconds(50)
        agent.stopGraceSeconds = 2
        let task = Task { await agent.run() }
        defer { task.cancel() }
        try await body()
        task.cancel()
        await task.value
    }

    func waitFor(_ cloud: TestCloud, _ job: JobID, seconds: Int = 90, _ done: @escaping @Sendable (Job) -> Bool) async throws
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

    /// Two jobs on half a GPU each share one GPU, and each process is told its share.
    @Test func jobsOnFractionsShareAGPU() async throws {
        let cloud = try await TestCloud.make()
        var jobs: [JobID] = []
        for _ in 0..<2 {
            var spec = JobSpec(
                name: "half", gpuModel: "H100", gpusPerNode: 1,
                run:
                    "echo \"gpus=$CUDA_VISIBLE_DEVICES share=$STRATUS_GPU_SHARE mps=$CUDA_MPS_ACTIVE_THREAD_PERCENTAGE mem=${CUDA_MPS_PINNED_DEVICE_MEM_LIMIT-none}\""
            )
            spec.gpuShareMilli = 500
            let outcome = try await cloud.plane.execute(
                .submitJob(SubmitJob(org: "internal", spec: spec, idempotencyKey: nil, by: "key-1")))
            jobs.append(JobID(outcome.id))
        }
        try await cloud.plane.schedule()
        #expect(await cloud.plane.read { $0.gpuShares["node-1"]?[0]?.jobs } == jobs)
        try await withAgent(cloud) {
            for job in jobs {
                let j = try await waitFor(cloud, job) { $0.state.isTerminal }
                #expect(j.state == .succeeded)
                // This agent declares no GPUs, so it knows no GPU memory to divide.
                #expect(log(cloud, job) == "gpus=0 share=0.5 mps=50 mem=none\n")
            }
        }
        #expect(await cloud.plane.read { $0.gpuShares.isEmpty })
    }

    /// A fraction's process gets the MPS client limits for its share of the GPU's threads
    /// and, when the agent knows the GPU's memory, of its memory (MiB, rounded down).
    @Test func aFractionGetsItsShareAsMPSLimits() {
        let quarter = NodeAgent.shareEnvironment(milli: 250, memoryMib: 81_559)
        #expect(quarter["STRATUS_GPU_SHARE"] == "0.25")
        #expect(quarter["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25")
        #expect(quarter["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20389M")
        let eighth = NodeAgent.shareEnvironment(milli: 125, memoryMib: nil)
        #expect(eighth["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "12.5")
        #expect(eighth["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == nil)
        #expect(NodeAgent.shareEnvironment(milli: 1, memoryMib: 1000)["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=1M")
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

    @Test func preemptionNoticeReachesTheJobThenTheDeadlineKillsIt() async throws {
        let cloud = try await TestCloud.make(noticeSeconds: 2)
        // A spot job that notices SIGTERM and the notice file, then ignores the signal.
        let spotSpec = JobSpec(
            name: "spot", gpuModel: "H100", gpusPerNode: 8, tier: .spot,
            run: "trap 'echo got-term; cat \"$STRATUS_PREEMPTION_NOTICE_FILE\"; echo' TERM; while true; do sleep 0.1; done")
        var spots: [JobID] = []
        for _ in 0..<8 {
            let o = try await cloud.plane.execute(
                .submitJob(SubmitJob(org: "internal", spec: spotSpec, idempotencyKey: nil, by: "key-1")))
            spots.append(JobID(o.id))
        }
        try await cloud.plane.schedule()
        let submitted = spots
        let onNode1 = try #require(
            await cloud.plane.read { s in submitted.first { s.jobs[$0]?.allocations.first?.node == "node-1" } })
        // Only node-1 has an agent; mark the others started by hand, oldest first.
        for id in spots where id != onNode1 {
            let node = await cloud.plane.read { $0.jobs[id]!.allocations[0].node }
            try await cloud.plane.execute(.allocationStarted(AllocationStarted(job: id, node: node)))
        }
        try await withAgent(cloud) {
            _ = try await waitFor(cloud, onNode1) { $0.state == .running }
            try await Task.sleep(for: .milliseconds(300))
            let od = try await submit(cloud, run: "echo on-demand", gpus: 8)
            let victim = await cloud.plane.read { s in s.jobs.values.first { $0.preemptedBy == od }?.id }
            #expect(victim == onNode1, "the most recently started spot job is on node-1")
            let noticeAt = ContinuousClock.now
            let requeued = try await waitFor(cloud, onNode1, seconds: 20) { $0.state == .queued }
            let took = ContinuousClock.now - noticeAt
            #expect(requeued.attempt == 1)
            #expect(took >= .milliseconds(1500) && took < .seconds(10), "killed at the 2 s deadline, not before: \(took)")
            let text = log(cloud, onNode1)
            #expect(text.contains("got-term"))
            #expect(text.contains(#""reason":"preempted by \#(od)""#), "\(text)")
            #expect(text.contains("deadline_unix_ms"))
            try await cloud.plane.schedule()  // no scheduler loop here: one round by hand
            let ran = try await waitFor(cloud, od) { $0.state.isTerminal }
            #expect(ran.state == .succeeded)
            #expect(ran.allocations.first?.node == "node-1")
            #expect(requeued.events.map(\.kind).contains("preemption_notice"))
            // The job runs again on node-1 later; its log keeps the first attempt's lines.
            #expect(log(cloud, onNode1).hasPrefix(text))
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

/// Reading what `nvidia-smi` prints, and naming the catalog model a driver reports.
@Suite struct NvidiaSMITests {
    @Test func devicesAndReadingsAreParsed() throws {
        let devices = try NvidiaSMI.parseDevices(
            """
            0, GPU-5b1e6c4a-0000-1111-2222-333344445555, NVIDIA H100 80GB HBM3, 81559, 700.00
            1, GPU-5b1e6c4a-0000-1111-2222-333344445556, NVIDIA H100 80GB HBM3, 81559, [N/A]

            """)
        #expect(devices.count == 2)
        #expect(devices[0].uuid == "GPU-5b1e6c4a-0000-1111-2222-333344445555")
        #expect(devices[0].memoryMib == 81559 && devices[0].powerLimitWatts == 700)
        #expect(devices[1].powerLimitWatts == nil)
        let readings = try NvidiaSMI.parseReadings("0, GPU-a, 98, 40321, 81559, 689.12\n1, GPU-b, 0, 1, 81559, [N/A]\n")
        #expect(readings[0]?.utilizationPct == 98 && readings[0]?.memoryUsedMib == 40321 && readings[0]?.powerWatts == 689)
        #expect(readings[1]?.powerWatts == nil)
        #expect(throws: StratusError.self) { try NvidiaSMI.parseDevices("0, GPU-a, H100\n") }
        #expect(throws: StratusError.self) { try NvidiaSMI.parseReadings("zero, GPU-a, 1, 2, 3\n") }
    }

    @Test func productNamesMapToCatalogModels() {
        #expect(GPUCatalog.model(productName: "NVIDIA H100 80GB HBM3")?.name == "H100")
        #expect(GPUCatalog.model(productName: "NVIDIA H100 PCIe")?.name == "H100")
        #expect(GPUCatalog.model(productName: "NVIDIA A100-SXM4-80GB")?.name == "A100")
        #expect(GPUCatalog.model(productName: "NVIDIA H200")?.name == "H200")
        #expect(GPUCatalog.model(productName: "NVIDIA B200")?.name == "B200")
        #expect(GPUCatalog.model(productName: "NVIDIA GB200")?.name == "GB200")
        #expect(GPUCatalog.model(productName: "NVIDIA GeForce RTX 4090") == nil)
        #expect(GPUCatalog.model(productName: "Tesla T4") == nil)
    }
}
