// Measures the background refresher (issue: "N tokens all due at once
// against the loopback simulator, 1 and 3 refresher instances"), in one
// process: a real PostgreSQL database of its own (in the server named by
// LATCHKEY_DATABASE_URL), the provider simulator on loopback with rotating
// refresh tokens, and 1..n TokenRefresher instances, each with its own
// connection pool, exactly as replicas would run them.
//
//   latchkey-refresher-bench drain --tokens 10000 --replicas 1
//   latchkey-refresher-bench scan --stored 1000000 --due 1000
//
// Run through Benchmarks/refresher, which builds in release mode, starts a
// throwaway PostgreSQL and runs the whole matrix.

import ArgumentParser
import AsyncHTTPClient
import Foundation
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyOAuth
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import PostgresNIO

@main
struct RefresherBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latchkey-refresher-bench", subcommands: [Drain.self, Scan.self])
}

struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store N tokens, all due, and time 1..n refreshers draining them.")

    @Option var tokens = 10_000
    @Option var replicas = 1
    @Option var concurrency = 16
    @Option(name: .customLong("host-concurrency")) var hostConcurrency = 8

    func run() async throws {
        let (tokens, replicas, concurrency, hostConcurrency) = (
            self.tokens, self.replicas, self.concurrency, self.hostConcurrency
        )
        try await Bench.withSetUp { database, simulator, key in
            let seeded = try await Bench.seedDue(database, simulator: simulator, key: key, count: tokens)
            let before = try await Bench.activeMilliseconds(database)
            let started = ContinuousClock.now
            let attempts = try await Bench.drain(
                database, key: key, replicas: replicas, concurrency: concurrency, hostConcurrency: hostConcurrency)
            let elapsed = ContinuousClock.now - started
            let databaseMilliseconds = try await Bench.activeMilliseconds(database) - before
            let grants = simulator.grants(clientID: "app", type: "refresh_token")
            let lost = try await Bench.countLost(database, key: key, simulator: simulator, seeded: seeded)
            let seconds = Bench.seconds(elapsed)
            print(
                String(
                    format:
                        "drain tokens=%d replicas=%d concurrency=%d/%d drained_in_s=%.2f refreshes_per_s=%.0f "
                        + "db_ms_per_refresh=%.3f attempts=%@ grants=%d lost=%d",
                    tokens, replicas, concurrency, hostConcurrency, seconds, Double(tokens) / seconds,
                    databaseMilliseconds / Double(max(1, tokens)), attempts.map(String.init).joined(separator: "+"),
                    grants, lost))
        }
    }
}

struct Scan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store many credentials of which few are due: the claim's plan and cost, and the drain time.")

    @Option var stored = 1_000_000
    @Option var due = 1_000

    func run() async throws {
        let (stored, due) = (self.stored, self.due)
        try await Bench.withSetUp { database, simulator, key in
            let seeded = try await Bench.seedDue(database, simulator: simulator, key: key, count: due)
            try await Bench.seedNotDue(database, count: max(0, stored - due))
            let (plan, executionMilliseconds, buffers) = try await Bench.explainClaim(database)
            let started = ContinuousClock.now
            _ = try await Bench.drain(database, key: key, replicas: 1, concurrency: 16, hostConcurrency: 8)
            let seconds = Bench.seconds(ContinuousClock.now - started)
            let lost = try await Bench.countLost(database, key: key, simulator: simulator, seeded: seeded)
            print(
                String(
                    format:
                        "scan stored=%d due=%d claim_plan=\"%@\" claim_exec_ms=%.3f claim_buffers=%d "
                        + "drained_in_s=%.2f lost=%d",
                    stored, due, plan, executionMilliseconds, buffers, seconds, lost))
        }
    }
}

enum Bench {
    static let logger: Logger = {
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        return logger
    }()

