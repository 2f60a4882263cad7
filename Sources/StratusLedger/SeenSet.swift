/// The ids of counted usage events: an open-addressing hash table keyed by the 128-bit
/// `EventKey` digest, which is already uniformly distributed, so its low bits pick the
/// slot directly (no second hash). Linear probing, at most half full.
struct SeenSet: Equatable, Sendable {
    /// Key and value side by side, 32 bytes: one probe touches one cache line. A slot is
    /// empty when `endSecond` is `Int64.min`, which no event has.
    struct Slot {
        var high: UInt64
        var low: UInt64
        var fingerprint: UInt64
        var endSecond: Int64
        static let empty = Slot(high: 0, low: 0, fingerprint: 0, endSecond: .min)
        var isEmpty: Bool { endSecond == .min }
    }

    private var slots = [Slot](repeating: .empty, count: 16)
    private(set) var count = 0

    private var mask: Int { slots.count - 1 }

    private func slot(_ key: EventKey) -> (index: Int, found: Bool) {
        var i = Int(truncatingIfNeeded: key.low) & mask
        while !slots[i].isEmpty {
            if slots[i].low == key.low, slots[i].high == key.high { return (i, true) }
            i = (i + 1) & mask
        }
        return (i, false)
    }

    subscript(_ key: EventKey) -> SeenEvent? {
        let (i, found) = slot(key)
        return found ? SeenEvent(fingerprint: slots[i].fingerprint, endSecond: slots[i].endSecond) : nil
    }

    /// Inserts `value` unless `key` is there; returns the value already there, if any.
    mutating func insert(_ key: EventKey, _ value: SeenEvent) -> SeenEvent? {
        if (count + 1) * 2 > slots.count { grow(to: slots.count * 2) }
        let (i, found) = slot(key)
        if found { return SeenEvent(fingerprint: slots[i].fingerprint, endSecond: slots[i].endSecond) }
        slots[i] = Slot(high: key.high, low: key.low, fingerprint: value.fingerprint, endSecond: value.endSecond)
        count += 1
        return nil
    }

    /// Makes room for `more` inserts without growing in between.
    mutating func reserve(_ more: Int) {
        var size = slots.count
        while (count + more) * 2 > size { size *= 2 }
        if size > slots.count { grow(to: size) }
    }

    private mutating func grow(to size: Int) {
        let old = slots
        slots = [Slot](repeating: .empty, count: size)
        for s in old where !s.isEmpty {
            let (i, _) = slot(EventKey(high: s.high, low: s.low))
            slots[i] = s
        }
    }

    /// Keeps the entries `keep` accepts, in place (no second table: pruning a table of
    /// millions allocates nothing).
    mutating func filter(_ keep: (SeenEvent) -> Bool) {
        for i in slots.indices where !slots[i].isEmpty {
            if !keep(SeenEvent(fingerprint: slots[i].fingerprint, endSecond: slots[i].endSecond)) {
                slots[i] = .empty
                count -= 1
            }
        }
        // Linear probing finds an entry only if no empty slot lies between its home and it.
        // Going round once from an empty slot, each entry with an emptied slot (the last
        // one seen) between its home and it moves to the first empty slot from its home,
        // never past where it was. The table keeps its size (it grew for a peak it may
        // see again).
        guard let start = slots.firstIndex(where: \.isEmpty) else { return }
        var i = start
        var lastEmpty = start
        for _ in 0..<slots.count {
            i = (i + 1) & mask
            guard !slots[i].isEmpty else {
                lastEmpty = i
                continue
            }
            let home = Int(truncatingIfNeeded: slots[i].low) & mask
            guard (i - home) & mask >= (i - lastEmpty) & mask else { continue }
            let entry = slots[i]
            slots[i] = .empty
            let (j, _) = slot(EventKey(high: entry.high, low: entry.low))
            slots[j] = entry
            if j != i { lastEmpty = i }
        }
    }

    var entries: [(EventKey, SeenEvent)] {
        slots.compactMap { s in
            s.isEmpty ? nil : (EventKey(high: s.high, low: s.low), SeenEvent(fingerprint: s.fingerprint, endSecond: s.endSecond))
        }
    }

    static func == (a: SeenSet, b: SeenSet) -> Bool {
        guard a.count == b.count else { return false }
        return a.entries.allSatisfy { b[$0.0] == $0.1 }
    }
}

extension SeenSet: Codable {
    struct Entry: Codable {
        var high: UInt64
        var low: UInt64
        var fingerprint: UInt64
        var endSecond: Int64
    }

    init(from decoder: any Decoder) throws {
        let list = try decoder.singleValueContainer().decode([Entry].self)
        reserve(list.count)
        for e in list {
            _ = insert(EventKey(high: e.high, low: e.low), SeenEvent(fingerprint: e.fingerprint, endSecond: e.endSecond))
        }
    }

    /// Sorted, so that equal sets encode to the same bytes.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(
            entries.sorted { ($0.0.high, $0.0.low) < ($1.0.high, $1.0.low) }.map {
                Entry(high: $0.0.high, low: $0.0.low, fingerprint: $0.1.fingerprint, endSecond: $0.1.endSecond)
            })
    }
}
