import StratusCore
import Testing

@testable import StratusLedger

/// Billing's hot keys hash with `WordDigest` (not SipHash): every field counts, equal keys
/// hash alike, and as dictionary keys they behave as before.
@Suite struct BillingKeyHashTests {
    @Test func everyFieldOfALineKeyAndSKUCounts() {
        let base = LineKey(
            project: "train", gpuModel: "H100", region: "us-east", tier: .onDemand, unitPrice: Money(micros: 2_000_000),
            listPrice: Money(micros: 2_500_000))
        var variants = [base]
        var k = base
        k.project = "infer"
        variants.append(k)
        k = base
        k.gpuModel = "H200"
        variants.append(k)
        k = base
        k.region = "us-west"
        variants.append(k)
        k = base
        k.tier = .spot
        variants.append(k)
        k = base
        k.unitPrice = Money(micros: 2_000_001)
        variants.append(k)
        k = base
        k.listPrice = Money(micros: 1)
        variants.append(k)
        // ("ab", "c") and ("a", "bc") split differently.
        k = base
        k.project = "trainH"
        k.gpuModel = "100"
        variants.append(k)
        #expect(Set(variants.map { $0._rawHashValue(seed: 9) }).count == variants.count)
        let same = LineKey(
            project: String("niart".reversed()), gpuModel: "H100", region: "us-east", tier: .onDemand,
            unitPrice: Money(micros: 2_000_000), listPrice: Money(micros: 2_500_000))
        #expect(same == base && same._rawHashValue(seed: 9) == base._rawHashValue(seed: 9))
        let skus = Tier.allCases.flatMap { t in
            ["H100", "H200"].flatMap { m in ["us-east", "eu"].map { SKU(gpuModel: m, region: $0, tier: t) } }
        }
        #expect(Set(skus.map { $0._rawHashValue(seed: 3) }).count == skus.count)
        #expect(Set(Tier.allCases.map { $0._rawHashValue(seed: 3) }).count == Tier.allCases.count)
        #expect(Set((0..<1000).map { Period(index: $0)._rawHashValue(seed: 3) }).count == 1000)
        // As keys: a dictionary finds each of them.
        var table: [LineKey: Int] = [:]
        for (i, v) in variants.enumerated() { table[v] = i }
        #expect(variants.enumerated().allSatisfy { table[$1] == $0 })
    }
}
