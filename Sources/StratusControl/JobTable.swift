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

    /// `update` for a change that the caller knows leaves the scheduler's view of the job
    /// as it was (`touching` false): the job is not noted as changed.
    mutating func update(_ id: JobID, touching: Bool, _ change: (inout Job) -> Void) {
        if touching { touch(id) }
        change(&all[id]!)
    }

    /// Forgets job `id`, which holds nothing (it ended): the scheduler's view of running
    /// work cannot have it, so it is not noted as changed.
    mutating func forget(_ id: JobID) {
        assert(all[id].map { $0.state.isTerminal } ?? true, "forgetting live job \(id)")
        all[id] = nil
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

    /// The jobs written since the last call, each once, and forgets them. The caller
    /// hands the list back with `recycle` so that its buffer is reused.
    mutating func takeTouched() -> [JobID] {
        guard !touched.isEmpty else { return [] }
        var out: [JobID] = []
        swap(&out, &touched)
        if out.count == 1 { return out }
        if out.count <= 8 {
            // A few: a scan finds repeats in place, without building a set.
            var kept = 0
            for i in out.indices where !out[..<kept].contains(out[i]) {
                out.swapAt(kept, i)
                kept += 1
            }
            out.removeLast(out.count - kept)
            return out
        }
        var seen = Set<JobID>()
        return out.filter { seen.insert($0).inserted }
    }

    /// Takes back a list `takeTouched` gave, emptied, as the buffer for the next changes.
    mutating func recycle(_ list: inout [JobID]) {
        guard touched.isEmpty else { return }
        list.removeAll(keepingCapacity: true)
        swap(&list, &touched)
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
