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

@Suite("The refresher")
struct RefresherTests {
    static let base = "/v1/vaults/default/credentials"

    /// An app and simulator with an oauth_client `sim`, plus a pasted token
    /// `tok` expiring in `expiresIn` seconds.
    func withToken(
        _ setup: TestingSetup = .router,
        expiresIn: Int = 3600,
        configure: @escaping @Sendable (inout LatchkeyConfiguration) -> Void = { _ in },
        behaviour change: @escaping @Sendable (inout ProviderSimulator.Behaviour) -> Void = { _ in },
        _ body: @escaping @Sendable (Harness, any TestClientProtocol, ProviderSimulator) async throws -> Void
    ) async throws {
        var behaviour = ProviderSimulator.Behaviour()
        behaviour.expiresIn = .number(expiresIn)
        change(&behaviour)
        let setUp: @Sendable (inout LatchkeyConfiguration) -> Void = {
            $0.providerTimeout = .seconds(10)
            configure(&$0)
        }
        try await Harness.withSimulatedClient(setup, behaviour: behaviour, configure: setUp) {
            harness, client, simulator in
            let pasted = try await client.pasteSimulatedToken(harness, simulator)
            #expect(pasted.status == 201, "\(pasted.body)")
            try await body(harness, client, simulator)
        }
    }

    func metadata(_ client: any TestClientProtocol, _ harness: Harness) async throws -> JSONValue {
        try await client.call(.get, "\(Self.base)/tok", key: harness.adminKey).json
    }

