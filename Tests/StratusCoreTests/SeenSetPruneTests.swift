import StratusCore
import Testing

@testable import StratusLedger

/// The id table forgets in place: after any prune, every kept id is still found and no
/// forgotten one is, also when ids crowd a few home slots (long probe runs that wrap
/// round the end of the table).
@Suite struct SeenSetPruneTests {
    @Test(arguments: [false, true]) func pruningInPlaceKeepsEveryKeptIDFindable(crowded: Bool) {
        var rng = SeededRandom(seed: crowded ? 2 : 1)
        var set = SeenSet()
        var reference: [EventKey: SeenEvent] = [:]
        var next: UInt64 = 0
        for round in 0..<20 {
            for _ in 0..<Int.random(in: 50...800, using: &rng) {
                next += 1
                // Crowded: homes among the last 8 slots of a 4,096-slot table, or anywhere.
                let low = crowded ? (4_088 + next % 8) | (next << 32) : UInt64.random(in: 0...UInt64.max, using: &rng)
                let key = EventKey(high: next, low: low)
                let value = SeenEvent(
                    fingerprint: next &* 31, endSecond: Int64(round * 100 + Int.random(in: 0..<300, using: &rng)))
                #expect(set.insert(key, value) == nil)
                reference[key] = value
            }
            let horizon = Int64(round * 100)
            set.filter { $0.endSecond >= horizon }
            let forgotten = reference.keys.filter { reference[$0]!.endSecond < horizon }
            reference = reference.filter { $0.value.endSecond >= horizon }
            #expect(set.count == reference.count)
            #expect(set.entries.count == reference.count)
            let keptFound = reference.allSatisfy { set[$0.key] == $0.value }
            #expect(keptFound, "round \(round)")
            let forgottenGone = forgotten.allSatisfy { set[$0] == nil }
            #expect(forgottenGone, "round \(round)")
        }
    }
}
