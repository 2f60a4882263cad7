import StratusCore

/// Values per node, stored by slot: the node's position in the table, which is its
/// position in `State.nodeOrder` (nodes are never removed, so a slot never changes, and
/// every node table of a state has the same slots once its counters are built). A lookup
/// by ID costs one hash; the control plane's hot paths, which know a node's slot, index
/// the values directly (an array read instead of a hash probe and string compare per
/// table). Encodes and compares as the dictionary `[NodeID: Value]` of the nodes that
/// have a value.
public struct NodeTable<Value: Sendable>: Sendable, Sequence {
    /// Node IDs by slot.
    public private(set) var ids: [NodeID] = []
    private var slots: [NodeID: Int] = [:]
    /// Values by slot (nil: the node has none).
    private var bySlot: [Value?] = []
    /// How many slots have a value.
    public private(set) var count = 0

    public init() {}

    /// The table of `values`, slotted in `order` (which must hold every key of `values`).
    init(_ values: [NodeID: Value], order: [NodeID]) {
        ids.reserveCapacity(order.count)
        bySlot.reserveCapacity(order.count)
        for id in order { add(id, values[id]) }
        assert(values.keys.allSatisfy { slots[$0] != nil }, "a node table's value without a slot")
    }

    /// Node `id`'s value, found at slot `k` when the caller knows it (from the state's
    /// counters, whose positions are every node table's slots); else by ID.
    @inline(__always)
    subscript(_ id: NodeID, at k: Int?) -> Value? {
        get {
            guard let k else { return self[id] }
            assert(ids[k] == id, "node \(id) is not at slot \(k)")
            return bySlot[k]
        }
        _modify {
            if let k {
                assert(ids[k] == id, "node \(id) is not at slot \(k)")
                let had = bySlot[k] == nil ? 0 : 1
                yield &bySlot[k]
                count += (bySlot[k] == nil ? 0 : 1) - had
            } else {
                yield &self[id]
            }
        }
    }

    /// Changes node `id`'s value (at slot `k` when known) in place with `body`: what
    /// `self[id, at: k]` modifies, without a coroutine (whose frame, larger than the
    /// caller's buffer, costs an allocation per call).
    @inline(__always)
    mutating func modify<R>(_ id: NodeID, at k: Int?, _ body: (inout Value?) throws -> R) rethrows -> R {
        guard let k = k ?? slots[id] else {
            var value: Value? = nil
            defer { precondition(value == nil, "node \(id) has no slot in the table") }
            return try body(&value)
        }
        assert(ids[k] == id, "node \(id) is not at slot \(k)")
        let had = bySlot[k] == nil ? 0 : 1
        defer { count += (bySlot[k] == nil ? 0 : 1) - had }
        return try body(&bySlot[k])
    }

    /// `self[id, at: k]`, `value` when the node has none (set first when changed).
    @inline(__always)
    subscript(_ id: NodeID, at k: Int?, default value: @autoclosure () -> Value) -> Value {
        get { self[id, at: k] ?? value() }
        _modify {
            if self[id, at: k] == nil { self[id, at: k] = value() }
            yield &self[id, at: k]!
        }
    }

    /// Node `id`'s value. Setting one needs a slot (`add`); setting nil clears it.
    public subscript(_ id: NodeID) -> Value? {
        get { slots[id].flatMap { bySlot[$0] } }
        set {
            if let k = slots[id] {
                count += (newValue == nil ? 0 : 1) - (bySlot[k] == nil ? 0 : 1)
                bySlot[k] = newValue
            } else {
                precondition(newValue == nil, "node \(id) has no slot in the table")
            }
        }
        _modify {
            if let k = slots[id] {
                let had = bySlot[k] == nil ? 0 : 1
                yield &bySlot[k]
                count += (bySlot[k] == nil ? 0 : 1) - had
            } else {
                var value: Value? = nil
                yield &value
                precondition(value == nil, "node \(id) has no slot in the table")
            }
        }
    }

    /// Gives node `id` the next slot, with `value` (the node must be new to the table).
    mutating func add(_ id: NodeID, _ value: Value?) {
        precondition(slots[id] == nil, "node \(id) already has a slot")
        slots[id] = ids.count
        ids.append(id)
        bySlot.append(value)
        if value != nil { count += 1 }
    }

    /// Whether the slots are `order`'s positions.
    func isSlotted(_ order: [NodeID]) -> Bool { ids == order }

    /// Nodes with a value, in slot order.
    public struct Iterator: IteratorProtocol {
        let table: NodeTable
        var k = 0

        public mutating func next() -> (key: NodeID, value: Value)? {
            while k < table.bySlot.count {
                defer { k += 1 }
                if let v = table.bySlot[k] { return (table.ids[k], v) }
            }
            return nil
        }
    }

    public func makeIterator() -> Iterator { Iterator(table: self) }

    /// Values, in slot order.
    public var values: LazyMapSequence<LazyFilterSequence<[Value?]>, Value> {
        bySlot.lazy.filter { $0 != nil }.map { $0! }
    }

    /// Nodes with a value, in slot order.
    public var keys: [NodeID] { bySlot.indices.filter { bySlot[$0] != nil }.map { ids[$0] } }

    public var isEmpty: Bool { count == 0 }

    /// The nodes that have a value, as a dictionary.
    public var dictionary: [NodeID: Value] {
        var out: [NodeID: Value] = [:]
        out.reserveCapacity(bySlot.count)
        for (id, v) in self { out[id] = v }
        return out
    }
}

extension NodeTable: Equatable where Value: Equatable {
    public static func == (a: NodeTable, b: NodeTable) -> Bool {
        if a.ids == b.ids { return a.bySlot == b.bySlot }
        return a.dictionary == b.dictionary
    }
}

extension NodeTable: Codable where Value: Codable {
    /// Decoded slots are in ID order; the state puts them in `nodeOrder` before it
    /// changes (`State.rebuildCounters`).
    public init(from decoder: any Decoder) throws {
        let values = try [NodeID: Value](from: decoder)
        self.init(values, order: values.keys.sorted())
    }

    public func encode(to encoder: any Encoder) throws { try dictionary.encode(to: encoder) }
}
