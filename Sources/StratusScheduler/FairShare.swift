import StratusCore

/// Fair share: within a tier, the org with the least weighted, decayed GPU time goes
/// first. Past usage counts less with age (it halves every `halfLifeSeconds`); work
/// running now counts in full. Ordering is all it decides, so floating point is fine
/// here: plans are logged, never recomputed on replay.
public struct FairShare: Sendable {
    public var halfLifeSeconds: Int64

    public init(halfLifeSeconds: Int64 = Limits.defaultFairShareHalfLifeSeconds) {
        self.halfLifeSeconds = halfLifeSeconds
    }

    public struct Standing: Sendable, Equatable {
        public let org: OrgID
        public let weight: Int
        /// Decayed past GPU-hours plus GPU-hours of work running now.
        public let usageGPUHours: Double
        /// GPUs held now.
        public let runningGPUs: Int
        /// usage / weight: lower goes first.
        public let score: Double
        /// This org's part of all weighted usage (0 to 1).
        public let share: Double
    }

    /// Every org's standing at `now` (or only those in `orgs`: shares are then among
    /// them), lowest score (first in line) first.
    public func standings(_ snapshot: SchedulingSnapshot, now: Timestamp, only orgs: Set<OrgID>? = nil) -> [Standing] {
        // Running work counts GPUs x (now - start), from the running table's per-org sums.
        func running(_ org: OrgID) -> (ms: Double, gpus: Int)? {
            snapshot.table.runningByOrg[org].map { r in (Double(Int64(r.gpus) * now.milliseconds - r.gpuStartMs), r.gpus) }
        }
        let halfLifeMs = Double(max(1, halfLifeSeconds) * 1000)
        // A day's decay depends only on the day: computed once per call, not per org, by
        // days before today (orgs' usage covers the same recent days).
        let today = now.milliseconds / 86_400_000
        func factor(_ day: Int64) -> Double {
            let age = Double(max(0, now.milliseconds - (day * 86_400_000 + 43_200_000)))
            return pow2(-age / halfLifeMs)
        }
        var decayByAge: [Double] = []
        func decay(_ day: Int64) -> Double {
            let back = today - day
            guard back >= 0, back < Self.decayDaysKept else { return factor(day) }
            while decayByAge.count <= back { decayByAge.append(factor(today - Int64(decayByAge.count))) }
            return decayByAge[Int(back)]
        }
        var rows: [(OrgID, Int, Double, Int)] = []
        var days: [(key: Int64, value: Int64)] = []
        for (org, usage) in snapshot.tenants where orgs?.contains(org) ?? true {
            let current = running(org)
            var ms = current?.ms ?? 0
            // Summed in day order, so the total does not depend on the dictionary's order.
            days.removeAll(keepingCapacity: true)
            days.append(contentsOf: usage.dailyGPUMilliseconds)
            days.sort { $0.key < $1.key }
            for (day, dayMs) in days { ms += Double(dayMs) * decay(day) }
            rows.append((org, max(1, usage.weight), ms / 3_600_000, current?.gpus ?? 0))
        }
        // In line order first, so that the total of scores (shares) is summed in an order
        // that does not depend on the tenants dictionary's either.
        let ranked = rows.map { org, weight, hours, gpus in (org, weight, hours, gpus, hours / Double(weight)) }
            .sorted { $0.4 != $1.4 ? $0.4 < $1.4 : $0.0 < $1.0 }
        let total = ranked.reduce(0.0) { $0 + $1.4 }
        return ranked.map { org, weight, hours, gpus, score in
            Standing(
                org: org, weight: weight, usageGPUHours: hours, runningGPUs: gpus, score: score,
                share: total > 0 ? score / total : 0)
        }
    }

    /// Days of decay factors one call keeps (older days' are computed each time).
    static let decayDaysKept: Int64 = 4096

    /// 2^x without Foundation: exact powers for the integer part, a short series for the rest.
    public func pow2(_ x: Double) -> Double {
        if x < -1000 { return 0 }
        let whole = x.rounded(.down)
        let frac = x - whole
        // 2^whole exactly (whole is -1000 or more: a normal Double).
        let result = Self.exactPow2(Int(whole))
        // e^(frac ln 2), frac in [0, 1): 12 terms are exact to double precision.
        let y = frac * 0.693_147_180_559_945_3
        var term = 1.0
        var sum = 1.0
        for k in 1...12 {
            term *= y / Double(k)
            sum += term
        }
        return result * sum
    }

    /// 2^n for n in -1022...1023: the exponent field set directly.
    static func exactPow2(_ n: Int) -> Double {
        Double(sign: .plus, exponent: max(-1022, min(1023, n)), significand: 1)
    }
}
