import StratusCore

/// The state's jobs by ID: a dictionary that remembers which jobs changed since the
/// state last looked, so that what it keeps about running work (the scheduler's view)
/// follows each change without a walk over every job. Encodes and compares as the
/// dictionary alone.
public struct JobTable: Codable, Equatable, Sendable, Sequence {
    public private(set) var all: [JobID: Job] = [:]
    /// Jobs written since `takeTouched`.
    private(set) var touched: [JobID] = []

    public init() {}

    public subscript(_ id: JobID) -> Job? {
        get { all[id] }
        set {
            touch(id)
            all[id] = newValue
        }
        _modify {
            touch(id)
            yield &all[id]
        }
    }

    /// Changes job `id` (which must exist) in place.
    mutating func update(_ id: JobID, _ change: (inout Job) -> Void) {
        touch(id)
        change(&all[id]!)
    }

    /// Notes that job `id` changed (a gang's nodes change it many times in a row: once).
    private mutating func touch(_ id: JobID) {
        if touched.last != id { touched.append(id) }
    }

    public var values: Dictionary<JobID, Job>.Values { all.values }
    public var keys: Dictionary<JobID, Job>.Keys { all.keys }
    public var count: Int { all.count }
    public var isEmpty: Bool { all.isEmpty }
    public func makeIterator() -> Dictionary<JobID, Job>.Iterator { all.makeIterator() }

    /// The jobs written since the last call, each once, and forgets them.
    mutating func takeTouched() -> [JobID] {
        guard !touched.isEmpty else { return [] }
        defer { touched.removeAll(keepingCapacity: true) }
        if touched.count == 1 { return touched }
        if touched.count <= 8 {
            // A few: a scan finds repeats without building a set.
            var out: [JobID] = []
            out.reserveCapacity(touched.count)
            for id in touched where !out.contains(id) { out.append(id) }
            return out
        }
        var seen = Set<JobID>()
        return touched.filter { seen.insert($0).inserted }
    }

    public init(from decoder: any Decoder) throws {
        all = try decoder.singleValueContainer().decode([JobID: Job].self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(all)
    }

    public static func == (a: JobTable, b: JobTable) -> Bool { a.all == b.all }
}
