/// The ids of counted usage events: an open-addressing hash table keyed by the 128-bit
/// `EventKey` digest, which is already uniformly distributed, so its low bits pick the
/// slot directly (no second hash). Linear probing, at most half full.
struct SeenSet: Equatable, Sendable {
    private var keys: [EventKey?] = Array(repeating: nil, count: 16)
    private var values: [SeenEvent] = Array(repeating: SeenEvent(fingerprint: 0, endSecond: 0), count: 16)
    private(set) var count = 0

    private var mask: Int { keys.count - 1 }

    private func slot(_ key: EventKey) -> (index: Int, found: Bool) {
        var i = Int(truncatingIfNeeded: key.low) & mask
        while let k = keys[i] {
            if k == key { return (i, true) }
            i = (i + 1) & mask
        }
        return (i, false)
    }

    subscript(_ key: EventKey) -> SeenEvent? {
        let (i, found) = slot(key)
        return found ? values[i] : nil
    }

    /// Inserts `value` unless `key` is there; returns the value already there, if any.
    mutating func insert(_ key: EventKey, _ value: SeenEvent) -> SeenEvent? {
        if (count + 1) * 2 > keys.count { grow(to: keys.count * 2) }
        let (i, found) = slot(key)
        if found { return values[i] }
        keys[i] = key
        values[i] = value
        count += 1
        return nil
    }

    /// Makes room for `more` inserts without growing in between.
    mutating func reserve(_ more: Int) {
        var size = keys.count
        while (count + more) * 2 > size { size *= 2 }
        if size > keys.count { grow(to: size) }
    }

    private mutating func grow(to size: Int) {
        let old = zip(keys, values)
        keys = Array(repeating: nil, count: size)
        values = Array(repeating: SeenEvent(fingerprint: 0, endSecond: 0), count: size)
        count = 0
        for case let (k?, v) in old {
            let (i, _) = slot(k)
            keys[i] = k
            values[i] = v
            count += 1
        }
    }

    /// Keeps the entries `keep` accepts.
    mutating func filter(_ keep: (SeenEvent) -> Bool) {
        let old = zip(keys, values).compactMap { k, v in k.map { ($0, v) } }.filter { keep($0.1) }
        var size = 16
        while old.count * 2 > size { size *= 2 }
        keys = Array(repeating: nil, count: size)
        values = Array(repeating: SeenEvent(fingerprint: 0, endSecond: 0), count: size)
        count = 0
        for (k, v) in old { _ = insert(k, v) }
    }

    var entries: [(EventKey, SeenEvent)] { zip(keys, values).compactMap { k, v in k.map { ($0, v) } } }

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
