/// CPU and memory of one node: what a node has, or what a job asks for on each of its
/// nodes (as SkyPilot's `cpus` and `memory`, or Kubernetes' requests). GPUs are counted
/// apart; these are the other node resources a job may need.
public struct NodeResources: Codable, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// CPU in thousandths of a core (`cpus: 0.5` is 500).
    public var cpuMilli: Int
    /// Memory in MiB.
    public var memoryMiB: Int

    public init(cpuMilli: Int, memoryMiB: Int) {
        self.cpuMilli = cpuMilli
        self.memoryMiB = memoryMiB
    }

    public static let zero = NodeResources(cpuMilli: 0, memoryMiB: 0)

    public var isZero: Bool { cpuMilli == 0 && memoryMiB == 0 }

    /// Whether `other` fits within these.
    public func covers(_ other: NodeResources) -> Bool { other.cpuMilli <= cpuMilli && other.memoryMiB <= memoryMiB }

    public static func + (a: NodeResources, b: NodeResources) -> NodeResources {
        NodeResources(cpuMilli: a.cpuMilli + b.cpuMilli, memoryMiB: a.memoryMiB + b.memoryMiB)
    }

    public static func - (a: NodeResources, b: NodeResources) -> NodeResources {
        NodeResources(cpuMilli: a.cpuMilli - b.cpuMilli, memoryMiB: a.memoryMiB - b.memoryMiB)
    }

    /// `16 CPUs, 64 GiB` (the parts asked for).
    public var description: String {
        var parts: [String] = []
        if cpuMilli > 0 { parts.append("\(DecimalText.format(Int64(cpuMilli), scale: 1000)) CPUs") }
        if memoryMiB > 0 {
            parts.append(memoryMiB % 1024 == 0 ? "\(memoryMiB / 1024) GiB" : "\(memoryMiB) MiB")
        }
        return parts.joined(separator: ", ")
    }

    /// Reads `cpus` (cores: `4`, `0.5`, or `500m`) and `memory` (GiB as a number, or with
    /// a unit: `64Gi`, `512Mi`, `1Ti`) from `o` (or the fields named `cpuKey` and
    /// `memoryKey`); zero for what is absent.
    public static func parse(
        _ o: inout SpecObject, limit: NodeResources, cpuKey: String = "cpus", memoryKey: String = "memory"
    ) throws(StratusError) -> NodeResources {
        var cpu = 0
        if let v = o.value(cpuKey) {
            var text: String
            switch v {
            case .int(let i): text = String(i)
            case .double(let d): text = String(d)
            case .string(let s): text = s.trimmingSpaces()
            default: throw StratusError(.invalidArgument, "\(o.field(cpuKey)): expected a number of cores, got \(v.kindName)")
            }
            var scale: Int64 = 1000
            if text.hasSuffix("m") {
                text.removeLast()
                scale = 1
            }
            guard let milli = DecimalText.parse(text, scale: scale), milli > 0, milli <= Int64(limit.cpuMilli) else {
                throw StratusError(
                    .invalidArgument,
                    "\(o.field(cpuKey)): '\(text)' is not a number of cores between 0.001 and \(limit.cpuMilli / 1000)")
            }
            cpu = Int(milli)
        }
        var memory = 0
        if let v = o.value(memoryKey) {
            var text: String
            switch v {
            case .int(let i): text = "\(i)Gi"
            case .double(let d): text = "\(d)Gi"
            case .string(let s): text = s.trimmingSpaces()
            default: throw StratusError(.invalidArgument, "\(o.field(memoryKey)): expected a size like 64Gi, got \(v.kindName)")
            }
            let units: [(String, Int64)] = [("Ti", 1024 * 1024), ("Gi", 1024), ("Mi", 1)]
            var mib: Int64?
            for (suffix, factor) in units where text.hasSuffix(suffix) {
                // Thousandths of the unit, rounded up to whole MiB.
                if let n = DecimalText.parse(String(text.dropLast(2)), scale: 1000) { mib = (n * factor + 999) / 1000 }
                break
            }
            if mib == nil, let n = DecimalText.parse(text, scale: 1000) { mib = (n * 1024 + 999) / 1000 }
            guard let mib, mib > 0, mib <= Int64(limit.memoryMiB) else {
                throw StratusError(
                    .invalidArgument,
                    "\(o.field(memoryKey)): '\(text)' is not a size between 1Mi and \(limit.memoryMiB / 1024 / 1024)Ti (e.g. 64Gi)"
                )
            }
            memory = Int(mib)
        }
        return NodeResources(cpuMilli: cpu, memoryMiB: memory)
    }
}
