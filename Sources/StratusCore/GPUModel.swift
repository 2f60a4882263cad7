/// A GPU model from the built-in catalog. Figures are per GPU, from vendor datasheets.
public struct GPUModel: Hashable, Codable, Sendable {
    public let name: String
    public let memoryGiB: Int
    public let powerWatts: Int
    /// GPUs that share one NVLink domain in the usual system (8 for HGX, 72 for NVL72).
    public let nvlinkDomainSize: Int

    public init(name: String, memoryGiB: Int, powerWatts: Int, nvlinkDomainSize: Int) {
        self.name = name
        self.memoryGiB = memoryGiB
        self.powerWatts = powerWatts
        self.nvlinkDomainSize = nvlinkDomainSize
    }
}

public enum GPUCatalog {
    public static let all: [GPUModel] = [
        GPUModel(name: "A100", memoryGiB: 80, powerWatts: 400, nvlinkDomainSize: 8),
        GPUModel(name: "H100", memoryGiB: 80, powerWatts: 700, nvlinkDomainSize: 8),
        GPUModel(name: "H200", memoryGiB: 141, powerWatts: 700, nvlinkDomainSize: 8),
        GPUModel(name: "B200", memoryGiB: 180, powerWatts: 1000, nvlinkDomainSize: 8),
        GPUModel(name: "GB200", memoryGiB: 186, powerWatts: 1200, nvlinkDomainSize: 72),
    ]

    private static let byName: [String: GPUModel] = Dictionary(
        uniqueKeysWithValues: all.map { ($0.name.uppercased(), $0) })

    /// Looks a model up by name, case-insensitively (the catalog's own spelling first,
    /// without allocating).
    public static func model(named name: String) -> GPUModel? {
        // A handful of models: comparing names beats hashing one.
        for m in all where m.name == name { return m }
        return byName[name.uppercased()]
    }

    public static func require(_ name: String, field: String) throws(StratusError) -> GPUModel {
        guard let model = model(named: name) else {
            throw StratusError(
                .invalidArgument,
                "\(field): unknown GPU model '\(name)' (known: \(all.map(\.name).joined(separator: ", ")))")
        }
        return model
    }
}
