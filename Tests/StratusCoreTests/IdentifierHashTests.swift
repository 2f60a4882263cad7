import StratusCore
import Testing

/// IDs hash with their own keyed hash (the one sets and dictionaries use): equal IDs hash
/// alike, and the hash spreads the sequential IDs the control plane makes.
@Suite struct IdentifierHashTests {
    @Test func sequentialIDsSpreadOverTheLowBits() {
        // 65,536 IDs into 65,536 buckets by the low 16 bits: a random function fills about
        // 63% of them (1 - 1/e); a weak hash of "node-1", "node-2", ... fills far fewer.
        for prefix in ["node-", "job-", "r12n", "acme/default-"] {
            var buckets = Set<Int>()
            for n in 1...65_536 { buckets.insert(NodeID("\(prefix)\(n)")._rawHashValue(seed: 12_345) & 0xFFFF) }
            #expect(buckets.count > 65_536 * 58 / 100, "\(prefix): \(buckets.count) buckets")
        }
    }

    @Test func everyByteAndTheLengthCount() {
        var seen = Set<Int>()
        var count = 0
        for length in 0...40 {
            let base = [UInt8](repeating: 0x61, count: length)
            seen.insert(NodeID(String(decoding: base, as: UTF8.self))._rawHashValue(seed: 7))
            count += 1
            for k in 0..<length {
                var changed = base
                changed[k] = 0x62
                seen.insert(NodeID(String(decoding: changed, as: UTF8.self))._rawHashValue(seed: 7))
                count += 1
            }
        }
        #expect(seen.count == count)
    }

    @Test func equalIDsHashAlikeAndTheSeedKeysTheHash() {
        let a = JobID("job-123456")
        let b = JobID(String("job-123456".reversed().reversed()))
        #expect(a == b)
        #expect(a._rawHashValue(seed: 1) == b._rawHashValue(seed: 1))
        #expect(a._rawHashValue(seed: 1) != a._rawHashValue(seed: 2))
        // Long IDs (past a small string) and non-ASCII ones work as keys.
        let long = NodeID(String(repeating: "rack-", count: 20) + "node-é")
        let table: [NodeID: Int] = [long: 1, NodeID("node-7"): 2]
        #expect(table[NodeID(String(repeating: "rack-", count: 20) + "node-é")] == 1)
        #expect(table[NodeID("node-7")] == 2)
        #expect(table[NodeID("node-77")] == nil)
    }
}
