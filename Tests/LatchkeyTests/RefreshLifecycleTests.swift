import AsyncHTTPClient
import Crypto
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

/// Claims and leases across replicas, client-secret rotation, provider
/// extras, per-host bounds, webhooks and metrics.
@Suite("Refresh claims, webhooks and metrics")
struct RefreshLifecycleTests {
    static let base = "/v1/vaults/default/credentials"
    let tokens = RefresherTests()

    func metadata(
        _ client: any TestClientProtocol, _ harness: Harness, _ name: String = "tok"
    ) async throws
        -> JSONValue
    {
        try await client.call(.get, "\(Self.base)/\(name)", key: harness.adminKey).json
    }

    @Test func aClaimShowsRefreshingAndALapsedClaimIsRetakenByAnotherReplica() async throws {
        try await self.tokens.withToken(expiresIn: 60) { harness, client, simulator in
            harness.clock.advance(by: 30)
            let claimedAt = harness.clock.now
            // A replica claims the due token, then dies before answering.
            let claimed = try await harness.withStore {
                try await $0.claimDue(now: claimedAt, owner: "dying-replica", lease: .seconds(120), limit: 10)
            }
            #expect(claimed.map(\.name) == ["tok"])
            #expect(try await self.metadata(client, harness)["status"] == .string("refreshing"))
            // While the claim holds, no other replica refreshes it, and a forced refresh is told so.
            #expect(await harness.refreshDue() == 0)
            let forced = try await client.call(.post, "\(Self.base)/tok/refresh", key: harness.adminKey)
            #expect(forced.status == 409)
            #expect(forced.errorCode == "REFRESH_IN_PROGRESS")
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 1)  // the paste only
            // The lease lapses: another replica takes the row and refreshes it.
            harness.clock.advance(by: 121)
            #expect(await harness.refreshDue() == 1)
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 2)
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
            #expect(try await self.metadata(client, harness)["status"] == .string("active"))
            // The dead replica's late answers (a timeout, or tokens from a call
            // that did reach the provider) are dropped: the row moved on.
            for late: RefreshOutcome in [
                .backoff(retryAt: harness.clock.now.addingTimeInterval(30), reason: "timed out"),
                .needsReauth(reason: "late"),
                .refreshed(
                    value: ["client": .string("sim"), "access_token": .string("stale")], expiresAt: nil,
                    providerFields: [:]),
            ] {
                let completion = try await harness.withStore {
                    try await $0.complete(claimed[0], outcome: late, now: harness.clock.now, policy: RefreshPolicy())
                }
                #expect(completion == .superseded)
            }
            let after = try await self.metadata(client, harness)
            #expect(after["status"] == .string("active"))
            #expect(after["refresh_failures"] == .number(0))
            #expect(try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") } == stored)
        }
    }

    @Test func aRotationDuringARefreshWinsOverTheRefreshOutcome() async throws {
        try await self.tokens.withToken(expiresIn: 60) { harness, client, simulator in
            harness.clock.advance(by: 30)
            let now = harness.clock.now
            let claimed = try #require(
                try await harness.withStore {
                    try await $0.claimDue(now: now, owner: "replica-a", lease: .seconds(120), limit: 1)
                }.first)
            let rotated = try await client.call(
                .post, "\(Self.base)/tok/rotate", key: harness.adminKey,
                body: json(["value": ["client": "sim", "access_token": "pasted-by-admin"]]))
            #expect(rotated.status == 200, "\(rotated.body)")
            let completion = try await harness.withStore {
                try await $0.complete(
                    claimed,
                    outcome: .refreshed(
                        value: ["client": .string("sim"), "access_token": .string("from-refresh")], expiresAt: nil,
                        providerFields: [:]), now: harness.clock.now, policy: RefreshPolicy())
            }
            #expect(completion == .superseded)
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
            #expect(stored["access_token"] == .string("pasted-by-admin"))
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 1)
        }
    }

    @Test func aClientSecretIsRotatedWithoutAFailedRefresh() async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "old-secret")
            try await Harness.withApp { harness, client in
                // The new secret is stored before the provider accepts it.
                let created = try await client.call(
                    .post, Self.base, key: harness.adminKey,
                    body: json([
                        "name": "sim", "type": "oauth_client",
                        "value": [
                            "client_id": "app", "client_secret": "old-secret", "client_secret_next": "new-secret",
                            "token_url": simulator.tokenURL,
                        ],
                    ]))
                #expect(created.status == 201, "\(created.body)")
                #expect(created.json["attributes"]["client_secret_next"] == .bool(true))
                #expect(!created.body.contains("new-secret") && !created.body.contains("old-secret"))
                // Newest first; refused with invalid_client, the current one once more: it works.
                let pasted = try await client.pasteSimulatedToken(harness, simulator)
                #expect(pasted.status == 201, "\(pasted.body)")
                #expect(simulator.invalidClientAnswers(clientID: "app") == 1)
                // The provider now accepts both, then only the new one: no failure either way.
                simulator.setSecrets(clientID: "app", ["new-secret", "old-secret"])
                #expect(try await client.call(.post, "\(Self.base)/tok/refresh", key: harness.adminKey).status == 200)
                simulator.setSecrets(clientID: "app", ["new-secret"])
                #expect(try await client.call(.post, "\(Self.base)/tok/refresh", key: harness.adminKey).status == 200)
                #expect(simulator.invalidClientAnswers(clientID: "app") == 1)
                #expect(simulator.grants(clientID: "app", type: "refresh_token") == 4)
            }
        }
    }

    @Test func extraResponseFieldsAreMetadataAndTheIDTokenIsSealed() async throws {
        try await self.tokens.withToken(
            behaviour: {
                $0.extraFields = [
                    "instance_url": "https://na1.example.my", "id_token": "eyJhbGciOi.identity.sig",
                    "team_id": "T123",
                ]
            }
        ) { harness, client, _ in
            var metadata = try await self.metadata(client, harness)
            #expect(metadata["attributes"]["provider_fields"]["instance_url"] == .string("https://na1.example.my"))
            #expect(metadata["attributes"]["provider_fields"]["team_id"] == .string("T123"))
            #expect(metadata["attributes"]["provider_fields"]["id_token"] == .null)
            // The ID token is kept sealed with the other tokens, and nowhere else.
            var stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
            #expect(stored["id_token"] == .string("eyJhbGciOi.identity.sig"))
            #expect(!(try await harness.dataSnapshotText()).contains("identity"))
            #expect(!(try await client.call(.get, "\(Self.base)/tok", key: harness.adminKey).body).contains("identity"))
            // Kept across refreshes.
            #expect(try await client.call(.post, "\(Self.base)/tok/refresh", key: harness.adminKey).status == 200)
            metadata = try await self.metadata(client, harness)
            #expect(metadata["attributes"]["provider_fields"]["instance_url"] == .string("https://na1.example.my"))
            stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
            #expect(stored["id_token"] == .string("eyJhbGciOi.identity.sig"))
        }
    }

    @Test(.timeLimit(.minutes(3))) func providerCallsAreBoundedPerReplicaAndPerHost() async throws {
        try await ProviderSimulator.withRunning { simulator in
            var held = ProviderSimulator.Behaviour()
            held.holdRequests = true
            simulator.register(clientID: "app", secret: "app-secret", behaviour: held)
            try await TestDatabase.withFresh { database in
                let key = MasterKey.generate()
                try await database.withClient { client in
                    let store = VaultStore(
                        client: client, sealer: Sealer(keyRing: KeyRing(current: key)), logger: Logger(label: "t"))
                    try await store.seedDueTokens(count: 12, simulator: simulator)
                    var settings = RefresherSettings(owner: "bounded")
                    settings.concurrency = 16
                    settings.perHostConcurrency = 3
                    // Held calls must not time out while the test releases them one by one,
                    // however slow the machine.
                    let refresher = TokenRefresher(
                        store: store,
                        tokens: TokenEndpointClient(http: HTTPClientForTests.shared, timeout: .seconds(90)),
                        policy: RefreshPolicy(), settings: settings, now: { Date() }, logger: Logger(label: "r"))
                    async let drained = refresher.drainDue()
                    // The provider answers nothing until told: let one call through whenever as
                    // many as may be open are open. Without the bound, all 12 would pile up.
                    for released in 0..<12 {
                        await simulator.waitUntilHeld(min(3, 12 - released))
                        simulator.releaseOne()
                    }
                    let attempted = await drained
                    // Whatever happened, let the simulator shut down.
                    simulator.releaseAll()
                    #expect(attempted == 12)
                }
                // 16 calls allowed per replica, but never more than 3 to this one token endpoint.
                #expect(simulator.maxConcurrentRequests == 3)
                #expect(simulator.grants(clientID: "app", type: "refresh_token") == 12)
            }
        }
    }

    @Test func webhooksAreSignedRetriedAndCarryNoToken() async throws {
        let secret = "webhook-secret-0123456789"
        try await WebhookReceiver.withRunning { receiver in
            try await self.tokens.withToken(
                expiresIn: 60,
                configure: {
                    $0.webhookURL = receiver.url
                    $0.webhookSecret = secret
                }
            ) { harness, client, simulator in
                let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
                let secrets = [stored["access_token"]?.stringValue, stored["refresh_token"]?.stringValue]
                    .compactMap { $0 }
                #expect(secrets.count == 2)
                // invalid_grant: needs_reauth, and an event for it.
                simulator.update(clientID: "app") { $0.rejectRefresh = true }
                harness.clock.advance(by: 30)
                #expect(await harness.refreshDue() == 1)
                // The receiver is down for the first attempt: retried after a back-off.
                receiver.failNext(1)
                #expect(await harness.deliverWebhooks() == 0)
                #expect(receiver.attempts == 1)
                #expect(await harness.deliverWebhooks() == 0)  // not yet due
                #expect(receiver.attempts == 1)
                harness.clock.advance(by: 11)  // first back-off: 5-10 s
                #expect(await harness.deliverWebhooks() == 1)
                let first = try #require(receiver.deliveries.first)
                #expect(Self.verify(first, secret: secret))
                let tampered = WebhookReceiver.Delivery(headers: first.headers, body: first.body + Array(" ".utf8))
                #expect(!Self.verify(tampered, secret: secret))
                #expect(first.headers["latchkey-event-type"] == "credential.needs_reauth")
                let event = try #require(first.json)
                #expect(event["type"] as? String == "credential.needs_reauth")
                let data = try #require(event["data"] as? [String: Any])
                #expect(data["credential"] as? String == "tok")
                #expect(data["vault"] as? String == "default")
                #expect((data["reason"] as? String)?.contains("invalid_grant") == true)

                // Reconnected by a rotation: recovered.
                simulator.update(clientID: "app") { $0.rejectRefresh = false }
                let rotated = try await client.call(
                    .post, "\(Self.base)/tok/rotate", key: harness.adminKey,
                    body: json([
                        "value": ["client": "sim", "refresh_token": simulator.seedRefreshToken(clientID: "app")]
                    ]))
                #expect(rotated.status == 200, "\(rotated.body)")
                #expect(
                    await harness.deliverWebhooks() == 1,
                    "\(receiver.deliveries.map { String(decoding: $0.body, as: UTF8.self) })")
                #expect(receiver.deliveries.last?.headers["latchkey-event-type"] == "credential.recovered")

                // A token that expires within the window and cannot be refreshed: warned about once.
                let short = try await client.call(
                    .post, Self.base, key: harness.adminKey,
                    body: json([
                        "name": "short", "type": "oauth",
                        "value": ["client": "sim", "access_token": "at-short-lived", "expires_in": 120],
                    ]))
                #expect(short.status == 201)
                await harness.flusher.refresher?.warnExpiring()
                await harness.flusher.refresher?.warnExpiring()
                #expect(await harness.deliverWebhooks() == 1)
                let expiring = try #require(receiver.deliveries.last)
                #expect(expiring.headers["latchkey-event-type"] == "credential.expiring")
                #expect((expiring.json?["data"] as? [String: Any])?["credential"] as? String == "short")
                #expect(receiver.deliveries.count == 3)

                // Never a token, in any delivery.
                let everything = receiver.deliveries.map { String(decoding: $0.body, as: UTF8.self) }.joined()
                for value in secrets + ["at-short-lived"] { #expect(!everything.contains(value)) }
            }
        }
    }

    @Test func webhooksNeedASecretAndAValidURL() throws {
        let base = ["LATCHKEY_DATABASE_URL": "postgres://u@127.0.0.1/db"]
        for (extra, message) in [
            (["LATCHKEY_WEBHOOK_URL": "https://hooks.example.com/x"], "LATCHKEY_WEBHOOK_SECRET"),
            (
                ["LATCHKEY_WEBHOOK_URL": "https://hooks.example.com/x", "LATCHKEY_WEBHOOK_SECRET": "short"],
                "LATCHKEY_WEBHOOK_SECRET"
            ),
            (["LATCHKEY_WEBHOOK_URL": "hooks.example.com"], "LATCHKEY_WEBHOOK_URL"),
            (["LATCHKEY_REFRESH_CONCURRENCY": "0"], "LATCHKEY_REFRESH_CONCURRENCY"),
        ] {
            let error = #expect(throws: ConfigurationError.self) {
                try LatchkeyConfiguration.fromEnvironment(base.merging(extra) { $1 })
            }
            #expect(error?.description.hasPrefix(message) == true, "\(String(describing: error))")
        }
    }

    @Test func metricsCountRefreshesAndShowTheQueue() async throws {
        try await self.tokens.withToken(expiresIn: 60) { harness, client, simulator in
            #expect(try await client.call(.post, "\(Self.base)/tok/refresh", key: harness.adminKey).status == 200)
            simulator.update(clientID: "app") { $0.failNext = 1 }
            #expect(try await client.call(.post, "\(Self.base)/tok/refresh", key: harness.adminKey).status == 502)
            await harness.sampleMetrics()
            let scrape = try await client.call(.get, "/metrics", key: nil)
            #expect(scrape.status == 200)
            #expect(scrape.headers[.contentType]?.hasPrefix("text/plain") == true)
            #expect(scrape.body.contains(#"latchkey_refresh_attempts_total{outcome="refreshed"} 1"#), "\(scrape.body)")
            #expect(scrape.body.contains(#"latchkey_refresh_attempts_total{outcome="backoff"} 1"#))
            #expect(scrape.body.contains("latchkey_refresh_duration_seconds_count 2"))
            #expect(scrape.body.contains(#"latchkey_oauth_credentials{status="backoff"} 1"#))
            #expect(scrape.body.contains(#"latchkey_oauth_credentials{status="active"} 0"#))
            #expect(scrape.body.contains("latchkey_refresh_due_backlog 0"))
            // Request durations by route template and status, never by path.
            let refreshRoute = #"route="/v1/vaults/{vault}/credentials/{name}/refresh",method="POST""#
            #expect(
                scrape.body.contains(#"latchkey_http_request_duration_seconds_count{\#(refreshRoute),status="200"} 1"#))
            #expect(
                scrape.body.contains(#"latchkey_http_request_duration_seconds_count{\#(refreshRoute),status="502"} 1"#))
            #expect(!scrape.body.contains("/credentials/tok"), "a credential's name reached a label")
            // Injection cache, database activity, the listener.
            let key = try await client.call(
                .post, "/v1/keys", key: harness.adminKey,
                body: json(["name": "p", "role": "proxy", "vaults": ["default"]]))
            let proxy = try #require(key.json["key"].stringValue)
            for _ in 0..<3 { #expect(try await client.call(.get, "/v1/inject/default/tok", key: proxy).status == 200) }
            let second = try await client.call(.get, "/metrics", key: nil).body
            #expect(second.contains(#"latchkey_injection_cache_lookups_total{result="miss"} 1"#), "\(second)")
            #expect(second.contains(#"latchkey_injection_cache_lookups_total{result="hit"} 2"#))
            #expect(second.contains("latchkey_database_operations_total "))
            #expect(second.contains("latchkey_database_operations_in_flight "))
            #expect(second.contains("latchkey_cache_listener_connected 1"))
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
            #expect(!scrape.body.contains(try #require(stored["refresh_token"]?.stringValue)))
        }
    }

    /// Checks `Latchkey-Signature` the way a receiver would.
    static func verify(_ delivery: WebhookReceiver.Delivery, secret: String) -> Bool {
        guard let header = delivery.headers["latchkey-signature"] else { return false }
        var parts: [String: String] = [:]
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            if pair.count == 2 { parts[String(pair[0])] = String(pair[1]) }
        }
        guard let timestamp = parts["t"], let given = parts["v1"] else { return false }
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array("\(timestamp).".utf8) + delivery.body, using: SymmetricKey(data: Array(secret.utf8)))
        return mac.map { String(format: "%02x", $0) }.joined() == given
    }
}

extension VaultStore {
    /// `count` due tokens for the simulator's `app` (see `Seeding.dueTokens`). Returns their refresh tokens.
    @discardableResult
    func seedDueTokens(count: Int, simulator: ProviderSimulator) async throws -> [String] {
        try await Seeding.dueTokens(
            self.client, sealer: self.sealer, simulator: simulator, count: count, logger: self.logger
        ).map(\.refreshToken)
    }
}

extension Harness {
    /// Every row of every table (audit and webhook events included), as
    /// text: for checks that a value is stored nowhere.
    func dataSnapshotText() async throws -> String {
        try await self.database.withClient { client in
            var text = ""
            for table in ["vaults", "credentials", "api_keys", "audit_events", "webhook_events", "connect_sessions"] {
                let rows = try await client.query(
                    PostgresQuery(unsafeSQL: "SELECT coalesce(string_agg(t::text, '|'), '') FROM \(table) t"))
                for try await part in rows.decode(String.self) { text += part }
            }
            return text
        }
    }
}
