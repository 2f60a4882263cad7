import Foundation
import StratusControl
import StratusCore
import StratusScheduler
import StratusStore

/// Builds small worlds for tests: a bootstrapped state with the demo fleet.
enum Fixture {
    static let t0 = Timestamp(seconds: 1_800_000_000)

    static func hash(_ n: Int) -> String {
        let digits = String(n, radix: 16)
        return String(repeating: "0", count: 64 - digits.count) + digits
    }

    static func spec(
        _ gpus: Int = 8, nodes: Int = 1, tier: Tier = .onDemand, project: String? = nil, run: String = "true"
    ) -> JobSpec {
        JobSpec(name: "t", project: project, gpuModel: "H100", gpusPerNode: gpus, numNodes: nodes, tier: tier, run: run)
    }

    /// An engine over `store` with the internal org, an org `acme` and the demo fleet.
    static func engine(_ store: any Store = MemoryStore()) throws -> Engine {
        var e = try Engine(store: store)
        try e.execute(
            .bootstrap(CreateKey(org: nil, role: .operatorAdmin, name: "op", secretHash: hash(1), hint: "sk_1")), at: t0)
        try e.execute(.applyFleet(FleetSpec.demo), at: t0)
        try e.execute(.createOrg(CreateOrg(id: "acme", displayName: "Acme")), at: t0)
        return e
    }

    static func submit(_ e: inout Engine, _ spec: JobSpec, org: OrgID = "acme", key: String? = nil, at: Timestamp = t0)
        throws -> JobID
    {
        JobID(try e.execute(.submitJob(SubmitJob(org: org, spec: spec, idempotencyKey: key, by: "key-1")), at: at).id)
    }
}

/// Runs CPU-heavy synchronous work (a simulation) on a thread of its own and waits for it,
/// so that it does not hold one of Swift concurrency's cooperative threads: a 2-core
/// machine has two, and the agent tests running beside it need them to make progress.
/// Assertions belong after it, on the test's own task.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result(catching: body)) }
        thread.stackSize = 16 << 20
        thread.start()
    }
}
