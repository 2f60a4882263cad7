import Foundation
import HummingbirdTesting
import StratusControl
import StratusCore
import StratusServer
import Testing

/// One body, two transports: in process through the router, and over a real socket.
@Suite struct APITests {
    @Test(arguments: Mode.allCases)
    func jobLifecycleThroughTheAPI(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        try await cloud.app().test(mode.setup) { client in
            #expect(try await client.call(.get, "/healthz", key: nil).status == 200)
            let me = try await client.call(.get, "/v1/whoami", key: acme)
            #expect(me["org"] as? String == "acme")
            #expect(me["role"] as? String == "member")

            let created = try await client.call(.post, "/v1/jobs", key: acme, body: jobBody(), headers: ["Idempotency-Key": "k1"])
            #expect(created.status == 201)
            let id = try #require(created["id"] as? String)
            #expect(created["state"] as? String == "queued")
            #expect(created["project"] as? String == "acme/default")

            let retry = try await client.call(.post, "/v1/jobs", key: acme, body: jobBody(), headers: ["Idempotency-Key": "k1"])
            #expect(retry.status == 200)
            #expect(retry["id"] as? String == id)
            let clash = try await client.call(
                .post, "/v1/jobs", key: acme, body: jobBody("H100:4"), headers: ["Idempotency-Key": "k1"])
            #expect(clash.status == 409)
            #expect(clash.errorCode == "idempotency_key_reused")

            try await cloud.plane.schedule()
            let placed = try await client.call(.get, "/v1/jobs/\(id)", key: acme)
            #expect(placed["state"] as? String == "starting")
            let allocations = try #require(placed["allocations"] as? [[String: Any]])
            #expect(allocations.first?["gpus"] as? [Int] == [0, 1])

            let fleet = try await client.call(.get, "/v1/fleet", key: acme)
            let h100 = try #require((fleet["models"] as? [[String: Any]])?.first)
            #expect(h100["gpus"] as? Int == 64)
            #expect(h100["free"] as? Int == 62)
            #expect((h100["allocated_by_tier"] as? [String: Int])?["on-demand"] == 2)

            // Output lives in files beside the database; the API serves it by offset.
            let log = cloud.files.logPath(job: JobID(id), node: "node-1")
            try FileManager.default.createDirectory(
                atPath: (log as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try "hello\nworld\n".write(toFile: log, atomically: true, encoding: .utf8)
            let logs = try await client.call(.get, "/v1/jobs/\(id)/logs", key: acme)
            #expect(logs["data"] as? String == "hello\nworld\n")
            let tail = try await client.call(.get, "/v1/jobs/\(id)/logs?offset=6", key: acme)
            #expect(tail["data"] as? String == "world\n")
            #expect(tail["next_offset"] as? Int == 12)
            let escape = try await client.call(.get, "/v1/jobs/\(id)/logs?node=..%2F..%2Fadmin.key", key: acme)
            #expect(escape.status == 400)
            #expect(escape.errorMessage.contains("is not a node of the fleet"))
            let elsewhere = try await client.call(.get, "/v1/jobs/\(id)/logs?node=node-2", key: acme)
            #expect(elsewhere["data"] as? String == "")

            try await cloud.finish(id, seconds: 1)
            let done = try await client.call(.get, "/v1/jobs/\(id)", key: acme)
            #expect(done["state"] as? String == "succeeded")
            let usage = try await client.call(.get, "/v1/usage", key: acme)
            #expect(usage["group_by"] as? [String] == ["project", "gpu_model", "tier"])
            let row = try #require(usage.items.first)
            #expect((row["key"] as? [String: String]) == ["project": "acme/default", "gpu_model": "H100", "tier": "on-demand"])
            let ms = try #require(row["gpu_milliseconds"] as? Int)
            #expect(ms >= 2000 && ms < 20_000, "2 GPUs for about a second: \(ms)")

            let cancelled = try await client.call(.post, "/v1/jobs/\(id)/cancel", key: acme)
            #expect(cancelled.status == 200)
            #expect(cancelled["state"] as? String == "succeeded", "cancelling a finished job changes nothing")
        }
    }

    @Test(arguments: Mode.allCases)
    func listsPaginateWithCursors(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        try await cloud.app().test(mode.setup) { client in
            for _ in 0..<5 { _ = try await client.call(.post, "/v1/jobs", key: acme, body: jobBody()) }
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await client.call(
                    .get, "/v1/jobs?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""), key: acme)
                #expect(page.status == 200)
                #expect(page.items.count <= 2)
                seen += page.items.compactMap { $0["id"] as? String }
                cursor = page["next_cursor"] as? String
            } while cursor != nil
            #expect(seen == ["job-5", "job-4", "job-3", "job-2", "job-1"])
            let nodes = try await client.call(.get, "/v1/fleet/nodes?limit=3", key: acme)
            #expect(nodes.items.count == 3)
            #expect(nodes["next_cursor"] as? String == "node-3")
            let bad = try await client.call(.get, "/v1/jobs?limit=0", key: acme)
            #expect(bad.status == 400)
            let tooMany = try await client.call(.get, "/v1/jobs?limit=\(Limits.maxPageSize + 1)", key: acme)
            #expect(tooMany.status == 400)
        }
    }

    @Test(arguments: Mode.allCases)
    func operatorsManageTenantsProjectsMembersKeysAndFleet(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        try await cloud.app().test(mode.setup) { client in
            let org = try await client.call(
                .post, "/v1/orgs", key: cloud.admin, body: #"{"name":"acme","display_name":"Acme Corp"}"#)
            #expect(org.status == 201)
            #expect(try await client.call(.post, "/v1/orgs", key: cloud.admin, body: #"{"name":"acme"}"#).status == 409)
            let key = try await client.call(
                .post, "/v1/keys", key: cloud.admin, body: #"{"org":"acme","role":"org-admin","name":"boss"}"#)
            #expect(key.status == 201)
            let secret = try #require(key["secret"] as? String)
            #expect(secret.hasPrefix("sk_") && secret.count == 43)
            let project = try await client.call(.post, "/v1/projects", key: secret, body: #"{"name":"research"}"#)
            #expect(project.status == 201)
            #expect(project["id"] as? String == "acme/research")
            let member = try await client.call(
                .post, "/v1/members", key: secret, body: #"{"email":"ada@acme.test","role":"viewer"}"#)
            #expect(member.status == 201)
            let keys = try await client.call(.get, "/v1/keys", key: secret)
            #expect(keys.items.count == 1)
            #expect(keys.items.first?["secret"] == nil, "secrets are shown once, never listed")

            // The key is stored only as a hash.
            let stored = await cloud.plane.read { s in s.keys.values.first { $0.name == "boss" } }
            #expect(stored?.secretHash == APIKeySecret.hash(secret))
            #expect(stored.map { "\($0)".contains(secret) } == false)

            let launched = try await client.call(.post, "/v1/jobs", key: secret, body: jobBody(extra: #""project":"research""#))
            #expect(launched["project"] as? String == "acme/research")

            let keyID = try #require(key["id"] as? String)
            #expect(try await client.call(.post, "/v1/keys/\(keyID)/revoke", key: cloud.admin).status == 200)
            let revoked = try await client.call(.get, "/v1/whoami", key: secret)
            #expect(revoked.status == 401)

            let fleet = try await client.call(
                .post, "/v1/fleet", key: cloud.admin,
                body:
                    #"{"regions":[{"name":"eu","sites":[{"name":"ams","power_mw":30,"pue":1.2,"racks":[{"name":"nvl-1","nodes":[{"name":"gb","gpu":"GB200","count":18,"gpus":4}]}]}]}]}"#
            )
            #expect(fleet.status == 200)
            let models = try #require(fleet["models"] as? [[String: Any]])
            #expect(models.first { $0["gpu"] as? String == "GB200" }?["gpus"] as? Int == 72)
            let sites = try #require(fleet["sites"] as? [[String: Any]])
            #expect(sites.first { $0["name"] as? String == "ams" }?["power_mw"] as? String == "30")
        }
    }

    @Test(arguments: Mode.allCases)
    func explainSaysWhyAJobWaits(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        try await cloud.app().test(mode.setup) { client in
            // 6 nodes busy with spot work, then a gang that needs a whole rack of 4.
            let spot = try await client.call(
                .post, "/v1/jobs", key: acme, body: jobBody("H100:8", extra: #""num_nodes":6,"tier":"spot""#))
            let retry = try #require(spot["retry"] as? [String: Any])
            #expect(retry["on_events"] as? [String] == ["preemption", "node_lost"])
            #expect(retry["limit"] as? Int == 100)
            try await cloud.plane.schedule()
            let gang = try await client.call(
                .post, "/v1/jobs", key: acme, body: jobBody("H100:8", extra: #""num_nodes":4,"tier":"spot","topology":"rack""#))
            let id = try #require(gang["id"] as? String)
            #expect(gang["topology"] as? String == "rack")
            let before = try await client.call(.get, "/v1/jobs/\(id)/explain", key: acme)
            #expect(before["summary"] as? String == "queued; not yet considered by the scheduler")
            try await cloud.plane.schedule()
            let why = try await client.call(.get, "/v1/jobs/\(id)/explain", key: acme)
            #expect(why.status == 200)
            #expect(why["queue_position"] as? Int == 1)
            let reasons = try #require(why["reasons"] as? [String])
            #expect(reasons.first == "capacity: needs 4 node(s) with 8 free H100; 2 have that now (16 H100 free in all)")
            #expect(reasons.last == "tier: spot work never preempts")
            #expect((why["summary"] as? String)?.hasPrefix("waiting: capacity") == true)

            // An on-demand job preempts the spot gang to run; explain shows the preemption.
            let od = try await client.call(
                .post, "/v1/jobs", key: acme, body: jobBody("H100:8", extra: #""num_nodes":4,"topology":"rack""#))
            let odID = try #require(od["id"] as? String)
            try await cloud.plane.schedule()
            let preempting = try await client.call(.get, "/v1/jobs/\(odID)/explain", key: acme)
            #expect(preempting["preempting"] as? [String] == [spot["id"] as! String])
            #expect(
                (preempting["reasons"] as? [String])?.first?.hasPrefix("preemption: stopping 1 spot job(s) with 120 s notice")
                    == true)
            let victim = try await client.call(.get, "/v1/jobs/\(spot["id"] as! String)", key: acme)
            #expect(victim["preempted_by"] as? String == odID)
            #expect((victim["events"] as? [[String: Any]])?.last?["kind"] as? String == "preemption_notice")
        }
    }

    @Test(arguments: Mode.allCases)
    func quotasAreSetByTheRightRolesAndHold(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let admin = try await cloud.tenant("acme", role: .orgAdmin)
        let member = try await cloud.tenant("acme", role: .member)
        let other = try await cloud.tenant("other", role: .orgAdmin)
        try await cloud.app().test(mode.setup) { client in
            // Org quotas are the operator's; project quotas the org admin's.
            #expect(try await client.call(.post, "/v1/quotas", key: admin, body: #"{"limit":8}"#).status == 403)
            #expect(
                try await client.call(.post, "/v1/quotas", key: member, body: #"{"project":"default","limit":8}"#).status == 403)
            #expect(
                try await client.call(.post, "/v1/quotas", key: other, body: #"{"org":"acme","project":"default","limit":8}"#)
                    .status == 404)
            let set = try await client.call(
                .post, "/v1/quotas", key: cloud.admin, body: #"{"org":"acme","gpu":"h100","limit":8}"#)
            #expect(set.status == 200)
            #expect(set["gpu"] as? String == "H100")
            #expect(
                try await client.call(.post, "/v1/quotas", key: admin, body: #"{"project":"default","limit":16}"#).status == 200)
            let bad = try await client.call(.post, "/v1/quotas", key: cloud.admin, body: #"{"org":"acme","limit":-3}"#)
            #expect(bad.status == 400)

            for _ in 0..<2 { _ = try await client.call(.post, "/v1/jobs", key: member, body: jobBody("H100:8")) }
            try await cloud.plane.schedule()
            let list = try await client.call(.get, "/v1/quotas", key: member)
            #expect(list.items.count == 2)
            let h100 = try #require(list.items.first { $0["gpu"] as? String == "H100" })
            #expect(h100["used"] as? Int == 8)
            #expect(h100["limit"] as? Int == 8)
            let jobs = try await client.call(.get, "/v1/jobs?state=queued", key: member)
            let waiting = try #require(jobs.items.first)
            #expect((waiting["wait_reason"] as? String)?.hasPrefix("quota: org acme H100 at 8/8 (needs 8)") == true)
            #expect(try await client.call(.get, "/v1/quotas", key: other).items.isEmpty)
            let removed = try await client.call(
                .post, "/v1/quotas", key: cloud.admin, body: #"{"org":"acme","gpu":"H100","limit":null}"#)
            #expect(removed.status == 200)
            try await cloud.plane.schedule()
            #expect(try await client.call(.get, "/v1/jobs?state=queued", key: member).items.isEmpty)
        }
    }

    @Test(arguments: Mode.allCases)
    func quotesAndEstimatedStartsChangeNothing(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        try await cloud.app().test(mode.setup) { client in
            // The fleet is full of 1-hour on-demand work.
            let busy = try await client.call(
                .post, "/v1/jobs", key: acme, body: jobBody("H100:8", extra: #""num_nodes":8,"max_duration":"1h""#))
            try await cloud.plane.schedule()
            let busyID = try #require(busy["id"] as? String)
            let nodes = await cloud.plane.read { $0.jobs[JobID(busyID)]!.allocations.map(\.node) }
            for n in nodes { try await cloud.plane.execute(.allocationStarted(AllocationStarted(job: JobID(busyID), node: n))) }
            let started = try #require(await cloud.plane.read { $0.jobs[JobID(busyID)]!.startedAt })

            let before = await cloud.seq
            let quote = try await client.call(.post, "/v1/quotes", key: acme, body: jobBody("H100:8"))
            #expect(quote.status == 200)
            #expect(quote.items.compactMap { $0["tier"] as? String } == ["on-demand", "spot"])
            let onDemand = try #require(quote.items.first)
            #expect(onDemand["starts_now"] as? Bool == false)
            #expect(onDemand["earliest_start"] as? String == started.adding(seconds: 3600).description)
            #expect((onDemand["reasons"] as? [String])?.first?.hasPrefix("capacity: needs 1 node(s) with 8 free H100") == true)
            #expect(await cloud.seq == before, "a quote changes nothing")
            #expect(try await client.call(.post, "/v1/quotes", key: acme, body: jobBody("H100:9")).status == 400)
            // A quote covers every tier the caller may buy, whatever tier the spec names.
            let tenantTiers = try await client.call(.post, "/v1/quotes", key: acme, body: jobBody(extra: #""tier":"internal""#))
            #expect(tenantTiers.items.compactMap { $0["tier"] as? String } == ["on-demand", "spot"])
            let operatorTiers = try await client.call(.post, "/v1/quotes", key: cloud.admin, body: jobBody())
            #expect(operatorTiers.items.compactMap { $0["tier"] as? String } == ["internal", "on-demand", "spot"])

            // Quotes consider every acceptable GPU model: a free B200 node means "now".
            var b200 = FleetSpec()
            b200.racks = [.init(id: "rack-c", site: "local-dc1")]
            b200.nodes = [.init(id: "b-1", rack: "rack-c", gpuModel: "B200", gpuCount: 8, labels: [:])]
            try await cloud.plane.execute(.applyFleet(b200))
            let either = try await client.call(
                .post, "/v1/quotes", key: acme, body: #"{"resources":{"accelerators":["H100:8","B200:8"]},"run":"x"}"#)
            #expect(either.items.first?["starts_now"] as? Bool == true, "\(either.text)")

            let queued = try await client.call(.post, "/v1/jobs", key: acme, body: jobBody("H100:8"))
            try await cloud.plane.schedule()
            let why = try await client.call(.get, "/v1/jobs/\(queued["id"] as! String)/explain", key: acme)
            #expect(why["estimated_start"] as? String == started.adding(seconds: 3600).description)
        }
    }
}

/// The server forgets jobs that ended longer ago than `stratus up --retain-jobs`.
@Suite struct RetentionTests {
    @Test func endedJobsAreForgottenAfterTheRetentionAndTheirMoneyStays() async throws {
        let cloud = try await TestCloud.make()
        let acme = try await cloud.tenant("acme")
        try await cloud.app().test(.router) { client in
            let done = try #require(try await client.call(.post, "/v1/jobs", key: acme, body: jobBody())["id"] as? String)
            let live = try #require(try await client.call(.post, "/v1/jobs", key: acme, body: jobBody())["id"] as? String)
            try await cloud.plane.schedule()
            try await cloud.finish(done)
            let owed = await cloud.plane.read { $0.billing.ledger.balance(.receivable("acme")) }
            try await Task.sleep(for: .milliseconds(20))
            // Ended within the last hour: kept; nothing to forget logs nothing.
            let seq = await cloud.seq
            #expect(try await cloud.plane.retireJobs(endedSecondsAgo: 3600) == 0)
            #expect(await cloud.seq == seq)
            #expect(try await client.call(.get, "/v1/jobs/\(done)", key: acme).status == 200)
            // Ended before now: forgotten; the running job stays, and so does the money.
            #expect(try await cloud.plane.retireJobs(endedSecondsAgo: 0) == 1)
            #expect(try await client.call(.get, "/v1/jobs/\(done)", key: acme).status == 404)
            #expect(try await client.call(.get, "/v1/jobs/\(live)", key: acme)["state"] as? String == "starting")
            #expect(await cloud.plane.read { $0.billing.ledger.balance(.receivable("acme")) } == owed)
            #expect(await cloud.plane.read { $0.usage.retiredRecords } == 1)
        }
    }
}
