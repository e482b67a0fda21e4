import AsyncHTTPClient
import Foundation
import Glibc
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyTesting
import NIOCore
import NIOHTTP1
import PostgresNIO
import Synchronization
import Testing

/// What an operator relies on, against real `latchkey serve` processes:
/// SIGTERM under load, and a PostgreSQL restart under load.
@Suite("Operations: graceful shutdown and database faults, as real processes")
struct OperationsTests {

    /// SIGTERM while provider calls are held open and sidecars inject in a
    /// loop: the listener closes, every request already in flight completes
    /// (the held refreshes with 200 once released), nothing answers an error,
    /// the usage counted in memory reaches the database, and the exit is 0.
    @Test(.timeLimit(.minutes(5))) func sigtermUnderLoadFinishesInFlightWorkAndFlushesUsage() async throws {
        try await ProviderSimulator.withRunning { simulator in
            simulator.register(clientID: "app", secret: "app-secret")
            try await TestDatabase.withFresh { database in
                let harness = try await Harness.make(database: database)
                let port = try ExternalProcess.freePort()
                let base = "http://127.0.0.1:\(port)"
                let server = try LatchkeyProcess.Running(
                    ["serve", "--listen", "127.0.0.1:\(port)"],
                    environment: [
                        "LATCHKEY_DATABASE_URL": database.url, "LATCHKEY_MASTER_KEY": harness.masterKey.hex,
                        "LATCHKEY_LOG_LEVEL": "error", "LATCHKEY_SHUTDOWN_GRACE": "60s",
                        // Only the flush at shutdown writes usage in this test.
                        "LATCHKEY_USAGE_FLUSH_INTERVAL": "300s", "LATCHKEY_DATABASE_TIMEOUT": "60s",
                    ])
                var stopped = false
                defer { if !stopped { server.process.terminate() } }
                try #require(try await Self.waitUntilUp(base))

                let admin = harness.adminKey
                _ = try await Self.create(
                    base, admin, "sim", "oauth_client",
                    [
                        "client_id": "app", "client_secret": "app-secret", "token_url": simulator.tokenURL,
                        "authorization_url": simulator.authorizationURL,
                    ])
                let tokens = (0..<4).map { "tok\($0)" }
                for name in tokens {
                    let pasted = try await Self.create(
                        base, admin, name, "oauth",
                        ["client": "sim", "refresh_token": simulator.seedRefreshToken(clientID: "app")])
                    #expect(pasted == 201)
                }
                #expect(try await Self.create(base, admin, "gh", "bearer", ["token": "ghp_shutdown"]) == 201)
                let minted = try await LatchkeyProcess.call(
                    .POST, base + "/v1/keys", key: admin,
                    body: json(["name": "sidecar", "role": "proxy", "vaults": ["default"], "credentials": ["gh"]]))
                let proxy = try #require(minted.json["key"].stringValue)

                // Four refreshes held at the provider: in flight when SIGTERM lands.
                simulator.update(clientID: "app") { $0.holdRequests = true }
                let refreshes = Task {
                    try await withThrowingTaskGroup(of: Int.self) { group in
                        for name in tokens {
                            group.addTask {
                                try await LatchkeyProcess.call(
                                    .POST, base + "/v1/vaults/default/credentials/\(name)/refresh", key: admin
                                ).status
                            }
                        }
                        return try await group.reduce(into: [Int]()) { $0.append($1) }
                    }
                }
                await simulator.waitUntilHeld(4)

                // Eight sidecars injecting until the server goes away.
                let tally = Tally()
                let load = Task {
                    await withTaskGroup(of: Void.self) { group in
                        for _ in 0..<8 {
                            group.addTask {
                                while true {
                                    guard
                                        let answer = try? await LatchkeyProcess.call(
                                            .GET, base + "/v1/inject/default/gh", key: proxy)
                                    else { return }  // the connection is gone: the server has stopped
                                    tally.record(answer.status == 200, "\(answer.status)")
                                }
                            }
                        }
                    }
                }
                let loaded = try await Eventually.check(within: .seconds(30)) { tally.ok >= 200 }
                #expect(loaded)

                kill(server.process.processIdentifier, SIGTERM)
                // Stop accepting: a new connection is refused while the refreshes are still held.
                let closed = try await Eventually.check(within: .seconds(20)) { !Self.accepts(port: port) }
                #expect(closed, "the listener stayed open after SIGTERM")
                #expect(server.process.isRunning, "exited with requests still in flight")
                simulator.releaseAll()

                let statuses = try await refreshes.value
                #expect(statuses == [200, 200, 200, 200], "in-flight refreshes must complete: \(statuses)")
                await load.value
                let result = try await server.terminate()
                stopped = true
                #expect(result.status == 0, "\(result.output)")
                let (served, failures) = (tally.ok, tally.failures)
                #expect(failures.isEmpty, "answers other than 200 during shutdown: \(failures)")
                #expect(simulator.grants(clientID: "app", type: "refresh_token") == 8)  // 4 pastes, 4 refreshes

                // The usage counted in memory was written by the flush at shutdown. The
                // server may have answered a last request whose reply the client never
                // read (one per sidecar at most).
                let recorded = try await database.withClient { client in
                    let rows = try await client.query("SELECT coalesce(sum(calls), 0)::bigint FROM usage_daily")
                    var total: Int64 = 0
                    for try await (calls) in rows.decode(Int64.self) { total = calls }
                    return Int(total)
                }
                #expect((served...(served + 8)).contains(recorded), "served \(served), recorded \(recorded)")
                print(
                    "graceful shutdown: \(served) injections served under load, \(recorded) recorded; 4 held refreshes completed"
                )
            }
        }
    }

