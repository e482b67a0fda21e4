import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyOAuth
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Testing

@Suite("Injection: GET /v1/inject and POST /v1/sign")
struct InjectionTests {
    static let base = "/v1/vaults/default/credentials"

    func create(
        _ client: any TestClientProtocol, _ harness: Harness, _ name: String, _ type: String, _ value: [String: Any]
    ) async throws {
        let response = try await client.call(
            .post, Self.base, key: harness.adminKey, body: json(["name": name, "type": type, "value": value]))
        #expect(response.status == 201, "\(name): \(response.body)")
    }

    func proxyKey(
        _ client: any TestClientProtocol, _ harness: Harness, credentials: [String]? = nil
    ) async throws -> String {
        var body: [String: Any] = ["name": "sidecar", "role": "proxy", "vaults": ["default"]]
        if let credentials { body["credentials"] = credentials }
        return try await mintKey(client, with: harness.adminKey, body).key
    }

    func inject(_ client: any TestClientProtocol, _ key: String, _ name: String) async throws -> APIResponse {
        try await client.call(.get, "/v1/inject/default/\(name)", key: key)
    }

    @Test func everyTypeInjectsItsHeadersAsJSONAndAsResponseHeaders() async throws {
        try await Harness.withApp { harness, client in
            try await self.create(client, harness, "gh", "bearer", ["token": "ghp_secret1"])
            try await self.create(client, harness, "stripe", "api_key", ["key": "sk_live_2", "header": "X-Api-Key"])
            try await self.create(client, harness, "maps", "api_key", ["key": "maps-key-3", "query_param": "key"])
            try await self.create(client, harness, "legacy", "basic", ["username": "svc", "password": "pa55:word"])
            try await self.create(client, harness, "session", "cookie", ["cookie": "sid=abc4"])
            try await self.create(
                client, harness, "oauth_client_x", "oauth_client",
                ["client_id": "i", "client_secret": "s", "token_url": "https://idp.example/token"])
            try await self.create(
                client, harness, "pasted", "oauth", ["client": "oauth_client_x", "access_token": "at_pasted_5"])
            try await self.create(
                client, harness, "inner", "header_set", ["headers": ["X-Inner": "v={{credential:gh}}"]])
            try await self.create(
                client, harness, "combo", "header_set",
                [
                    "headers": [
                        "X-Token": "token {{credential:gh}}", "X-Pass": "{{credential:legacy.password}}",
                        "X-Nested": "[{{credential:inner.X-Inner}}]", "X-Plain": "static",
                    ]
                ])
            let key = try await self.proxyKey(client, harness)
            let expectations: [(String, [String: String])] = [
                ("gh", ["Authorization": "Bearer ghp_secret1"]),
                ("stripe", ["X-Api-Key": "sk_live_2"]),
                ("legacy", ["Authorization": "Basic " + Data("svc:pa55:word".utf8).base64EncodedString()]),
                ("session", ["Cookie": "sid=abc4"]),
                ("pasted", ["Authorization": "Bearer at_pasted_5"]),
                (
                    "combo",
                    [
                        "X-Token": "token ghp_secret1", "X-Pass": "pa55:word", "X-Nested": "[v=ghp_secret1]",
                        "X-Plain": "static",
                    ]
                ),
            ]
            for (name, headers) in expectations {
                let response = try await self.inject(client, key, name)
                #expect(response.status == 200, "\(name): \(response.body)")
                #expect(response.headers[.cacheControl] == "no-store")
                for (header, value) in headers {
                    #expect(response.json["headers"][header] == .string(value), "\(name) \(header)")
                    #expect(response.headers[HTTPField.Name(header)!] == value, "\(name) response header \(header)")
                }
                if case .object(let all) = response.json["headers"] { #expect(all.count == headers.count, "\(name)") }
            }
            // HEAD answers the same headers without a body (nginx keeps such connections alive).
            let head = try await client.call(.head, "/v1/inject/default/gh", key: key)
            #expect(head.status == 200)
            #expect(head.headers[.authorization] == "Bearer ghp_secret1")
            #expect(head.body.isEmpty)
            let query = try await self.inject(client, key, "maps")
            #expect(query.json["query"]["key"] == .string("maps-key-3"))
            #expect(query.json["headers"] == .object([:]))
            // Not injectable: a client secret, and SigV4 (signed per request instead).
            let clientSecret = try await self.inject(client, key, "oauth_client_x")
            #expect(clientSecret.status == 422)
            #expect(!clientSecret.body.contains("\"s\""))
        }
    }

    @Test func eachFailureHasItsOwnAnswerAndLatchkeyErrorHeader() async throws {
        try await Harness.withApp { harness, client in
            try await self.create(client, harness, "mine", "bearer", ["token": "t-mine"])
            try await self.create(client, harness, "theirs", "bearer", ["token": "t-theirs"])
            try await self.create(
                client, harness, "broken", "header_set", ["headers": ["X-A": "{{credential:ghost.field}}"]])
            try await self.create(
                client, harness, "idp", "oauth_client",
                ["client_id": "i", "client_secret": "s", "token_url": "https://idp.example/token"])
            try await self.create(client, harness, "reauth", "oauth", ["client": "idp", "access_token": "at"])
            // Forcing the client's deletion leaves its token in needs_reauth.
            #expect(
                try await client.call(.delete, "\(Self.base)/idp?force=true", key: harness.adminKey).status == 204)
            let scoped = try await self.proxyKey(
                client, harness, credentials: ["mine", "broken", "reauth", "nothing_here"])
            let cases: [(String, Int, String)] = [
                ("nothing_here", 404, "CREDENTIAL_NOT_FOUND"),
                ("theirs", 403, "FORBIDDEN"),
                ("reauth", 409, "NEEDS_REAUTH"),
                ("broken", 422, "UNRESOLVED_PLACEHOLDER"),
            ]
            for (name, status, code) in cases {
                let response = try await self.inject(client, scoped, name)
                #expect(response.status == status, "\(name): \(response.body)")
                #expect(response.errorCode == code, "\(name)")
                #expect(response.headers[HTTPField.Name("Latchkey-Error")!] == code, "\(name)")
            }
            let broken = try await self.inject(client, scoped, "broken")
            #expect(broken.json["error"]["message"].stringValue?.contains("{{credential:ghost.field}}") == true)
            // Only proxy keys inject; an admin key is refused.
            let admin = try await self.inject(client, harness.adminKey, "mine")
            #expect(admin.status == 403)
            // Unauthenticated.
            #expect(
                try await self.inject(client, "lk_live_nope", "mine").headers[HTTPField.Name("Latchkey-Error")!]
                    == "INVALID_KEY")
        }
    }

    @Test func anExpiredTokenWhoseProviderIsDownIs503() async throws {
        try await RefresherTests().withToken(expiresIn: 3600) { harness, client, simulator in
            let key = try await self.proxyKey(client, harness)
            #expect(try await self.inject(client, key, "tok").status == 200)
            simulator.update(clientID: "app") { $0.failNext = 1_000 }
            harness.clock.advance(by: 3_301)  // inside the window: injection refreshes first, and fails
            let inWindow = try await self.inject(client, key, "tok")
            #expect(inWindow.status == 200, "still valid: the current token is served; \(inWindow.body)")
            harness.clock.advance(by: 300)  // now expired, provider still down
            let expired = try await self.inject(client, key, "tok")
            #expect(expired.status == 503, "\(expired.body)")
            #expect(expired.errorCode == "PROVIDER_UNAVAILABLE")
            #expect(expired.headers[HTTPField.Name("Latchkey-Error")!] == "PROVIDER_UNAVAILABLE")
        }
    }

    @Test func aTokenInsideTheWindowIsRefreshedOnceBeforeTheAnswer() async throws {
        try await RefresherTests().withToken(expiresIn: 3600) { harness, client, simulator in
            let key = try await self.proxyKey(client, harness)
            let before = try await self.inject(client, key, "tok")
            let first = try #require(before.json["headers"]["Authorization"].stringValue)
            // RFC 3339 with its zone, like every other time the API writes.
            let expiresAt = try #require(before.json["expires_at"].stringValue)
            #expect(expiresAt.hasSuffix("Z") && (try? Date(expiresAt, strategy: .iso8601)) != nil, "\(expiresAt)")
            harness.clock.advance(by: 3_400)  // 200 s left: inside the 300 s window
            // Twenty sidecar requests at once: one refresh, and all get the new token.
            let answers = try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await self.inject(client, key, "tok").json["headers"]["Authorization"].stringValue
                    }
                }
                return try await group.reduce(into: [String?]()) { $0.append($1) }
            }
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 2)  // paste + one refresh
            #expect(Set(answers).count == 1, "\(Set(answers))")
            #expect(answers.first! != first)
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
            #expect(answers.first! == "Bearer " + (stored["access_token"]?.stringValue ?? ""))
        }
    }

    /// The SPEC's "refreshed when a use fails": a sidecar whose upstream
    /// refused the token reports it, and gets a fresh one; a report about a
    /// token already replaced refreshes nothing.
    @Test func aReportedRefusalRefreshesTheTokenOnceAndAnswersTheNewOne() async throws {
        try await RefresherTests().withToken(expiresIn: 3600) { harness, client, simulator in
            let key = try await self.proxyKey(client, harness)
            let first = try #require(
                try await self.inject(client, key, "tok").json["headers"]["Authorization"].stringValue)
            let refused = String(first.dropFirst("Bearer ".count))
            let digest = OneTimeSecret.hash(refused).map { String(format: "%02x", $0) }.joined()
            let grants = simulator.grants(clientID: "app", type: "refresh_token")
            func report(_ body: [String: Any], _ name: String = "tok") async throws -> APIResponse {
                try await client.call(.post, "/v1/inject/default/\(name)/rejected", key: key, body: json(body))
            }
            // Far from expiry, but refused upstream: refreshed now, and the new token answered.
            let answer = try await report(["token_sha256": digest])
            #expect(answer.status == 200, "\(answer.body)")
            let second = try #require(answer.json["headers"]["Authorization"].stringValue)
            #expect(second != first)
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == grants + 1)
            #expect(try await self.inject(client, key, "tok").json["headers"]["Authorization"] == .string(second))
            // The same report again (another sidecar, or late): nothing to do.
            let late = try await report(["token_sha256": digest.uppercased()])
            #expect(late.json["headers"]["Authorization"] == .string(second))
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == grants + 1)
            // Bad reports: a clear error each, nothing refreshed.
            for (body, field) in [
                ([:], "token_sha256"), (["token_sha256": "abc"], "token_sha256"),
                (["token_sha256": digest, "extra": 1], "extra"),
            ] as [([String: Any], String)] {
                let bad = try await report(body)
                #expect(bad.status == 422, "\(bad.body)")
                #expect(bad.json["error"]["field"] == .string(field), "\(bad.body)")
            }
            try await self.create(client, harness, "gh", "bearer", ["token": "static"])
            let staticToken = try await report(["token_sha256": digest], "gh")
            #expect(staticToken.status == 422, "\(staticToken.body)")
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == grants + 1)
            // The refresh is audited with the sidecar's key as the actor.
            let audit = try await client.call(
                .get, "/v1/audit?credential=tok&action=credential.refresh", key: harness.adminKey)
            #expect(audit.body.contains("key:"), "\(audit.body)")
        }
    }

    @Test func aWarmCredentialCostsNoDatabaseReadAndUseIsCounted() async throws {
        try await Harness.withApp(.live) { harness, client in
            try await self.create(client, harness, "gh", "bearer", ["token": "ghp_counted"])
            let key = try await self.proxyKey(client, harness)
            let cache = try #require(harness.flusher.credentials)
            let missesBefore = cache.misses
            for _ in 0..<50 { #expect(try await self.inject(client, key, "gh").status == 200) }
            #expect(cache.misses - missesBefore == 1, "one read, then memory")
            await harness.flushUsage()
            let metadata = try await client.call(.get, "\(Self.base)/gh", key: harness.adminKey)
            #expect(metadata.json["usage"]["total_calls"] == .number(50))
        }
    }

    /// The cache has no expiry: only the notification can move a warm entry. So the old
    /// token giving way on the other instance proves the NOTIFY path; how fast it does is
    /// a figure for `Benchmarks/injection` (SPEC: within one second), not a timed test.
    @Test func aRotationAndADeleteReachAnotherInstancesWarmCache() async throws {
        try await TestDatabase.withFresh { database in
            let harness = try await Harness.make(database: database)
            let other = try await Harness.make(database: database, masterKey: harness.masterKey)
            try await harness.run(.live) { first in
                try await other.run(.live) { second in
                    try await self.create(first, harness, "gh", "bearer", ["token": "old-token"])
                    let key = try await self.proxyKey(first, harness)
                    // Warm the second instance's cache.
                    for _ in 0..<3 { #expect(try await self.inject(second, key, "gh").status == 200) }
                    let cache = try #require(other.flusher.credentials)
                    let missesWarm = cache.misses
                    let rotated = try await first.call(
                        .post, "\(Self.base)/gh/rotate", key: harness.adminKey,
                        body: json(["value": ["token": "new-token"]]))
                    #expect(rotated.status == 200)
                    let rotatedAt = ContinuousClock.now
                    let reached = try await Eventually.check(within: .seconds(15)) {
                        try await self.inject(second, key, "gh").json["headers"]["Authorization"]
                            == .string("Bearer new-token")
                    }
                    print("rotation reached the other instance's cache after \(ContinuousClock.now - rotatedAt)")
                    #expect(reached, "the second instance kept serving the rotated-away token")
                    #expect(cache.misses - missesWarm == 1, "one read after the notification, then memory")
                    // A delete too.
                    #expect(
                        try await first.call(.delete, "\(Self.base)/gh", key: harness.adminKey).status == 204)
                    let gone = try await Eventually.check(within: .seconds(15)) {
                        try await self.inject(second, key, "gh").status == 404
                    }
                    #expect(gone, "the second instance kept serving a deleted credential")
                }
            }
        }
    }

    @Test func aWarmHeaderSetFollowsTheCredentialsItsPlaceholdersName() async throws {
        try await Harness.withApp(.live) { harness, client in
            try await self.create(client, harness, "gh", "bearer", ["token": "first"])
            try await self.create(client, harness, "set", "header_set", ["headers": ["X-Token": "{{credential:gh}}"]])
            let key = try await self.proxyKey(client, harness)
            // Warm: served from memory.
            for _ in 0..<3 {
                #expect(try await self.inject(client, key, "set").json["headers"]["X-Token"] == .string("first"))
            }
            _ = try await client.call(
                .post, "\(Self.base)/gh/rotate", key: harness.adminKey, body: json(["value": ["token": "second"]]))
            // The notification for gh drops the rendered header_set too.
            let changed = try await Eventually.check(within: .seconds(15)) {
                try await self.inject(client, key, "set").json["headers"]["X-Token"] == .string("second")
            }
            #expect(changed)
        }
    }

    @Test func referencedCredentialsListTheirHeaderSetsAndRefuseDeletion() async throws {
        try await Harness.withApp { harness, client in
            try await self.create(client, harness, "gh", "bearer", ["token": "t"])
            try await self.create(
                client, harness, "set", "header_set", ["headers": ["X-A": "{{credential:gh}}", "X-B": "b"]])
            let metadata = try await client.call(.get, "\(Self.base)/gh", key: harness.adminKey)
            #expect(metadata.json["referenced_by"] == .array([.string("set")]))
            let refused = try await client.call(.delete, "\(Self.base)/gh", key: harness.adminKey)
            #expect(refused.status == 409)
            #expect(refused.errorCode == "CREDENTIAL_IN_USE")
            #expect(refused.json["error"]["message"].stringValue?.contains("set") == true)
            #expect(try await client.call(.delete, "\(Self.base)/gh?force=true", key: harness.adminKey).status == 204)
            // A malformed placeholder is refused when stored, not at use.
            let bad = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json(["name": "bad", "type": "header_set", "value": ["headers": ["X": "{{credential:gh"]]]))
            #expect(bad.status == 422)
            #expect(bad.errorCode == "VALIDATION_FAILED")
        }
    }

    @Test func signProducesAWSSigV4HeadersForTheRequestDescribed() async throws {
        try await Harness.withApp { harness, client in
            // AWS's test-suite credentials and its get-vanilla request.
            try await self.create(
                client, harness, "aws", "aws_sigv4",
                [
                    "access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    "region": "us-east-1", "service": "service",
                ])
            let key = try await self.proxyKey(client, harness)
            let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            let signed = try await client.call(
                .post, "/v1/sign/default/aws", key: key,
                body: json([
                    "method": "GET", "url": "https://example.amazonaws.com/",
                    "headers": ["X-Amz-Date": "20150830T123600Z"], "payload_sha256": emptyHash,
                ]))
            #expect(signed.status == 200, "\(signed.body)")
            #expect(
                signed.json["headers"]["Authorization"]
                    == .string(
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                            + "SignedHeaders=host;x-amz-date, "
                            + "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"))
            #expect(signed.headers[HTTPField.Name("X-Amz-Date")!] == "20150830T123600Z")
            #expect(!signed.body.contains("wJalrXUtnFEMI"))
            // Bad input: a clear error each.
            for (body, field) in [
                (["method": "GET", "url": "not a url", "payload_sha256": emptyHash], "url"),
                (
                    ["method": "GET", "url": "https://example.amazonaws.com/", "payload_sha256": "xyz"],
                    "payload_sha256"
                ),
                (["url": "https://example.amazonaws.com/", "payload_sha256": emptyHash], "method"),
                (
                    [
                        "method": "GET", "url": "https://example.amazonaws.com/", "payload_sha256": emptyHash,
                        "headers": "X-Amz-Date: 20150830T123600Z",
                    ], "headers"
                ),
            ] as [([String: Any], String)] {
                let response = try await client.call(.post, "/v1/sign/default/aws", key: key, body: json(body))
                #expect(response.status == 422, "\(field): \(response.body)")
                #expect(response.json["error"]["field"] == .string(field), "\(response.body)")
            }
            // Injecting a SigV4 credential points at signing instead.
            let injected = try await self.inject(client, key, "aws")
            #expect(injected.status == 422)
            #expect(injected.json["error"]["message"].stringValue?.contains("/v1/sign/default/aws") == true)
        }
    }

    @Test func injectedValuesAppearOnlyInTheirHeaderNeverInLogs() async throws {
        try await Harness.withApp(.live) { harness, client in
            let secret = "ghp_leakcheck_" + UUID().uuidString
            try await self.create(client, harness, "gh", "bearer", ["token": secret])
            let key = try await self.proxyKey(client, harness)
            let response = try await self.inject(client, key, "gh")
            #expect(response.status == 200)
            let appearances = response.headers.filter { $0.value.contains(secret) }.map(\.name.canonicalName)
            #expect(appearances == ["authorization"])
            let missing = try await self.inject(client, key, "nope")
            #expect(!missing.body.contains(secret))
            await harness.flushUsage()
            #expect(!harness.logs.text.contains(secret))
            #expect(!harness.logs.text.contains(key))
            #expect(!(try await harness.dataSnapshotText()).contains(secret))
        }
    }
}