    @Test func aTokenIsRefreshedOnceItEntersTheWindowAndNotBefore() async throws {
        try await self.withToken(expiresIn: 3600) { harness, client, simulator in
            #expect(await harness.refreshDue() == 0)  // due at 3300 s, not now
            harness.clock.advance(by: 3299)
            #expect(await harness.refreshDue() == 0)
            harness.clock.advance(by: 1)
            #expect(await harness.refreshDue() == 1)
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 2)  // paste + refresh
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "tok") }
            #expect(simulator.isLive(refreshToken: try #require(stored["refresh_token"]?.stringValue)))
            let metadata = try await self.metadata(client, harness)
            #expect(metadata["status"] == .string("active"))
            #expect(metadata["last_refreshed_at"] == .string(ISO8601DateFormatter().string(from: harness.clock.now)))
            #expect(
                metadata["next_refresh_at"]
                    == .string(ISO8601DateFormatter().string(from: harness.clock.now.addingTimeInterval(3300))))
            #expect(await harness.refreshDue() == 0)
        }
    }

    @Test func invalidGrantMovesTheCredentialToNeedsReauth() async throws {
        try await self.withToken(expiresIn: 60) { harness, client, simulator in
            simulator.update(clientID: "app") { $0.rejectRefresh = true }
            harness.clock.advance(by: 30)  // a 60 s token is due at half-life
            #expect(await harness.refreshDue() == 1)
            let metadata = try await self.metadata(client, harness)
            #expect(metadata["status"] == .string("needs_reauth"))
            #expect(metadata["next_refresh_at"] == .null)
            #expect(metadata["last_error"].stringValue?.contains("invalid_grant") == true)
            #expect(await harness.refreshDue() == 0)  // never retried by itself
            let forced = try await client.call(.post, "\(Self.base)/tok/refresh", key: harness.adminKey)
            #expect(forced.status == 409)
            #expect(forced.errorCode == "NEEDS_REAUTH")
        }
    }

    @Test func transientFailuresBackOffExponentiallyAndHonourRetryAfter() async throws {
        try await self.withToken(expiresIn: 60) { harness, client, simulator in
            simulator.update(clientID: "app") { $0.failNext = 2 }
            harness.clock.advance(by: 30)  // a 60 s token is due at half-life
            #expect(await harness.refreshDue() == 1)
            var metadata = try await self.metadata(client, harness)
            #expect(metadata["status"] == .string("backoff"))
            #expect(metadata["refresh_failures"] == .number(1))
            let first = try #require(ISO8601DateFormatter().date(from: metadata["next_attempt_at"].stringValue ?? ""))
            let firstWait = first.timeIntervalSince(harness.clock.now)
            // 30 s with equal jitter; metadata renders whole seconds, hence the slack.
            #expect((14...30).contains(firstWait), "first back-off \(firstWait) s")
            harness.clock.advance(by: firstWait + 1)
            #expect(await harness.refreshDue() == 1)
            metadata = try await self.metadata(client, harness)
            let second = try #require(ISO8601DateFormatter().date(from: metadata["next_attempt_at"].stringValue ?? ""))
            let secondWait = second.timeIntervalSince(harness.clock.now)
            #expect((29...60).contains(secondWait), "second back-off \(secondWait) s")
            #expect(metadata["refresh_failures"] == .number(2))
            // A 429's Retry-After wins over a shorter back-off.
            harness.clock.advance(by: secondWait + 1)
            simulator.update(clientID: "app") {
                $0.rateLimitNext = 1
                $0.retryAfterSeconds = 600
            }
            #expect(await harness.refreshDue() == 1)
            metadata = try await self.metadata(client, harness)
            let third = try #require(ISO8601DateFormatter().date(from: metadata["next_attempt_at"].stringValue ?? ""))
            #expect((599...600).contains(third.timeIntervalSince(harness.clock.now)))
            // Recovery clears the failure count.
            harness.clock.advance(by: 601)
            #expect(await harness.refreshDue() == 1)
            metadata = try await self.metadata(client, harness)
            #expect(metadata["status"] == .string("active"))
            #expect(metadata["refresh_failures"] == .number(0))
            #expect(metadata["last_error"] == .null)
        }
    }

    @Test func forcedRefreshAndClientCredentialsMinting() async throws {
        try await self.withToken { harness, client, simulator in
            let forced = try await client.call(.post, "\(Self.base)/tok/refresh", key: harness.adminKey)
            #expect(forced.status == 200, "\(forced.body)")
            #expect(forced.json["last_refreshed_at"].stringValue != nil)
            #expect(simulator.grants(clientID: "app", type: "refresh_token") == 2)
            _ = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json(["name": "plain", "type": "bearer", "value": ["token": "t"]]))
            #expect(try await client.call(.post, "\(Self.base)/plain/refresh", key: harness.adminKey).status == 422)
            #expect(try await client.call(.post, "\(Self.base)/ghost/refresh", key: harness.adminKey).status == 404)
            // A client_credentials credential is minted as soon as the refresher runs.
            let cc = try await client.call(
                .post, Self.base, key: harness.adminKey,
                body: json([
                    "name": "machine", "type": "client_credentials", "value": ["client": "sim", "scopes": ["read"]],
                ]))
            #expect(cc.status == 201)
            #expect(await harness.refreshDue() == 1)
            #expect(simulator.grants(clientID: "app", type: "client_credentials") == 1)
            let stored = try await harness.withStore { try await $0.openValue(vault: "default", name: "machine") }
            #expect(stored["access_token"]?.stringValue?.hasPrefix("at_app_") == true)
            let machine = try await client.call(.get, "\(Self.base)/machine", key: harness.adminKey)
            #expect(machine.json["expires_at"].stringValue != nil)
            #expect(machine.json["next_refresh_at"].stringValue != nil)
        }
    }

    @Test func threeRefreshersOnOneDatabaseRefreshEachTokenExactlyOnce() async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "app-secret")
            try await TestDatabase.withFresh { database in
                let key = MasterKey.generate()
                let count = 1000
                let seeded: [String] = try await database.withClient { client in
                    let store = VaultStore(
                        client: client, sealer: Sealer(keyRing: KeyRing(current: key)), logger: Logger(label: "t"))
                    return try await store.seedDueTokens(count: count, simulator: simulator)
                }
                let configuration = try database.configuration
                let http = HTTPClientForTests.shared
                let attempted = try await withThrowingTaskGroup(of: Int.self) { group in
                    for replica in 0..<3 {
                        group.addTask {
                            try await PostgresClient.withRunning(
                                configuration, logger: Logger(label: "replica\(replica)")
                            ) {
                                client in
                                let store = VaultStore(
                                    client: client, sealer: Sealer(keyRing: KeyRing(current: key)),
                                    logger: Logger(label: "r"))
                                var settings = RefresherSettings(owner: "replica\(replica)")
                                settings.concurrency = 8
                                settings.batchSize = 32
                                let refresher = TokenRefresher(
                                    store: store, tokens: TokenEndpointClient(http: http), policy: RefreshPolicy(),
                                    settings: settings, now: { Date() }, logger: Logger(label: "r"))
                                return await refresher.drainDue()
                            }
                        }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(attempted.reduce(0, +) == count)
                #expect(attempted.filter { $0 > 0 }.count >= 2, "the work was shared: \(attempted)")
                // Exactly one refresh per token, and no refresh token lost to a race.
                #expect(simulator.grants(clientID: "app", type: "refresh_token") == count)
                #expect(seeded.allSatisfy { !simulator.isLive(refreshToken: $0) })
                let live = try await database.withClient { client in
                    let store = VaultStore(
                        client: client, sealer: Sealer(keyRing: KeyRing(current: key)), logger: Logger(label: "t"))
                    var live = 0
                    for index in 0..<count {
                        let value = try await store.openValue(vault: "default", name: "tok\(index)")
                        if simulator.isLive(refreshToken: value["refresh_token"]?.stringValue ?? "") { live += 1 }
                    }
                    return live
                }
                #expect(live == count)
                print(
                    "three refreshers: \(attempted) attempts, \(simulator.grants(clientID: "app", type: "refresh_token")) refresh grants, \(live)/\(count) stored refresh tokens live"
                )
            }
        }
    }
}

