import Foundation
import HummingbirdTesting
import StratusCore
import StratusServer
import StratusSimulation
import Testing

/// Every kind of bad input gets a 4xx with `{"error": {"code", "message"}}` naming the
/// problem, and changes nothing: the log does not grow.
@Suite struct BadInputTests {
    @Test(arguments: Mode.allCases)
    func badJobsAreRefusedAndLeaveNoTrace(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        try await cloud.app().test(mode.setup) { client in
            let before = await cloud.seq
            let cases: [(String, Int, String, String)] = [
                (#"{"name": "x", "#, 400, "invalid_argument", "malformed JSON"),
                ("", 400, "invalid_argument", "empty"),
                ("[1,2]", 400, "invalid_argument", "expected a mapping"),
                (jobBody("H900:8"), 400, "invalid_argument", "unknown GPU model 'H900'"),
                (jobBody("H100:0"), 400, "invalid_argument", "count must be at least 1"),
                (jobBody("H100:-1"), 400, "invalid_argument", "count must be at least 1"),
                (jobBody(extra: #""num_nodes":0"#), 400, "invalid_argument", "num_nodes: must be at least 1"),
                (jobBody(extra: #""num_nodes":-4"#), 400, "invalid_argument", "num_nodes: must be at least 1"),
                (jobBody("H100:9"), 400, "invalid_argument", "largest H100 node has 8"),
                (jobBody("B200:1"), 400, "invalid_argument", "no B200 nodes"),
                (jobBody(extra: #""num_nodes":9"#), 400, "invalid_argument", "the fleet has 8"),
                (jobBody(extra: #""gpus":8"#), 400, "unknown_field", "gpus: unknown field"),
                (jobBody(extra: #""resources2":{}"#), 400, "unknown_field", "resources2: unknown field"),
                (jobBody(extra: #""max_duration":"forever""#), 400, "invalid_argument", "max_duration"),
                (jobBody(extra: #""tier":"gold""#), 400, "invalid_argument", "tier: 'gold'"),
                (jobBody(extra: #""project":"nope""#), 404, "not_found", "project 'nope' not found"),
            ]
            for (body, status, code, message) in cases {
                let r = try await client.call(.post, "/v1/jobs", key: acme, body: body)
                #expect(r.status == status, "\(body): \(r.status) \(r.text)")
                #expect(r.errorCode == code, "\(body): \(r.text)")
                #expect(r.errorMessage.contains(message), "\(body): wanted '\(message)' in '\(r.errorMessage)'")
            }
            // Over the named body limit.
            let huge = jobBody(extra: #""envs":{"A":""# + String(repeating: "x", count: Limits.maxRequestBodyBytes) + #""}"#)
            let tooLarge = try await client.call(.post, "/v1/jobs", key: acme, body: huge)
            #expect(tooLarge.status == 413)
            #expect(tooLarge.errorCode == "payload_too_large")
            #expect(await cloud.seq == before)
            #expect(await cloud.plane.read { $0.jobs.isEmpty })
        }
    }

    @Test(arguments: Mode.allCases)
    func badAdminInputIsRefused(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        try await cloud.app().test(mode.setup) { client in
            let before = await cloud.seq
            let cases: [(String, String, Int, String)] = [
                ("/v1/orgs", #"{"name":"Bad Name"}"#, 400, "must use lowercase"),
                ("/v1/orgs", #"{"name":"ok","plan":"gold"}"#, 400, "plan: unknown field"),
                ("/v1/orgs", #"{}"#, 400, "name: required"),
                ("/v1/keys", #"{"org":"internal","role":"king"}"#, 400, "role: 'king'"),
                ("/v1/keys", #"{"role":"member","org":"ghost"}"#, 404, "org 'ghost' not found"),
                ("/v1/fleet", #"{"regions":[{"name":"r","sites":[{"name":"s","power_mw":-1}]}]}"#, 400, "must be positive"),
                (
                    "/v1/fleet",
                    #"{"regions":[{"name":"r","sites":[{"name":"s","power_mw":1,"racks":[{"name":"k","nodes":[{"name":"n","gpu":"TPU"}]}]}]}]}"#,
                    400, "unknown GPU model 'TPU'"
                ),
                (
                    "/v1/fleet",
                    #"{"regions":[{"name":"r","sites":[{"name":"s","power_mw":1,"racks":[{"name":"k","nodes":[{"name":"n","gpu":"H100","gpus":-8}]}]}]}]}"#,
                    400, "between 1 and 72"
                ),
                ("/v1/fleet", #"{"zones":[]}"#, 400, "zones: unknown field"),
                ("/v1/members", #"{"org":"internal","email":"nobody"}"#, 400, "not an email"),
            ]
            for (path, body, status, message) in cases {
                let r = try await client.call(.post, path, key: cloud.admin, body: body)
                #expect(r.status == status, "\(path) \(body): \(r.status) \(r.text)")
                #expect(r.errorMessage.contains(message), "\(path) \(body): wanted '\(message)' in '\(r.errorMessage)'")
            }
            let unknownRoute = try await client.call(.get, "/v1/nothing", key: cloud.admin)
            #expect(unknownRoute.status == 404)
            #expect(unknownRoute.errorCode == "not_found")
            let badGroup = try await client.call(.get, "/v1/usage?group_by=color", key: cloud.admin)
            #expect(badGroup.status == 400)
            #expect(await cloud.seq == before)
        }
    }

    @Test(arguments: Mode.allCases)
    func badReservationsAreRefusedAndLeaveNoTrace(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        try await cloud.app().test(mode.setup) { client in
            let before = await cloud.seq
            let cases: [(String, Int, String, String)] = [
                (#"{"gpus":8,"duration":"1h"}"#, 400, "invalid_argument", "gpu: required"),
                (#"{"gpu":"H900","gpus":8,"duration":"1h"}"#, 400, "invalid_argument", "unknown GPU model 'H900'"),
                (#"{"gpu":"H100","gpus":0,"duration":"1h"}"#, 400, "invalid_argument", "gpus: must be at least 1"),
                (#"{"gpu":"H100","gpus":8}"#, 400, "invalid_argument", "give either duration or end"),
                (#"{"gpu":"H100","gpus":8,"duration":"1h","start":"soon"}"#, 400, "invalid_argument", "start: 'soon'"),
                (
                    #"{"gpu":"H100","gpus":8,"duration":"1h","start":"2020-01-01T00:00:00Z"}"#, 400, "invalid_argument",
                    "in the past"
                ),
                (#"{"gpu":"H100","gpus":8,"duration":"400d"}"#, 422, "limit_exceeded", "duration: at most"),
                (
                    #"{"gpu":"H100","gpus":65,"duration":"1h"}"#, 409, "failed_precondition",
                    "65 H100 in the fleet is not available"
                ),
                (#"{"gpu":"H100","gpus":8,"duration":"1h","site":"mars"}"#, 404, "not_found", "site 'mars' not found"),
                (#"{"gpu":"H100","gpus":8,"duration":"1h","color":"red"}"#, 400, "unknown_field", "color: unknown field"),
            ]
            for (body, status, code, message) in cases {
                let r = try await client.call(.post, "/v1/reservations", key: acme, body: body)
                #expect(r.status == status, "\(body): \(r.status) \(r.text)")
                #expect(r.errorCode == code, "\(body): \(r.text)")
                #expect(r.errorMessage.contains(message), "\(body): wanted '\(message)' in '\(r.errorMessage)'")
            }
            #expect(await cloud.seq == before)
            let ok = try await client.call(
                .post, "/v1/reservations", key: acme, body: #"{"gpu":"H100","gpus":64,"start":"+10m","duration":"1h"}"#)
            #expect(ok.status == 201 && ok["status"] as? String == "scheduled" && ok["gpus"] as? Int == 64, "\(ok.text)")
            // Whole racks count too: the block above holds all 64 GPUs.
            let racks = try await client.call(
                .post, "/v1/reservations", key: acme, body: #"{"gpu":"H100","racks":1,"start":"+10m","duration":"1h"}"#)
            #expect(racks.status == 409 && racks.errorMessage.contains("32 H100 in the fleet is not available"), "\(racks.text)")
            let both = try await client.call(
                .post, "/v1/reservations", key: acme, body: #"{"gpu":"H100","gpus":8,"racks":1,"duration":"1h"}"#)
            #expect(both.status == 400 && both.errorMessage == "gpus: give either gpus or racks", "\(both.text)")
        }
    }

    @Test func malformedYAMLNamesTheProblem() {
        let error = #expect(throws: StratusError.self) { try SpecDocument.parseYAML("name: [unclosed\n") }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.hasPrefix("malformed YAML") == true)
        #expect(throws: StratusError.self) { try SpecDocument.parseYAML("") }
        let value = try? SpecDocument.parseYAML(
            "resources:\n  accelerators: H100:8\nnum_nodes: 2\nrun: echo\nenvs: {A: 1, B: yes}\n")
        let spec = try? JobSpec.parse(value!)
        #expect(spec?.numNodes == 2)
        #expect(spec?.envs == ["A": "1", "B": "true"])
    }
}

/// The examples in the repository parse as what they claim to be.
@Suite struct ExampleTests {
    @Test func everyExampleParses() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples")
            .standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.contains("reserved.yaml") && files.contains("fleet.yaml"))
        for file in files {
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            let value = try SpecDocument.parseYAML(text)
            if file == "fleet.yaml" {
                let fleet = try FleetSpec.parse(value)
                #expect(fleet.racks.allSatisfy { $0.block == "spine-1" }, "\(file)")
            } else if file == "lab.yaml" {
                let fleet = try FleetSpec.parse(value)
                #expect(fleet.racks.map(\.id) == ["lab-1"] && fleet.nodes.isEmpty)
            } else {
                let job = try JobSpec.parse(value)
                if file == "reserved.yaml" { #expect(job.reservation == "res-1" && job.tier == .reserved) }
            }
        }
    }

    /// The scenarios in examples/sim (what docs/simulation.md tells people to run) parse,
    /// and the 1 GW campus is the size its comments say.
    @Test func everySimulationScenarioParses() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/sim")
            .standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 4 && files.contains("gb200-1gw.yaml"))
        for file in files {
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            let scenario = try Scenario.parse(SpecDocument.parseYAML(text))
            #expect(!scenario.sites.isEmpty || !scenario.contracts.isEmpty, "\(file)")
            guard file == "gb200-1gw.yaml", let site = scenario.sites.first else { continue }
            // 4 x 250 MW of GB200 at PUE 1.2: about 413,000 GPUs in whole NVL72 racks.
            let gpus = site.phases.reduce(0) { $0 + scenario.gpus(of: $1, in: site) }
            #expect(site.phases.count == 4 && gpus > 400_000 && gpus < 420_000 && gpus % 72 == 0, "\(gpus)")
        }
    }
}
