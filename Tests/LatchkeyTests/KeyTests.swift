import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Testing

/// Mints a key through the API and returns (key, id).
func mintKey(
    _ client: any TestClientProtocol, with key: String, _ body: [String: Any]
) async throws -> (key: String, id: String) {
    let response = try await client.call(.post, "/v1/keys", key: key, body: json(body))
    #expect(response.status == 201, "\(response.body)")
    return (try #require(response.json["key"].stringValue), try #require(response.json["id"].stringValue))
}

@Suite("API keys: minting, listing, revoking")
struct KeyLifecycleTests {
    @Test func theBootstrapSecretMintsTheFirstKeyAndNothingElse() async throws {
        try await Harness.withApp { harness, client in
            let response = try await client.call(
                .post, "/v1/keys", key: harness.adminSecret,
                body: json(["name": "ops", "role": "admin", "vaults": ["*"], "description": "first admin"]))
            #expect(response.status == 201)
            let key = try #require(response.json["key"].stringValue)
            #expect(key.hasPrefix("lk_live_"))
            #expect(key.count == 8 + 43)  // 32 random bytes, base64url
            #expect(response.json["prefix"] == .string(String(key.prefix(12))))
            #expect(response.json["status"] == .string("active"))
            #expect(response.json["created_by"] == .string("admin-secret"))
            #expect(response.headers[.cacheControl] == "no-store")
            // The key works; the secret does nothing but mint.
            #expect(try await client.call(.get, "/v1/vaults", key: key).status == 200)
            let refused = try await client.call(.get, "/v1/vaults", key: harness.adminSecret)
            #expect(refused.status == 403)
            #expect(refused.errorCode == "FORBIDDEN")
            #expect(try await client.call(.get, "/v1/keys", key: harness.adminSecret).status == 403)
        }
    }

    @Test func keysAreListedWithoutTheKeyAndRevokedEverywhere() async throws {
        try await Harness.withApp { harness, client in
            let (key, id) = try await mintKey(
                client, with: harness.adminKey,
                [
                    "name": "sidecar", "role": "proxy", "vaults": ["default"], "credentials": ["github"],
                    "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32"],
                ])
            let list = try await client.call(.get, "/v1/keys", key: harness.adminKey)
            #expect(!list.body.contains(key))
            let listed = try #require(list.json["items"].arrayValue.first { $0["id"] == .string(id) })
            #expect(listed["role"] == .string("proxy"))
            #expect(listed["vaults"] == .array([.string("default")]))
            #expect(listed["credentials"] == .array([.string("github")]))
            #expect(listed["ip_allowlist"] == .array([.string("10.0.0.0/8"), .string("2001:db8::/32")]))
            #expect(listed["ephemeral"] == .bool(false))
            #expect(listed["calls_last_24h"] == .number(0))

            let revoked = try await client.call(.delete, "/v1/keys/\(id)", key: harness.adminKey)
            #expect(revoked.status == 200)
            #expect(revoked.json["status"] == .string("revoked"))
            #expect(revoked.json["revoked_by"] == .string(harness.adminActor))
            // Revoking twice is harmless; an unknown id is 404, a malformed one 400.
            #expect(try await client.call(.delete, "/v1/keys/\(id)", key: harness.adminKey).status == 200)
            let unknown = try await client.call(.delete, "/v1/keys/\(UUID().uuidString)", key: harness.adminKey)
            #expect(unknown.errorCode == "KEY_NOT_FOUND")
            #expect(try await client.call(.delete, "/v1/keys/nope", key: harness.adminKey).status == 400)

            let audit = try await client.call(.get, "/v1/audit?action=key.revoke", key: harness.adminKey)
            #expect(audit.json["items"].arrayValue.count == 1)
            #expect(audit.json["items"][0]["detail"]["prefix"] == .string(String(key.prefix(12))))
        }
    }

    @Test func badMintRequestsAreRefusedAndStoreNothing() async throws {
        try await Harness.withApp { harness, client in
            let before = try await harness.dataSnapshot()
            let cases: [([String: Any], String)] = [
                (["role": "admin", "vaults": ["*"]], "name"),
                (["name": "k", "role": "root", "vaults": ["*"]], "role"),
                (["name": "k", "role": "admin"], "vaults"),
                (["name": "k", "role": "admin", "vaults": []], "vaults"),
                (["name": "k", "role": "admin", "vaults": ["*", "default"]], "vaults"),
                (["name": "k", "role": "admin", "vaults": ["no such vault"]], "vaults"),
                (["name": "k", "role": "admin", "vaults": ["ghost"]], "vaults"),
                (["name": "k", "role": "proxy", "vaults": ["default"], "credentials": ["1bad"]], "credentials"),
                (
                    ["name": "k", "role": "proxy", "vaults": ["default"], "ip_allowlist": ["10.0.0.0/33"]],
                    "ip_allowlist"
                ),
                (
                    ["name": "k", "role": "proxy", "vaults": ["default"], "ip_allowlist": ["example.com"]],
                    "ip_allowlist"
                ),
                (["name": "k", "role": "proxy", "vaults": ["default"], "ttl_seconds": 0], "ttl_seconds"),
                (["name": "k", "role": "proxy", "vaults": ["default"], "ttl_seconds": 10_000_000], "ttl_seconds"),
                (["name": "k", "role": "proxy", "vaults": ["default"], "ttl_seconds": 1.5], "ttl_seconds"),
                (["name": "k", "role": "proxy", "vaults": ["default"], "owner": "me"], "owner"),
            ]
            for (body, field) in cases {
                let response = try await client.call(.post, "/v1/keys", key: harness.adminKey, body: json(body))
                #expect(response.status == 422, "\(body) → \(response.body)")
                #expect(response.json["error"]["field"] == .string(field), "\(body) → \(response.body)")
            }
            #expect(try await harness.dataSnapshot() == before)
        }
    }

    @Test func ephemeralKeysExpireByThemselves() async throws {
        try await Harness.withApp { harness, client in
            let byDefault = try await client.call(
                .post, "/v1/keys", key: harness.adminKey,
                body: json(["name": "agent", "role": "admin", "vaults": ["*"], "ephemeral": true]))
            let defaultExpiry = try #require(byDefault.json["expires_at"].stringValue)
            #expect(
                ISO8601DateFormatter().date(from: defaultExpiry) == harness.clock.now.addingTimeInterval(600))
            let (key, id) = try await mintKey(
                client, with: harness.adminKey, ["name": "agent", "role": "admin", "vaults": ["*"], "ttl_seconds": 60])
            #expect(key.hasPrefix("lk_eph_"))
            #expect(try await client.call(.get, "/v1/vaults", key: key).status == 200)

            harness.clock.advance(by: 59)
            #expect(try await client.call(.get, "/v1/vaults", key: key).status == 200)
            harness.clock.advance(by: 1)
            let expired = try await client.call(.get, "/v1/vaults", key: key)
            #expect(expired.status == 401)
            #expect(expired.errorCode == "INVALID_KEY")
            let listed = try await client.call(.get, "/v1/keys", key: harness.adminKey)
            #expect(listed.json["items"].arrayValue.first { $0["id"] == .string(id) }?["status"] == .string("expired"))

            await harness.flushUsage()
            await harness.flushUsage()  // expiry is audited once, not on every flush
            let audit = try await client.call(.get, "/v1/audit?action=key.expire", key: harness.adminKey)
            #expect(audit.json["items"].arrayValue.count == 1)
            #expect(audit.json["items"][0]["detail"]["key_id"] == .string(id))
            let failure = try await client.call(.get, "/v1/audit?action=auth.failure", key: harness.adminKey)
            #expect(failure.json["items"][0]["detail"]["reason"] == .string("expired_key"))
            #expect(failure.json["items"][0]["actor"] == .string("key:\(key.prefix(12))"))
        }
    }
}