enum HTTPClientForTests {
    static let shared = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
}

@Suite("Refresh policy")
struct RefreshPolicyTests {
    let now = Date(timeIntervalSince1970: 1_790_000_000)

    @Test func aWindowBeforeExpiryButNeverMoreThanHalfTheLifetime() {
        let policy = RefreshPolicy(window: .seconds(300))
        func next(_ lifetime: TimeInterval) -> TimeInterval? {
            policy.nextRefresh(
                type: .oauth, expiresAt: self.now.addingTimeInterval(lifetime), hasRefreshToken: true,
                hasAccessToken: true, now: self.now
            )?.timeIntervalSince(self.now)
        }
        #expect(next(3600) == 3300)
        // Shorter-lived than the window: refresh at half-life, not immediately (no refresh storm).
        #expect(next(60) == 30)
        #expect(next(0) == 0)
        #expect(
            policy.nextRefresh(type: .oauth, expiresAt: nil, hasRefreshToken: true, hasAccessToken: true, now: self.now)
                == nil)
        #expect(
            policy.nextRefresh(
                type: .oauth, expiresAt: self.now, hasRefreshToken: false, hasAccessToken: true, now: self.now) == nil)
        #expect(
            policy.nextRefresh(
                type: .clientCredentials, expiresAt: nil, hasRefreshToken: false, hasAccessToken: false, now: self.now)
                == self.now)
        #expect(
            policy.nextRefresh(
                type: .bearer, expiresAt: self.now, hasRefreshToken: true, hasAccessToken: true, now: self.now) == nil)
    }

    @Test func backoffDoublesWithEqualJitterAndHonoursRetryAfter() {
        let policy = RefreshPolicy()
        #expect(policy.backoff(failures: 1, retryAfter: nil, jitter: 0) == 15)
        #expect(policy.backoff(failures: 1, retryAfter: nil, jitter: 1) == 30)
        #expect(policy.backoff(failures: 3, retryAfter: nil, jitter: 1) == 120)
        #expect(policy.backoff(failures: 40, retryAfter: nil, jitter: 1) == 3600)
        #expect(policy.backoff(failures: 1, retryAfter: 600, jitter: 0.5) == 600)
    }
}

