/// Capacity held back for the operator's own (internal) demand: on-demand and reserved
/// sales must leave at least this many GPUs of a model (in a site, or fleet-wide) not
/// sold. Spot may use them and is preempted when internal work needs them.
public struct InternalReserve: Codable, Equatable, Sendable {
    public struct Point: Codable, Equatable, Sendable {
        public let from: Timestamp
        public let gpus: Int
        public init(from: Timestamp, gpus: Int) {
            self.from = from
            self.gpus = gpus
        }
    }

    public let gpuModel: String
    /// nil: fleet-wide for the model.
    public let site: String?
    /// A step series: each point holds from its time until the next (a forecast); one
    /// point at time zero is a fixed reserve.
    public let series: [Point]

    public init(gpuModel: String, site: String?, series: [Point]) {
        self.gpuModel = gpuModel
        self.site = site
        self.series = series.sorted { $0.from < $1.from }
    }

    /// The reserve in force at `now` (0 before the first point).
    public func gpus(at now: Timestamp) -> Int {
        var value = 0
        for p in series where p.from <= now { value = p.gpus }
        return value
    }

    public var key: String { "\(gpuModel)@\(site ?? "*")" }
}