@Suite("API keys: roles and scopes")
struct AccessMatrixTests {
    enum Holder: String, CaseIterable, Sendable {
        case adminAll, adminOps, proxy, connect, bootstrapSecret
    }

    struct Route: Sendable {
        let method: HTTPRequest.Method
        let uri: String
        let body: String?
        /// Who may call it (everyone else: 403).
        let allowed: Set<Holder>
    }

    static let routes: [Route] = [
        Route(method: .get, uri: "/v1/whoami", body: nil, allowed: Set(Holder.allCases)),
        Route(method: .get, uri: "/v1/vaults", body: nil, allowed: [.adminAll, .adminOps]),
        Route(method: .post, uri: "/v1/vaults", body: json(["name": "new-vault"]), allowed: [.adminAll]),
        Route(method: .get, uri: "/v1/vaults/default", body: nil, allowed: [.adminAll]),
        Route(method: .get, uri: "/v1/vaults/ops", body: nil, allowed: [.adminAll, .adminOps]),
        Route(method: .get, uri: "/v1/vaults/default/credentials", body: nil, allowed: [.adminAll]),
        Route(method: .get, uri: "/v1/vaults/ops/credentials", body: nil, allowed: [.adminAll, .adminOps]),
        Route(
            method: .post, uri: "/v1/vaults/ops/credentials",
            body: json(["name": "fresh", "type": "bearer", "value": ["token": "t"]]), allowed: [.adminAll, .adminOps]),
        Route(method: .get, uri: "/v1/vaults/ops/credentials/tok", body: nil, allowed: [.adminAll, .adminOps]),
        Route(
            method: .patch, uri: "/v1/vaults/ops/credentials/tok", body: json(["description": "d"]),
            allowed: [.adminAll, .adminOps]),
        Route(
            method: .post, uri: "/v1/vaults/ops/credentials/tok/rotate", body: json(["value": ["token": "t2"]]),
            allowed: [.adminAll, .adminOps]),
        Route(method: .delete, uri: "/v1/vaults/ops/credentials/tok", body: nil, allowed: [.adminAll, .adminOps]),
        Route(method: .delete, uri: "/v1/vaults/default/credentials/tok", body: nil, allowed: [.adminAll]),
        Route(method: .get, uri: "/v1/audit", body: nil, allowed: [.adminAll]),
        Route(method: .get, uri: "/v1/keys", body: nil, allowed: [.adminAll]),
        Route(
            method: .post, uri: "/v1/keys", body: json(["name": "n", "role": "proxy", "vaults": ["ops"]]),
            allowed: [.adminAll, .adminOps, .bootstrapSecret]),
        Route(method: .delete, uri: "/v1/keys/\(UUID().uuidString)", body: nil, allowed: [.adminAll]),
    ]

