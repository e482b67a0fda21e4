import Foundation
import LatchkeyStore
import Logging
package import PostgresNIO

/// A database of its own for one test, created in the server named by
/// `LATCHKEY_DATABASE_URL` (scripts/test starts a throwaway one) and dropped
/// afterwards, so tests run in parallel without seeing each other's rows.
package struct TestDatabase: Sendable {
    package let name: String
    package let url: String

    package var configuration: PostgresClient.Configuration {
        get throws { try DatabaseURL.configuration(self.url) }
    }

    package struct NotConfigured: Error, CustomStringConvertible {
        package var description: String {
            "LATCHKEY_DATABASE_URL is not set: run the suite with scripts/test, which starts a throwaway PostgreSQL"
        }
    }

    /// The server-level URL tests connect to for CREATE/DROP DATABASE.
    package static func serverURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["LATCHKEY_DATABASE_URL"], !url.isEmpty else {
            throw NotConfigured()
        }
        return url
    }

    /// Creates a fresh database, optionally migrated, runs `body`, drops it.
    package static func withFresh<Result: Sendable>(
        migrated: Bool = true,
        _ body: @Sendable (TestDatabase) async throws -> Result
    ) async throws -> Result {
        let serverURL = try Self.serverURL()
        let name = "lk_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        let logger = {
            var logger = Logger(label: "test-database")
            logger.logLevel = .warning
            return logger
        }()
        let server = try DatabaseURL.configuration(serverURL)
        // `name` is generated above from hex digits only, so it is safe to splice into DDL.
        try await PostgresClient.withRunning(server, logger: logger) { client in
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
        let database = TestDatabase(name: String(name), url: Self.replacingDatabase(in: serverURL, with: String(name)))
        do {
            if migrated {
                let configuration = try database.configuration
                try await PostgresClient.withRunning(configuration, logger: logger) { client in
                    try await Migrator(logger: logger).migrate(client)
                }
            }
            let result = try await body(database)
            try await Self.drop(name: String(name), server: server, logger: logger)
            return result
        } catch {
            try? await Self.drop(name: String(name), server: server, logger: logger)
            throw error
        }
    }

    /// Runs `body` with a running client connected to this database.
    package func withClient<Result: Sendable>(
        _ body: @Sendable (PostgresClient) async throws -> Result
    ) async throws -> Result {
        try await PostgresClient.withRunning(try self.configuration, logger: Logger(label: "test-client"), body)
    }

    private static func drop(name: String, server: PostgresClient.Configuration, logger: Logger) async throws {
        try await PostgresClient.withRunning(server, logger: logger) { client in
            try await client.query(
                PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
        }
    }

    private static func replacingDatabase(in url: String, with database: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.path = "/" + database
        return components.string ?? url
    }
}
