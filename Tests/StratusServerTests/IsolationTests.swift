import HummingbirdTesting
import StratusCore
import Testing

/// Two tenants, every endpoint: org B never sees or touches org A's objects, and gets
/// a not-found (not a permission error) so it cannot probe for them.
@Suite struct TenantIsolationTests {
    @Test(arguments: Mode.allCases)
    func orgsSeeOnlyTheirOwnObjects(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let a = try await cloud.tenant("org-a", role: .orgAdmin)
        let b = try await cloud.tenant("org-b", role: .orgAdmin)
        try await cloud.app().test(mode.setup) { client in
            let job = try #require(try await client.call(.post, "/v1/jobs", key: a, body: jobBody())["id"] as? String)
            try await cloud.plane.schedule()
            try await cloud.finish(job)
            _ = try await client.call(.post, "/v1/projects", key: a, body: #"{"name":"secret-project"}"#)
            _ = try await client.call(.post, "/v1/members", key: a, body: #"{"email":"a@a.test"}"#)
            let aKeyID = try #require(try await client.call(.get, "/v1/keys", key: a).items.first?["id"] as? String)
            let block = try await client.call(
                .post, "/v1/reservations", key: a, body: #"{"gpu":"H100","gpus":8,"start":"+1h","duration":"2h"}"#)
            #expect(block.status == 201, "\(block.text)")
            let blockID = try #require(block["id"] as? String)
            let before = await cloud.seq

            // Reads of A's objects by B: 404 with a JSON error.
            for path in [
                "/v1/jobs/\(job)", "/v1/jobs/\(job)/logs", "/v1/jobs/\(job)/explain", "/v1/orgs/org-a", "/v1/projects?org=org-a",
                "/v1/members?org=org-a", "/v1/keys?org=org-a", "/v1/usage?org=org-a", "/v1/usage?job=\(job)",
                "/v1/jobs?org=org-a", "/v1/reservations/\(blockID)", "/v1/reservations?org=org-a",
            ] {
                let r = try await client.call(.get, path, key: b)
                #expect(r.status == 404, "GET \(path): \(r.status) \(r.text)")
                #expect(r.errorCode == "not_found", "GET \(path)")
            }
            // Writes to A's objects by B: 404, and nothing changes.
            for (path, body) in [
                ("/v1/jobs/\(job)/cancel", nil), ("/v1/keys/\(aKeyID)/revoke", nil),
                ("/v1/projects", #"{"name":"x","org":"org-a"}"#), ("/v1/members", #"{"email":"x@x.test","org":"org-a"}"#),
                ("/v1/keys", #"{"org":"org-a","role":"member"}"#), ("/v1/reservations/\(blockID)/cancel", nil),
                (
                    "/v1/jobs",
                    #"{"resources":{"accelerators":"H100:8"},"run":"x","reservation":"\#(blockID)"}"#
                ),
            ] as [(String, String?)] {
                let r = try await client.call(.post, path, key: b, body: body)
                #expect(r.status == 404, "POST \(path): \(r.status) \(r.text)")
            }
            #expect(await cloud.seq == before)

            // Lists show only B's own objects.
            #expect(try await client.call(.get, "/v1/jobs", key: b).items.isEmpty)
            #expect(try await client.call(.get, "/v1/reservations", key: b).items.isEmpty)
            #expect(try await client.call(.get, "/v1/reservations", key: a).items.count == 1)
            #expect(try await client.call(.get, "/v1/usage", key: b).items.isEmpty)
            #expect(try await client.call(.get, "/v1/orgs", key: b).items.compactMap { $0["name"] as? String } == ["org-b"])
            #expect(
                try await client.call(.get, "/v1/projects", key: b).items.compactMap { $0["id"] as? String } == ["org-b/default"])
            #expect(try await client.call(.get, "/v1/members", key: b).items.isEmpty)
            #expect(try await client.call(.get, "/v1/keys", key: b).items.allSatisfy { $0["org"] as? String == "org-b" })
            // A sees its own; the operator sees both.
            #expect(try await client.call(.get, "/v1/jobs", key: a).items.count == 1)
            #expect(try await client.call(.get, "/v1/usage", key: a).items.count == 1)
            #expect(try await client.call(.get, "/v1/orgs", key: cloud.admin).items.count == 3)
            #expect(try await client.call(.get, "/v1/usage?org=org-a", key: cloud.admin).items.count == 1)
            // Fair share: tenants see only their own standing; the operator sees every org.
            let shareB = try await client.call(.get, "/v1/fairshare", key: b)
            #expect(shareB.items.compactMap { $0["org"] as? String } == ["org-b"])
            let shareAll = try await client.call(.get, "/v1/fairshare", key: cloud.admin)
            #expect(Set(shareAll.items.compactMap { $0["org"] as? String }) == ["internal", "org-a", "org-b"])
            #expect(shareAll.items.first { $0["org"] as? String == "org-a" }?["usage_gpu_hours"] != nil)
            let patch = try await client.call(.patch, "/v1/orgs/org-a", key: b, body: #"{"weight":5}"#)
            #expect(patch.status == 404)
            let patched = try await client.call(.patch, "/v1/orgs/org-a", key: cloud.admin, body: #"{"weight":5}"#)
            #expect(patched["weight"] as? Int == 5)
        }
    }

    @Test(arguments: Mode.allCases)
    func rolesLimitWhatKeysMayDo(mode: Mode) async throws {
        let cloud = try await TestCloud.make()
        let viewer = try await cloud.tenant("acme", role: .viewer)
        let member = try await cloud.tenant("acme", role: .member)
        try await cloud.app().test(mode.setup) { client in
            let job = try #require(try await client.call(.post, "/v1/jobs", key: member, body: jobBody())["id"] as? String)
            let before = await cloud.seq
            for (path, body, key) in [
                ("/v1/jobs", jobBody(), viewer), ("/v1/jobs/\(job)/cancel", nil, viewer),
                ("/v1/projects", #"{"name":"p"}"#, member), ("/v1/members", #"{"email":"x@x.test"}"#, member),
                ("/v1/keys", #"{"role":"member"}"#, member), ("/v1/orgs", #"{"name":"mine"}"#, member),
                ("/v1/fleet", #"{"regions":[]}"#, member),
                ("/v1/keys", #"{"role":"operator-admin"}"#, member),
            ] as [(String, String?, String)] {
                let r = try await client.call(.post, path, key: key, body: body)
                #expect(r.status == 403, "POST \(path): \(r.status) \(r.text)")
                #expect(r.errorCode == "permission_denied")
            }
            let internalTier = try await client.call(.post, "/v1/jobs", key: member, body: jobBody(extra: #""tier":"internal""#))
            #expect(internalTier.status == 403)
            #expect(await cloud.seq == before)
            // Viewers read.
            #expect(try await client.call(.get, "/v1/jobs/\(job)", key: viewer).status == 200)
            #expect(try await client.call(.get, "/v1/keys", key: member).status == 403)
            // No key, a malformed key, an unknown key.
            for header in [nil, "sk_nope", "sk_" + String(repeating: "0", count: 40)] {
                let r = try await client.call(.get, "/v1/jobs", key: header)
                #expect(r.status == 401)
                #expect(r.errorCode == "unauthenticated")
            }
        }
    }
}
