import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import StratusAgent
import StratusControl
import StratusCore
import StratusLedger
import StratusScheduler
import StratusServer
import StratusStore
import Testing

/// A control plane with the demo fleet, an operator key and a temp directory for job
/// files, plus helpers to create tenants and call the API.
struct TestCloud {
    let plane: ControlPlane
    let admin: String
    let files: JobFiles
    /// The temp directory, removed when the last copy of the cloud is gone.
    let scratch: Scratch

    static func make(store: any Store = MemoryStore(), noticeSeconds: Int64 = 120) async throws -> TestCloud {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stratus-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let plane = try ControlPlane(
            store: store, scheduler: TieredScheduler(preemptionNoticeSeconds: noticeSeconds), clock: { WallClock.now() })
        let admin = APIKeySecret.generate()
        try await plane.execute(
            .bootstrap(
                CreateKey(
                    org: nil, role: .operatorAdmin, name: "op", secretHash: APIKeySecret.hash(admin), hint: "")))
        try await plane.execute(.applyFleet(FleetSpec.demo))
        // The list `stratus up` starts with.
        let prices = PriceBook.defaultPoints(at: WallClock.now()).map { ListPrice(sku: $0.0, point: $0.1) }
        try await plane.execute(.setPrices(SetPrices(list: prices)))
        return TestCloud(plane: plane, admin: admin, files: JobFiles(root: dir), scratch: Scratch(dir))
    }

    func app() -> some ApplicationProtocol {
        Application(router: API(plane: plane, files: files).router())
    }

    /// Creates an org through the control plane and returns a key of `role` in it.
    func tenant(_ org: String, role: Role = .member) async throws -> String {
        if await plane.read({ $0.orgs[OrgID(org)] }) == nil {
            try await plane.execute(.createOrg(CreateOrg(id: OrgID(org), displayName: org)))
        }
        let secret = APIKeySecret.generate()
        try await plane.execute(
            .createKey(
                CreateKey(
                    org: OrgID(org), role: role, name: "\(role)", secretHash: APIKeySecret.hash(secret), hint: "")))
        return secret
    }

    /// Drives a job's allocations through start and a clean exit, as an agent would.
    func finish(_ job: String, seconds: Int64 = 0) async throws {
        let allocations = await plane.read { $0.jobs[JobID(job)]!.allocations }
        for a in allocations {
            try await plane.execute(.allocationStarted(AllocationStarted(job: JobID(job), node: a.node)))
        }
        if seconds > 0 { try await Task.sleep(for: .milliseconds(seconds * 1000)) }
        for a in allocations {
            try await plane.execute(.allocationExited(AllocationExited(job: JobID(job), node: a.node, exitCode: 0, reason: nil)))
        }
    }

    var seq: UInt64 { get async { await plane.read { $0.seq } } }
}

/// A directory that is removed with its last reference (a test leaves nothing in /tmp).
final class Scratch: Sendable {
    let path: String
    init(_ path: String) { self.path = path }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

struct Reply {
    let status: Int
    let json: [String: Any]
    let text: String

    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String { (json["error"] as? [String: Any])?["message"] as? String ?? "" }
    var items: [[String: Any]] { json["items"] as? [[String: Any]] ?? [] }
    subscript(_ key: String) -> Any? { json[key] }
}

extension TestClientProtocol {
    func call(
        _ method: HTTPRequest.Method, _ uri: String, key: String?, body: String? = nil, headers: [String: String] = [:]
    ) async throws -> Reply {
        var fields = HTTPFields()
        if let key { fields[.authorization] = "Bearer \(key)" }
        for (k, v) in headers { fields[HTTPField.Name(k)!] = v }
        if body != nil { fields[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: fields, body: body.map { ByteBuffer(string: $0) }) {
            response in
            let text = String(buffer: response.body)
            let json = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
            return Reply(status: Int(response.status.code), json: json, text: text)
        }
    }
}

func jobBody(_ accelerators: String = "H100:2", extra: String = "") -> String {
    #"{"name":"t","resources":{"accelerators":"\#(accelerators)"},"run":"echo hi"\#(extra.isEmpty ? "" : ",")\#(extra)}"#
}

enum Mode: String, CaseIterable, Sendable {
    case router, live
    var setup: TestingSetup { self == .router ? .router : .live }
}