    @Test("each role against each endpoint", arguments: Holder.allCases)
    func matrix(holder: Holder) async throws {
        try await Harness.withApp { harness, client in
            let admin = harness.adminKey
            _ = try await client.call(.post, "/v1/vaults", key: admin, body: json(["name": "ops"]))
            let keyFor: [Holder: String] = [
                .adminAll: admin,
                .adminOps: try await mintKey(client, with: admin, ["name": "o", "role": "admin", "vaults": ["ops"]])
                    .key,
                .proxy: try await mintKey(client, with: admin, ["name": "p", "role": "proxy", "vaults": ["*"]]).key,
                .connect: try await mintKey(client, with: admin, ["name": "c", "role": "connect", "vaults": ["*"]]).key,
                .bootstrapSecret: harness.adminSecret,
            ]
            for route in Self.routes {
                // Fresh fixtures for each call, so a delete does not hide a later route's answer.
                for vault in ["default", "ops"] {
                    _ = try await client.call(.delete, "/v1/vaults/\(vault)/credentials/tok", key: admin)
                    _ = try await client.call(
                        .post, "/v1/vaults/\(vault)/credentials", key: admin,
                        body: json(["name": "tok", "type": "bearer", "value": ["token": "t"]]))
                }
                _ = try await client.call(.delete, "/v1/vaults/ops/credentials/fresh", key: admin)
                let response = try await client.call(route.method, route.uri, key: keyFor[holder], body: route.body)
                if route.allowed.contains(holder) {
                    #expect(
                        response.status < 400 || response.errorCode == "KEY_NOT_FOUND",
                        "\(holder) \(route.method) \(route.uri) → \(response.body)")
                } else {
                    #expect(response.status == 403, "\(holder) \(route.method) \(route.uri) → \(response.body)")
                    #expect(response.errorCode == "FORBIDDEN")
                }
            }
        }
    }

    @Test func scopedKeysSeeAndMintOnlyWithinTheirScope() async throws {
        try await Harness.withApp { harness, client in
            let admin = harness.adminKey
            _ = try await client.call(.post, "/v1/vaults", key: admin, body: json(["name": "ops"]))
            for name in ["alpha", "beta"] {
                _ = try await client.call(
                    .post, "/v1/vaults/ops/credentials", key: admin,
                    body: json(["name": name, "type": "bearer", "value": ["token": "t"]]))
            }
            let ops = try await mintKey(client, with: admin, ["name": "o", "role": "admin", "vaults": ["ops"]]).key
            let vaults = try await client.call(.get, "/v1/vaults", key: ops)
            #expect(vaults.json["items"].arrayValue.compactMap { $0["name"].stringValue } == ["ops"])
            // It can mint within ops, not beyond.
            #expect(
                try await client.call(
                    .post, "/v1/keys", key: ops, body: json(["name": "p", "role": "proxy", "vaults": ["ops"]])
                ).status == 201)
            #expect(
                try await client.call(
                    .post, "/v1/keys", key: ops, body: json(["name": "p", "role": "proxy", "vaults": ["*"]])
                ).status == 403)
            #expect(
                try await client.call(
                    .post, "/v1/keys", key: ops, body: json(["name": "p", "role": "proxy", "vaults": ["default"]])
                ).status == 403)

            // An admin key limited to one credential sees and manages only it.
            let alphaOnly = try await mintKey(
                client, with: admin, ["name": "a", "role": "admin", "vaults": ["ops"], "credentials": ["alpha"]]
            ).key
            let whoami = try await client.call(.get, "/v1/whoami", key: alphaOnly)
            #expect(whoami.json["role"] == .string("admin"))
            #expect(whoami.json["vaults"] == .array([.string("ops")]))
            #expect(whoami.json["credentials"] == .array([.string("alpha")]))
            #expect(whoami.json["principal"] == .string("key:\(alphaOnly.prefix(12))"))
            #expect(!whoami.body.contains(alphaOnly))
            let list = try await client.call(.get, "/v1/vaults/ops/credentials", key: alphaOnly)
            #expect(list.json["items"].arrayValue.compactMap { $0["name"].stringValue } == ["alpha"])
            #expect(try await client.call(.get, "/v1/vaults/ops/credentials/alpha", key: alphaOnly).status == 200)
            #expect(try await client.call(.get, "/v1/vaults/ops/credentials/beta", key: alphaOnly).status == 403)
            let create = try await client.call(
                .post, "/v1/vaults/ops/credentials", key: alphaOnly,
                body: json(["name": "gamma", "type": "bearer", "value": ["token": "t"]]))
            #expect(create.status == 403)
        }
    }
}