    /// PostgreSQL stopped and started again (pg_ctl, its own cluster) while a
    /// sidecar injects: readiness turns unready, warm credentials keep
    /// injecting, writes are refused with 503 and leave nothing behind, and
    /// once the database is back everything recovers, the change listener
    /// included, without restarting Latchkey.
    @Test(.timeLimit(.minutes(5))) func aPostgresRestartUnderLoadIsSurvivedWithoutARestart() async throws {
        let cluster = try await Cluster.start()
        do {
            try await Self.restart(cluster)
        } catch {
            await cluster.remove()
            throw error
        }
        await cluster.remove()
    }

    static func restart(_ cluster: Cluster) async throws {
        let environment = [
            "LATCHKEY_DATABASE_URL": cluster.url, "LATCHKEY_MASTER_KEY": String(repeating: "5a", count: 32),
            "LATCHKEY_LOG_LEVEL": "error", "LATCHKEY_DATABASE_TIMEOUT": "5s",
        ]
        let migrated = try await LatchkeyProcess.run(["migrate"], environment: environment)
        try #require(migrated.status == 0, "\(migrated.output)")
        let mint = try await LatchkeyProcess.run(
            ["keys", "mint", "--name", "ops", "--role", "admin", "--vault", "*"], environment: environment)
        let admin = try #require(mint.stdout.split(separator: "\n").last.map(String.init))
        let port = try ExternalProcess.freePort()
        let base = "http://127.0.0.1:\(port)"
        let server = try LatchkeyProcess.Running(["serve", "--listen", "127.0.0.1:\(port)"], environment: environment)
        var stopped = false
        defer { if !stopped { server.process.terminate() } }
        try #require(try await Self.waitUntilUp(base))

        #expect(try await Self.create(base, admin, "gh", "bearer", ["token": "before-restart"]) == 201)
        let minted = try await LatchkeyProcess.call(
            .POST, base + "/v1/keys", key: admin,
            body: json(["name": "sidecar", "role": "proxy", "vaults": ["default"], "credentials": ["gh"]]))
        let proxy = try #require(minted.json["key"].stringValue)
        @Sendable func injected() async throws -> (Int, String?) {
            let answer = try await LatchkeyProcess.call(.GET, base + "/v1/inject/default/gh", key: proxy)
            return (answer.status, answer.json["headers"]["Authorization"].stringValue)
        }
        #expect(try await injected() == (200, "Bearer before-restart"))

        // A sidecar injecting throughout, from before the stop to after the start.
        let tally = Tally()
        let load = Task {
            while !tally.stopped {
                do {
                    let (status, header) = try await injected()
                    tally.record(status == 200, "\(status) \(header ?? "")")
                } catch {
                    tally.record(false, "\(error)")
                }
            }
        }

        try await cluster.stop()
        let unready = try await Eventually.check(within: .seconds(20)) {
            try await LatchkeyProcess.call(.GET, base + "/readyz", key: nil).status == 503
        }
        #expect(unready, "/readyz stayed ready with the database down")
        #expect(try await LatchkeyProcess.call(.GET, base + "/healthz", key: nil).status == 200)
        // The warm credential still injects.
        for _ in 0..<5 { #expect(try await injected() == (200, "Bearer before-restart")) }
        // A write is refused cleanly, after the database timeout (5 s here).
        let started = ContinuousClock.now
        let refused = try await LatchkeyProcess.call(
            .POST, base + "/v1/vaults/default/credentials", key: admin,
            body: json(["name": "during_outage", "type": "bearer", "value": ["token": "lost"]]))
        #expect(refused.status == 503, "\(refused.body)")
        #expect(refused.json["error"]["code"] == .string("DATABASE_UNAVAILABLE"))
        print("a write with the database down was refused after \(ContinuousClock.now - started)")
        let servedWhileDown = tally.ok

        try await cluster.start()
        let ready = try await Eventually.check(within: .seconds(60)) {
            (try? await LatchkeyProcess.call(.GET, base + "/readyz", key: nil).status) == 200
        }
        #expect(ready, "/readyz did not recover")
        tally.stop()
        await load.value
        let (served, failures) = (tally.ok, tally.failures)
        #expect(failures.isEmpty, "the sidecar saw failures through the restart: \(failures.prefix(5))")
        #expect(served > servedWhileDown)

        // Nothing of the refused write was stored; writes work again.
        let missing = try await LatchkeyProcess.call(
            .GET, base + "/v1/vaults/default/credentials/during_outage", key: admin)
        #expect(missing.status == 404)
        // The listener is back: a rotation reaches the (reloaded) cache.
        let listening = try await Eventually.check(within: .seconds(30)) {
            try await LatchkeyProcess.call(.GET, base + "/metrics", key: nil).body.contains(
                "latchkey_cache_listener_connected 1")
        }
        #expect(listening)
        let rotated = try await LatchkeyProcess.call(
            .POST, base + "/v1/vaults/default/credentials/gh/rotate", key: admin,
            body: json(["value": ["token": "after-restart"]]))
        #expect(rotated.status == 200, "\(rotated.body)")
        let followed = try await Eventually.check(within: .seconds(15)) {
            try await injected() == (200, "Bearer after-restart")
        }
        #expect(followed, "the cache did not follow a rotation after the restart")

        let result = try await server.terminate()
        stopped = true
        #expect(result.status == 0, "\(result.output)")
        print("database restart: \(served) injections served through it (\(servedWhileDown) by the time it was down)")
    }

    // MARK: Helpers

    static func waitUntilUp(_ base: String) async throws -> Bool {
        try await Eventually.check(within: .seconds(30)) {
            (try? await LatchkeyProcess.call(.GET, base + "/healthz", key: nil).status) == 200
        }
    }

    static func create(
        _ base: String, _ key: String, _ name: String, _ type: String, _ value: [String: Any]
    ) async throws -> Int {
        try await LatchkeyProcess.call(
            .POST, base + "/v1/vaults/default/credentials", key: key,
            body: json(["name": name, "type": type, "value": value])
        ).status
    }

    /// Whether a new TCP connection to 127.0.0.1:`port` is accepted.
    static func accepts(port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// A PostgreSQL cluster of the test's own (the shared one cannot be
    /// restarted under the other tests), through scripts/lib/postgres.sh, so it
    /// runs as the same unprivileged user the test command uses.
    struct Cluster: Sendable {
        let directory: String
        let port: Int
        var url: String { "postgres://postgres@127.0.0.1:\(self.port)/postgres" }

        static func start() async throws -> Cluster {
            let directory = "/tmp/latchkey-fault-\(UUID().uuidString.prefix(8))"
            let cluster = Cluster(directory: directory, port: try ExternalProcess.freePort())
            try await cluster.script(
                "mkdir -p \(directory) && chmod 755 \(directory) && init_cluster \(directory)/data trust")
            try await cluster.start()
            return cluster
        }

        func start() async throws {
            try await self.script("PG_FSYNC=off start_cluster \(self.directory)/data \(self.port)")
        }

        func stop() async throws {
            try await self.script("stop_cluster \(self.directory)/data")
        }

        func remove() async {
            try? await self.stop()
            try? FileManager.default.removeItem(atPath: self.directory)
        }

        private func script(_ command: String) async throws {
            let library = repositoryRoot.appendingPathComponent("scripts/lib/postgres.sh").path
            // Foundation's Process on Linux reports an exit only once every
            // descendant has let go of a descriptor it passes down; the
            // postmaster pg_ctl leaves running would hold it for good. So the
            // shell closes everything above stderr first.
            let closeInherited =
                #"for fd in /proc/self/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null; "#
            let (status, _, errors) = try await ExternalProcess.run(
                "/bin/bash", ["-c", closeInherited + ". \(library) && \(command)"])
            guard status == 0 else {
                throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "\(command): \(errors)"])
            }
        }
    }
}

/// Answers counted by concurrent load loops.
final class Tally: Sendable {
    private let state = Mutex((ok: 0, failures: [String](), stopped: false))

    func record(_ succeeded: Bool, _ description: String) {
        self.state.withLock { state in
            if succeeded { state.ok += 1 } else { state.failures.append(description) }
        }
    }

    func stop() { self.state.withLock { $0.stopped = true } }
    var ok: Int { self.state.withLock { $0.ok } }
    var failures: [String] { self.state.withLock { $0.failures } }
    var stopped: Bool { self.state.withLock { $0.stopped } }
}
