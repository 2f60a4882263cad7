import Foundation
import StratusCore

/// GPU discovery and sampling through `nvidia-smi`'s CSV queries (the same numbers NVML
/// gives, without linking the driver's library).
public struct NvidiaSMI: Sendable {
    /// Path or name of the binary (found on PATH).
    public let path: String

    public init(path: String = "nvidia-smi") { self.path = path }

    public static let discoveryFields = "index,uuid,name,memory.total,power.limit"
    public static let sampleFields = "index,uuid,utilization.gpu,memory.used,memory.total,power.draw"

    /// The GPUs the driver reports, or nil when there is no working `nvidia-smi`.
    public func discover() -> [GPUDevice]? {
        guard let text = run(["--query-gpu=\(Self.discoveryFields)", "--format=csv,noheader,nounits"]) else { return nil }
        return try? Self.parseDevices(text)
    }

    /// One reading of every GPU, by index.
    public func sample() -> [Int: Reading]? {
        guard let text = run(["--query-gpu=\(Self.sampleFields)", "--format=csv,noheader,nounits"]) else { return nil }
        return try? Self.parseReadings(text)
    }

    public struct Reading: Equatable, Sendable {
        public let index: Int
        public let uuid: String
        public let utilizationPct: Int
        public let memoryUsedMib: Int64
        public let memoryTotalMib: Int64
        public let powerWatts: Int64?
    }

    /// Parses `index, uuid, name, memory.total [MiB], power.limit [W]` lines.
    public static func parseDevices(_ text: String) throws(StratusError) -> [GPUDevice] {
        var out: [GPUDevice] = []
        for (n, line) in lines(text).enumerated() {
            let f = fields(line)
            guard f.count >= 4, let index = Int(f[0]), let memory = number(f[3]) else {
                throw StratusError(.invalidArgument, "nvidia-smi line \(n + 1): cannot read '\(line)'")
            }
            out.append(
                GPUDevice(
                    index: index, uuid: f[1], name: f[2], memoryMib: memory, powerLimitWatts: f.count > 4 ? number(f[4]) : nil))
        }
        return out.sorted { $0.index < $1.index }
    }

    /// Parses `index, uuid, utilization.gpu [%], memory.used, memory.total [MiB], power.draw [W]` lines.
    public static func parseReadings(_ text: String) throws(StratusError) -> [Int: Reading] {
        var out: [Int: Reading] = [:]
        for (n, line) in lines(text).enumerated() {
            let f = fields(line)
            guard f.count >= 5, let index = Int(f[0]), let used = number(f[3]), let total = number(f[4]) else {
                throw StratusError(.invalidArgument, "nvidia-smi line \(n + 1): cannot read '\(line)'")
            }
            out[index] = Reading(
                index: index, uuid: f[1], utilizationPct: Int(number(f[2]) ?? 0), memoryUsedMib: used, memoryTotalMib: total,
                powerWatts: f.count > 5 ? number(f[5]) : nil)
        }
        return out
    }

    static func lines(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func fields(_ line: String) -> [String] {
        line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// "81559", "700.00", "[N/A]" (nil): whole units, rounded down.
    static func number(_ s: String) -> Int64? {
        if let v = Int64(s) { return v }
        guard let d = Double(s), d.isFinite, d >= 0, d < 1e15 else { return nil }
        return Int64(d)
    }

    /// Runs nvidia-smi with a time limit; nil when it is missing or fails.
    func run(_ args: [String], timeoutSeconds: Double = 10) -> String? {
        let p = Process()
        if path.contains("/") {
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = args
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [path] + args
        }
        // Output goes to a file, so a hung nvidia-smi cannot block a read past the deadline.
        let file = NSTemporaryDirectory() + "stratus-smi-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: file, contents: nil),
            let out = FileHandle(forWritingAtPath: file)
        else { return nil }
        defer {
            try? out.close()
            try? FileManager.default.removeItem(atPath: file)
        }
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while p.isRunning, Date() < deadline { usleep(10_000) }
        if p.isRunning {
            p.terminate()
            return nil
        }
        guard p.terminationStatus == 0, let data = FileManager.default.contents(atPath: file) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