@Suite("API keys: enforcement on the wire")
struct KeyEnforcementTests {
    @Test func ipAllowlistsForIPv4IPv6AndMappedAddresses() async throws {
        try await Harness.withApp(.live, configure: { $0.trustedProxies = [CIDR("127.0.0.1/32")!] }) {
            harness, client in
            let admin = harness.adminKey
            let loopback = try await mintKey(
                client, with: admin, ["name": "l", "role": "admin", "vaults": ["*"], "ip_allowlist": ["127.0.0.0/8"]])
            let remote = try await mintKey(
                client, with: admin,
                ["name": "r", "role": "admin", "vaults": ["*"], "ip_allowlist": ["2001:db8::/32", "192.0.2.0/24"]])
            #expect(try await client.call(.get, "/v1/vaults", key: loopback.key).status == 200)
            // Straight from the socket (127.0.0.1): not in the remote key's list.
            let direct = try await client.call(.get, "/v1/vaults", key: remote.key)
            #expect(direct.status == 403)
            #expect(direct.errorCode == "IP_NOT_ALLOWED")
            // Through the trusted proxy at 127.0.0.1: the forwarded client counts.
            for (forwarded, status) in [
                ("2001:db8::7", 200), ("2001:db9::7", 403), ("192.0.2.9", 200), ("::ffff:192.0.2.9", 200),
                ("198.51.100.1", 403), ("203.0.113.5, 2001:db8::1", 200), ("2001:db8::1, 203.0.113.5", 403),
                ("not-an-address", 403),
            ] {
                let response = try await client.call(
                    .get, "/v1/vaults", key: remote.key, headers: [.init("X-Forwarded-For")!: forwarded])
                #expect(response.status == status, "X-Forwarded-For: \(forwarded)")
            }
            // IPv4 allowlists match IPv4-mapped IPv6 clients too.
            let mapped = try await mintKey(
                client, with: admin,
                ["name": "m", "role": "admin", "vaults": ["*"], "ip_allowlist": ["::ffff:192.0.2.0/120"]])
            let viaMapped = try await client.call(
                .get, "/v1/vaults", key: mapped.key, headers: [.init("X-Forwarded-For")!: "192.0.2.77"])
            #expect(viaMapped.status == 200)

            await harness.flushUsage()
            let keys = try await client.call(.get, "/v1/keys", key: admin)
            let remoteInfo = keys.json["items"].arrayValue.first { $0["id"] == .string(remote.id) }
            #expect(remoteInfo?["blocked_attempts"] == .number(5))
            let blocked = try await client.call(.get, "/v1/audit?action=auth.ip_blocked", key: admin)
            #expect(blocked.json["items"].arrayValue.count == 1)
            #expect(blocked.json["items"][0]["detail"]["attempts"] == .number(5))
        }
    }

