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

/// A settable clock for tests that reason about time (stale_days, expiry).
final class TestClock: Sendable {
    private let current: Mutex<Date>
    init(_ start: Date = Date(timeIntervalSince1970: 1_790_000_000)) { self.current = Mutex(start) }
    var now: Date { self.current.withLock { $0 } }
    func advance(by seconds: TimeInterval) { self.current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// One Latchkey instance on its own fresh database, with captured logs and
/// an admin key for all vaults minted before the server starts.
struct Harness: Sendable {
    let database: TestDatabase
    let masterKey: MasterKey
    let adminSecret: String
    let logs: LogCapture
    let clock: TestClock
    /// An `lk_live_` admin key for all vaults.
    let adminKey: String
    /// How the admin key appears as an audit actor (`key:<prefix>`).
    var adminActor: String { "key:\(self.adminKey.prefix(12))" }
    let flusher = FlusherBox()

    var configuration: LatchkeyConfiguration {
        var configuration = LatchkeyConfiguration(databaseURL: self.database.url)
        configuration.masterKey = self.masterKey.hex
        configuration.adminSecret = self.adminSecret
        configuration.listenPort = 0
        // Tests flush explicitly (flushUsage()); a long interval keeps ticks out of the way.
        configuration.usageFlushInterval = .seconds(3600)
        // Likewise the refresher: tests drain it explicitly (refreshDue()).
        configuration.refreshScanInterval = .seconds(3600)
        // And webhook delivery and metric sampling (deliverWebhooks(), sampleMetrics()).
        configuration.webhookInterval = .seconds(3600)
        configuration.metricsSampleInterval = .seconds(3600)
        // The whole suite shares one server on a small machine: a store call
        // can queue for seconds. The deadline's own behaviour is tested with a
        // real process and a stopped database (OperationsTests).
        configuration.databaseTimeout = .seconds(120)
        return configuration
    }

    var sealer: Sealer { Sealer(keyRing: KeyRing(current: self.masterKey)) }

    /// Creates a migrated database, mints the admin key, and runs `body`
    /// against the application through Hummingbird's tester.
    static func withApp(
        _ setup: TestingSetup = .router,
        configure: @escaping @Sendable (inout LatchkeyConfiguration) -> Void = { _ in },
        _ body: @escaping @Sendable (Harness, any TestClientProtocol) async throws -> Void
    ) async throws {
        try await TestDatabase.withFresh { database in
            let harness = try await Harness.make(database: database)
            var configuration = harness.configuration
            configure(&configuration)
            try await harness.run(setup, configuration: configuration) { client in try await body(harness, client) }
        }
    }

    static func make(database: TestDatabase, masterKey: MasterKey = .generate()) async throws -> Harness {
        let (_, adminKey) = try await database.withClient { client in
            try await KeyStore(client: client, logger: Logger(label: "test-keys")).mint(
                MintRequest(name: "test-admin", role: .admin, scope: .everything), by: .cli, now: Date())
        }
        return Harness(
            database: database, masterKey: masterKey, adminSecret: "test-admin-secret-" + UUID().uuidString,
            logs: LogCapture(), clock: TestClock(), adminKey: adminKey)
    }

    /// Runs the application on this harness's database.
    func run(
        _ setup: TestingSetup = .router,
        configuration: LatchkeyConfiguration? = nil,
        _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let clock = self.clock
        let server = try buildServer(
            configuration ?? self.configuration, logger: self.logs.logger(), now: { clock.now })
        self.flusher.set(server)
        try await server.application.test(setup, body)
    }

    /// Runs the server's refresher over everything due, now.
    @discardableResult
    func refreshDue() async -> Int {
        await self.flusher.refresher?.drainDue() ?? 0
    }

    /// Sends the webhook events that are due, now.
    @discardableResult
    func deliverWebhooks() async -> Int {
        await self.flusher.background?.webhooks?.deliverDue() ?? 0
    }

    /// Samples the refresher's queue into the metrics gauges, now.
    func sampleMetrics() async {
        await self.flusher.background?.sampler.sample()
    }

    /// Writes the usage and failures the server has aggregated in memory, now.
    func flushUsage() async {
        await self.flusher.get()?.flush()
    }

    /// A store on this database for assertions that look beneath the API.
    func withStore<Result: Sendable>(_ body: @Sendable (VaultStore) async throws -> Result) async throws -> Result {
        let sealer = self.sealer
        return try await self.database.withClient { client in
            try await body(VaultStore(client: client, sealer: sealer, logger: Logger(label: "test-store")))
        }
    }

    /// A digest of every row of the vault's data tables (not the audit log),
    /// to prove a refused request changed nothing.
    func dataSnapshot() async throws -> String {
        try await self.database.withClient { client in
            var parts: [String] = []
            for table in ["vaults", "credentials", "api_keys", "usage_daily", "connect_sessions"] {
                let exists = try await client.query("SELECT to_regclass(\(table)) IS NOT NULL")
                guard try await exists.decode(Bool.self).first(where: { _ in true }) == true else {
                    parts.append("\(table)=absent")
                    continue
                }
                let rows = try await client.query(
                    PostgresQuery(
                        unsafeSQL:
                            "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), 'empty') FROM \(table) t"))
                for try await digest in rows.decode(String.self) { parts.append("\(table)=\(digest)") }
            }
            return parts.joined(separator: " ")
        }
    }

    /// Every audit row, as text.
    func auditText() async throws -> String {
        try await self.database.withClient { client in
            let rows = try await client.query("SELECT row_to_json(a)::text FROM audit_events a ORDER BY id")
            return try await rows.decode(String.self).reduce(into: "") { $0 += $1 + "\n" }
        }
    }

}

/// The running server's parts tests reach into (usage flusher, caches,
/// refresher, routes, injection shortcut).
final class FlusherBox: Sendable {
    private let server = Mutex<LatchkeyServer?>(nil)
    func set(_ server: LatchkeyServer) { self.server.withLock { $0 = server } }
    private var current: LatchkeyServer? { self.server.withLock { $0 } }
    var routes: [String] { self.current?.routes ?? [] }
    var credentials: CredentialCache? { self.current?.credentialCache }
    func get() -> UsageFlusher? { self.current?.usageFlusher }
    var cache: KeyCache? { self.current?.keyCache }
    var background: BackgroundWork? { self.current?.background }
    var refresher: TokenRefresher? { self.background?.refresher }
    /// How many injections the event-loop shortcut has answered.
    var shortcutAnswers: Int { self.current?.shortcut.answered ?? 0 }
}

/// A response, decoded for assertions.
struct APIResponse: Sendable {
    let status: Int
    let headers: HTTPFields
    let body: String

    var json: JSONValue { (try? JSONDecoder().decode(JSONValue.self, from: Data(self.body.utf8))) ?? .null }
    var errorCode: String? { self.json["error"]["code"].stringValue }
}

extension TestClientProtocol {
    /// Calls the API with the given bearer key (nil sends no Authorization).
    func call(
        _ method: HTTPRequest.Method, _ uri: String, key: String?, body: String? = nil,
        headers extra: HTTPFields = [:]
    ) async throws -> APIResponse {
        var headers = extra
        if let key { headers[.authorization] = "Bearer \(key)" }
        if body != nil { headers[.contentType] = "application/json" }
        return try await self.execute(
            uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }
        ) { response in
            APIResponse(
                status: Int(response.status.code), headers: response.headers,
                body: String(buffer: response.body))
        }
    }
}

extension JSONValue {
    subscript(key: String) -> JSONValue {
        if case .object(let object) = self { return object[key] ?? .null }
        return .null
    }