@Suite("The refresher as its own process, and its scan")
struct RefresherProcessTests {
    @Test func latchkeyRefresherRefreshesDueTokensAndStopsCleanlyOnSIGTERM() async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "app-secret")
            try await TestDatabase.withFresh { database in
                let key = MasterKey.generate()
                let seeded = try await database.withClient { client in
                    try await VaultStore(
                        client: client, sealer: Sealer(keyRing: KeyRing(current: key)), logger: Logger(label: "t")
                    ).seedDueTokens(count: 5, simulator: simulator)
                }
                let process = try LatchkeyProcess.Running(
                    ["refresher"],
                    environment: [
                        "LATCHKEY_DATABASE_URL": database.url, "LATCHKEY_MASTER_KEY": key.hex,
                        "LATCHKEY_LOG_LEVEL": "info",
                    ])
                // Another process is doing the work: watch the database until it is done.
                let refreshed = try await Eventually.check(within: .seconds(30)) {
                    try await database.withClient { client in
                        let rows = try await client.query(
                            "SELECT count(*) FROM credentials WHERE type = 'oauth' AND last_refreshed_at IS NOT NULL")
                        return try await rows.decode(Int.self).first(where: { _ in true }) == 5
                    }
                }
                let result = try await process.terminate()
                #expect(refreshed, "\(result.output)")
                #expect(result.status == 0, "\(result.output)")
                #expect(result.stderr.contains("refresher started"))
                #expect(simulator.grants(clientID: "app", type: "refresh_token") == 5)
                #expect(seeded.allSatisfy { !simulator.isLive(refreshToken: $0) })
            }
        }
    }

    @Test func theRefresherRefusesASchemaThatIsNotCurrent() async throws {
        try await TestDatabase.withFresh(migrated: false) { database in
            let result = try await LatchkeyProcess.run(
                ["refresher"],
                environment: [
                    "LATCHKEY_DATABASE_URL": database.url, "LATCHKEY_MASTER_KEY": MasterKey.generate().hex,
                ])
            #expect(result.status != 0)
            #expect(result.stderr.contains("latchkey migrate"), "\(result.output)")
        }
    }

    @Test func theClaimReadsOnlyDueRowsThroughTheIndex() async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "app-secret")
            try await TestDatabase.withFresh { database in
                try await database.withClient { client in
                    try await VaultStore(
                        client: client, sealer: Sealer(keyRing: KeyRing(current: .generate())),
                        logger: Logger(label: "t")
                    ).seedDueTokens(count: 3, simulator: simulator)
                    try await Seeding.notDueTokens(client, count: 20_000, logger: Logger(label: "t"))
                    let rows = try await client.query(
                        """
                        EXPLAIN (ANALYZE, FORMAT TEXT)
                        SELECT id FROM credentials WHERE due_at <= now() ORDER BY due_at LIMIT 64
                        FOR UPDATE SKIP LOCKED
                        """)
                    let plan = try await rows.decode(String.self).reduce(into: "") { $0 += $1 + "\n" }
                    #expect(plan.contains("Index Scan using credentials_due"), "\(plan)")
                    #expect(!plan.contains("Seq Scan"), "\(plan)")
                    // Only the three due rows were read.
                    #expect(plan.contains("rows=3 loops=1"), "\(plan)")
                }
            }
        }
    }
}

/// Waits for a condition another process brings about, checking every
/// 100 ms: there is nothing in this process to await. Returns whether it held
/// before the deadline.
enum Eventually {
    static func check(within limit: Duration, _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }
}