    @Test func forwardedForIsIgnoredUnlessThePeerIsATrustedProxy() async throws {
        try await Harness.withApp(.live) { harness, client in
            let remote = try await mintKey(
                client, with: harness.adminKey,
                ["name": "r", "role": "admin", "vaults": ["*"], "ip_allowlist": ["192.0.2.0/24"]])
            let spoofed = try await client.call(
                .get, "/v1/vaults", key: remote.key, headers: [.init("X-Forwarded-For")!: "192.0.2.9"])
            #expect(spoofed.status == 403)
        }
    }

    @Test func aRevokedKeyFromADisallowedAddressGets403FirstAndIsCounted() async throws {
        try await Harness.withApp(.live) { harness, client in
            let key = try await mintKey(
                client, with: harness.adminKey,
                ["name": "r", "role": "admin", "vaults": ["*"], "ip_allowlist": ["10.0.0.0/8"]])
            _ = try await client.call(.delete, "/v1/keys/\(key.id)", key: harness.adminKey)
            let response = try await client.call(.get, "/v1/vaults", key: key.key)
            #expect(response.status == 403)
            #expect(response.errorCode == "IP_NOT_ALLOWED")
            await harness.flushUsage()
            let keys = try await client.call(.get, "/v1/keys", key: harness.adminKey)
            #expect(
                keys.json["items"].arrayValue.first { $0["id"] == .string(key.id) }?["blocked_attempts"] == .number(1))
        }
    }

    @Test func aWarmKeyIsAuthenticatedWithoutTheDatabase() async throws {
        try await Harness.withApp(.live) { harness, client in
            let cache = try #require(harness.flusher.cache)
            // The listener connects as the server starts; until then the cache is bypassed.
            #expect(cache.isLive)
            let key = try await mintKey(
                client, with: harness.adminKey, ["name": "p", "role": "proxy", "vaults": ["*"]])
            let before = cache.misses
            for _ in 0..<50 {
                // A proxy key on an admin route: authentication runs in full, then 403 without any query.
                #expect(try await client.call(.get, "/v1/vaults", key: key.key).status == 403)
            }
            #expect(cache.misses - before == 1)
        }
    }

    @Test func rateLimitsAnswer429WithRetryAfterPerKey() async throws {
        try await Harness.withApp(configure: {
            $0.rateLimit = 1; $0.rateLimitBurst = 3
        }) { harness, client in
            let first = try await mintKey(
                client, with: harness.adminKey, ["name": "a", "role": "admin", "vaults": ["*"]])
            let second = try await mintKey(
                client, with: harness.adminKey, ["name": "b", "role": "admin", "vaults": ["*"]])
            for _ in 0..<3 { #expect(try await client.call(.get, "/v1/vaults", key: first.key).status == 200) }
            let limited = try await client.call(.get, "/v1/vaults", key: first.key)
            #expect(limited.status == 429)
            #expect(limited.errorCode == "RATE_LIMITED")
            #expect(limited.headers[.retryAfter] == "1")
            // Other keys have their own bucket; time refills it.
            #expect(try await client.call(.get, "/v1/vaults", key: second.key).status == 200)
            harness.clock.advance(by: 1)
            #expect(try await client.call(.get, "/v1/vaults", key: first.key).status == 200)
        }
    }

    @Test func usageIsAggregatedAndSurvivesGracefulShutdown() async throws {
        try await TestDatabase.withFresh { database in
            let harness = try await Harness.make(database: database)
            let minted = Mutex<(key: String, id: String)?>(nil)
            try await harness.run { client in
                let key = try await mintKey(
                    client, with: harness.adminKey, ["name": "a", "role": "admin", "vaults": ["*"]])
                minted.withLock { $0 = key }
                for _ in 0..<7 { _ = try await client.call(.get, "/v1/vaults", key: key.key) }
                // Nothing was written per request.
                let beforeShutdown = try await database.withClient { client in
                    try await KeyStore(client: client, logger: Logger(label: "t")).list(now: Date())
                }
                #expect(beforeShutdown.first { $0.id == key.id }?.callsLast24h == 0)
            }
            // The server has shut down gracefully: its last flush wrote the counts.
            let id = try #require(minted.withLock { $0 }?.id)
            let keys = try await database.withClient { client in
                try await KeyStore(client: client, logger: Logger(label: "t")).list(now: harness.clock.now)
            }
            let info = try #require(keys.first { $0.id == id })
            #expect(info.callsLast24h == 7)
            #expect(info.lastSeenAt == harness.clock.now)
        }
    }

    /// The key cache has no expiry, so only the notification can end a warm key's life on
    /// the other instance; the one-second figure is measured by `Benchmarks/injection`.
    @Test func revocationReachesAnotherInstancesWarmCache() async throws {
        try await TestDatabase.withFresh { database in
            let harness = try await Harness.make(database: database)
            let other = try await Harness.make(database: database, masterKey: harness.masterKey)
            try await harness.run(.live) { first in
                try await other.run(.live) { second in
                    let key = try await mintKey(
                        first, with: harness.adminKey, ["name": "k", "role": "admin", "vaults": ["*"]])
                    // Warm the second instance's cache.
                    for _ in 0..<3 { #expect(try await second.call(.get, "/v1/vaults", key: key.key).status == 200) }
                    _ = try await first.call(.delete, "/v1/keys/\(key.id)", key: harness.adminKey)
                    let revokedAt = ContinuousClock.now
                    let refused = try await Eventually.check(within: .seconds(15)) {
                        try await second.call(.get, "/v1/vaults", key: key.key).status == 401
                    }
                    print("revocation reached the other instance after \(ContinuousClock.now - revokedAt)")
                    #expect(refused, "the second instance kept accepting a revoked key")
                }
            }
        }
    }
}

@Suite("Client address and CIDR parsing")
struct CIDRTests {
    @Test func parsingAndMatching() throws {
        let v4 = try #require(CIDR("10.1.2.3/8"))
        #expect(v4.description == "10.0.0.0/8")
        #expect(v4.contains(IPAddress("10.255.0.1")!))
        #expect(!v4.contains(IPAddress("11.0.0.1")!))
        #expect(v4.contains(IPAddress("::ffff:10.9.9.9")!))
        let v6 = try #require(CIDR("2001:db8::/32"))
        #expect(v6.contains(IPAddress("2001:db8:ffff::1")!))
        #expect(!v6.contains(IPAddress("2001:db9::1")!))
        #expect(!v6.contains(IPAddress("10.0.0.1")!))
        #expect(CIDR("192.0.2.7")?.description == "192.0.2.7/32")
        #expect(CIDR("::1")?.prefixLength == 128)
        #expect(CIDR("0.0.0.0/0")!.contains(IPAddress("203.0.113.1")!))
        for bad in [
            "", "10.0.0.0/", "10.0.0.0/33", "2001:db8::/129", "10.0.0.256", "host", "10.0.0.0/-1", "::ffff:1.2.3.4/95",
        ] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
    }

    @Test func forwardedForIsReadRightToLeftThroughTrustedProxies() {
        let trusted = [CIDR("10.0.0.0/8")!]
        #expect(
            ClientAddress.resolve(peer: "10.0.0.2", forwardedFor: "203.0.113.9", trusted: trusted)?.description
                == "203.0.113.9")
        #expect(
            ClientAddress.resolve(
                peer: "10.0.0.2", forwardedFor: "198.51.100.1, 203.0.113.9, 10.0.0.7", trusted: trusted)?
                .description == "203.0.113.9")
        #expect(
            ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: "203.0.113.9", trusted: trusted)?.description
                == "192.0.2.1")
        #expect(ClientAddress.resolve(peer: "10.0.0.2", forwardedFor: nil, trusted: trusted)?.description == "10.0.0.2")
        #expect(ClientAddress.resolve(peer: nil, forwardedFor: "203.0.113.9", trusted: trusted) == nil)
    }
}