    subscript(index: Int) -> JSONValue {
        if case .array(let array) = self, array.indices.contains(index) { return array[index] }
        return .null
    }

    var arrayValue: [JSONValue] {
        if case .array(let array) = self { return array }
        return []
    }

    var intValue: Int? {
        if case .number(let number) = self { return Int(number) }
        return nil
    }

    var boolValue: Bool? {
        if case .bool(let flag) = self { return flag }
        return nil
    }
}

/// JSON text from a literal dictionary, for request bodies.
func json(_ object: [String: Any]) -> String {
    // swiftlint-style escape hatch: JSONSerialization takes [String: Any].
    String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

/// One valid value per credential type; `oauth` and `client_credentials`
/// need an `oauth_client` named `client` to exist first.
enum Samples {
    static func value(_ type: CredentialType, secret: String = "s3cr3t") -> [String: Any] {
        switch type {
        case .bearer: ["token": "bearer-\(secret)"]
        case .apiKey: ["key": "apikey-\(secret)", "header": "X-API-Key"]
        case .headerSet: ["headers": ["X-One": "one-\(secret)", "X-Two": "two-\(secret)"]]
        case .basic: ["username": "user", "password": "password-\(secret)"]
        case .cookie: ["cookie": "session=cookie-\(secret)"]
        case .awsSigV4:
            [
                "access_key_id": "AKIDEXAMPLE", "secret_access_key": "aws-\(secret)", "session_token": "sts-\(secret)",
                "region": "us-east-1", "service": "s3",
            ]
        case .oauthClient:
            [
                "client_id": "client-id", "client_secret": "client-secret-\(secret)",
                "token_url": "https://provider.example/token", "authorization_url": "https://provider.example/auth",
                "scopes": ["read", "write"],
            ]
        case .oauth:
            // No refresh token: one would be validated against the provider
            // (PasteTests cover that with the simulator).
            ["client": "client", "access_token": "access-\(secret)", "expires_in": 3600, "scopes": ["read"]]
        case .clientCredentials: ["client": "client", "scopes": ["read"]]
        }
    }

    /// The secret strings `value(_:secret:)` puts in a value of that type.
    static func secrets(_ type: CredentialType, secret: String = "s3cr3t") -> [String] {
        switch type {
        case .bearer: ["bearer-\(secret)"]
        case .apiKey: ["apikey-\(secret)"]
        case .headerSet: ["one-\(secret)", "two-\(secret)"]
        case .basic: ["password-\(secret)"]
        case .cookie: ["cookie-\(secret)"]
        case .awsSigV4: ["aws-\(secret)", "sts-\(secret)"]
        case .oauthClient: ["client-secret-\(secret)"]
        case .oauth: ["access-\(secret)"]
        case .clientCredentials: []
        }
    }
}

extension VaultStore {
    /// Stores a bearer credential straight through the store, for tests that
    /// work beneath the API (rekey, start-up checks).
    func seedBearer(_ name: String, token: String, vault: String = "default") async throws {
        let value = try CredentialValidator.validate(
            type: .bearer, value: .object(["token": .string(token)]), now: Date())
        _ = try await self.createCredential(
            vault: vault, name: name, type: .bearer, description: "", value: value, by: .cli, now: Date())
    }
}

extension TestClientProtocol {
    /// Pastes an `oauth` credential `tok` for the simulator's `sim` client,
    /// with a refresh token the simulator has just issued (so the paste's
    /// validating refresh reaches the provider).
    func pasteSimulatedToken(_ harness: Harness, _ simulator: ProviderSimulator) async throws -> APIResponse {
        try await self.call(
            .post, "/v1/vaults/default/credentials", key: harness.adminKey,
            body: json([
                "name": "tok", "type": "oauth",
                "value": ["client": "sim", "refresh_token": simulator.seedRefreshToken(clientID: "app")],
            ]))
    }
}

extension Harness {
    /// An app and a provider simulator whose client `app` has `behaviour`,
    /// with an oauth_client `sim` for it: client id, secret and token URL,
    /// plus what `client` adds (an authorization URL, scopes, an auth method).
    static func withSimulatedClient(
        _ setup: TestingSetup = .router,
        behaviour: ProviderSimulator.Behaviour = ProviderSimulator.Behaviour(),
        configure: @escaping @Sendable (inout LatchkeyConfiguration) -> Void = { _ in },
        client extra: @escaping @Sendable (ProviderSimulator) -> [String: Any] = { _ in [:] },
        _ body: @escaping @Sendable (Harness, any TestClientProtocol, ProviderSimulator) async throws -> Void
    ) async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "app-secret", behaviour: behaviour)
            try await Harness.withApp(setup, configure: configure) { harness, client in
                let value: [String: Any] = [
                    "client_id": "app", "client_secret": "app-secret", "token_url": simulator.tokenURL,
                ]
                let created = try await client.call(
                    .post, "/v1/vaults/default/credentials", key: harness.adminKey,
                    body: json([
                        "name": "sim", "type": "oauth_client",
                        "value": value.merging(extra(simulator)) { $1 },
                    ]))
                #expect(created.status == 201, "\(created.body)")
                try await body(harness, client, simulator)
            }
        }
    }
}