    static func withSetUp(
        _ body: @Sendable (TestDatabase, ProviderSimulator, MasterKey) async throws -> Void
    ) async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "app-secret")
            try await TestDatabase.withFresh { database in
                try await body(database, simulator, MasterKey.generate())
            }
        }
    }

    static func client(_ database: TestDatabase, key: MasterKey, _ client: PostgresClient) -> VaultStore {
        VaultStore(client: client, sealer: Sealer(keyRing: KeyRing(current: key)), logger: Self.logger)
    }

    /// `count` due tokens at the simulator's `app` (see `Seeding.dueTokens`).
    static func seedDue(
        _ database: TestDatabase, simulator: ProviderSimulator, key: MasterKey, count: Int
    ) async throws -> [(name: String, refreshToken: String)] {
        try await database.withClient { client in
            try await Seeding.dueTokens(
                client, sealer: Sealer(keyRing: KeyRing(current: key)), simulator: simulator, count: count,
                logger: Self.logger)
        }
    }

    /// `count` tokens that are not due.
    static func seedNotDue(_ database: TestDatabase, count: Int) async throws {
        try await database.withClient { client in
            try await Seeding.notDueTokens(client, count: count, logger: Self.logger)
        }
    }

    /// Runs `replicas` refreshers, each with its own pool, until nothing is due.
    static func drain(
        _ database: TestDatabase, key: MasterKey, replicas: Int, concurrency: Int, hostConcurrency: Int
    ) async throws -> [Int] {
        let configuration = try database.configuration
        // The process-wide client: shared by the "replicas" as their event
        // loops are, and never shut down (the process ends).
        let http = HTTPClient.shared
        return try await withThrowingTaskGroup(of: Int.self) { group in
            for replica in 0..<replicas {
                group.addTask {
                    try await PostgresClient.withRunning(configuration, logger: Self.logger) { client in
                        var settings = RefresherSettings(owner: "bench-\(replica)")
                        settings.concurrency = concurrency
                        settings.perHostConcurrency = hostConcurrency
                        let refresher = TokenRefresher(
                            store: Self.client(database, key: key, client),
                            tokens: TokenEndpointClient(http: http), policy: RefreshPolicy(), settings: settings,
                            now: { Date() }, logger: Self.logger)
                        return await refresher.drainDue()
                    }
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
    }

    /// Seeded tokens whose stored refresh token the provider no longer accepts.
    static func countLost(
        _ database: TestDatabase, key: MasterKey, simulator: ProviderSimulator,
        seeded: [(name: String, refreshToken: String)]
    ) async throws -> Int {
        try await database.withClient { client in
            let store = Self.client(database, key: key, client)
            var lost = 0
            // Every token for small runs; an even sample of 2,000 for large ones.
            let stride = max(1, seeded.count / 2_000)
            for index in Swift.stride(from: 0, to: seeded.count, by: stride) {
                let value = try await store.openValue(vault: "default", name: seeded[index].0)
                if !simulator.isLive(refreshToken: value["refresh_token"]?.stringValue ?? "") { lost += 1 }
            }
            return lost
        }
    }

    /// The claim's scan, explained with ANALYZE: plan, time, buffers touched.
    static func explainClaim(_ database: TestDatabase) async throws -> (String, Double, Int) {
        try await database.withClient { client in
            let rows = try await client.query(
                """
                EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
                SELECT id FROM credentials WHERE due_at <= now() ORDER BY due_at LIMIT 64 FOR UPDATE SKIP LOCKED
                """, logger: Self.logger)
            var text = ""
            for try await part in rows.decode(String.self) { text += part }
            let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]]
            let top = json?.first
            var plan = top?["Plan"] as? [String: Any]
            var path: [String] = []
            while let node = plan {
                let type = node["Node Type"] as? String ?? "?"
                path.append(node["Index Name"].map { "\(type) using \($0)" } ?? type)
                plan = (node["Plans"] as? [[String: Any]])?.first
            }
            let execution = top?["Execution Time"] as? Double ?? -1
            let root = top?["Plan"] as? [String: Any]
            let buffers =
                (root?["Shared Hit Blocks"] as? Int ?? 0) + (root?["Shared Read Blocks"] as? Int ?? 0)
            return (path.joined(separator: " > "), execution, buffers)
        }
    }

    /// Milliseconds backends spent executing statements in this database
    /// (pg_stat_database.active_time, PostgreSQL 14+).
    static func activeMilliseconds(_ database: TestDatabase) async throws -> Double {
        // Backends report their statistics when they go idle or exit; the
        // refreshers' pools have closed by now, and this pause lets the last
        // backends finish exiting. (A benchmark, not a test: nothing to await.)
        try await Task.sleep(for: .milliseconds(1_500))
        return try await database.withClient { client in
            let rows = try await client.query(
                "SELECT active_time FROM pg_stat_database WHERE datname = current_database()", logger: Self.logger)
            var total = 0.0
            for try await value in rows.decode(Double.self) { total = value }
            return total
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