@Suite("latchkey keys, as a real process")
struct KeyCLITests {
    @Test func mintListRevokeStraightAgainstTheDatabase() async throws {
        try await TestDatabase.withFresh { database in
            let environment = ["LATCHKEY_DATABASE_URL": database.url]
            let minted = try await LatchkeyProcess.run(
                ["keys", "mint", "--name", "ops", "--role", "admin", "--vault", "*", "--allow", "10.0.0.0/8"],
                environment: environment)
            #expect(minted.status == 0, "\(minted.output)")
            let key = try #require(minted.stdout.split(separator: "\n").last.map(String.init))
            #expect(key.hasPrefix("lk_live_"))
            let list = try await LatchkeyProcess.run(["keys", "list", "--json"], environment: environment)
            #expect(!list.stdout.contains(key))
            let keys = try JSONDecoder().decode(JSONValue.self, from: Data(list.stdout.utf8))
            let id = try #require(keys[0]["id"].stringValue)
            #expect(keys[0]["ip_allowlist"] == .array([.string("10.0.0.0/8")]))
            #expect(keys[0]["created_by"] == .string("cli"))
            let table = try await LatchkeyProcess.run(["keys", "list"], environment: environment)
            #expect(table.stdout.contains(String(key.prefix(12))))
            let revoke = try await LatchkeyProcess.run(["keys", "revoke", id], environment: environment)
            #expect(revoke.stdout.contains("is revoked"), "\(revoke.output)")
            let bad = try await LatchkeyProcess.run(
                ["keys", "mint", "--name", "x", "--role", "root", "--vault", "*"], environment: environment)
            #expect(bad.status != 0)
            #expect(bad.stderr.contains("--role must be one of"))
        }
    }
}
