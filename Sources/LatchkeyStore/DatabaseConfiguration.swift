import Foundation
import LatchkeyCore
package import PostgresNIO

/// Turns a `postgres://user:password@host:port/database?sslmode=...` URL into
/// a PostgresNIO client configuration. (PostgresNIO itself takes structured
/// configuration only; PostgresKit's URL parser would pull in SQLKit for ten lines.)
package enum DatabaseURL {
    package struct Invalid: Error, CustomStringConvertible {
        package let description: String
    }

    package struct Unreachable: Error, CustomStringConvertible {
        package let description: String
    }

    package static func configuration(_ text: String) throws(Invalid) -> PostgresClient.Configuration {
        guard let components = URLComponents(string: text),
            let scheme = components.scheme, scheme == "postgres" || scheme == "postgresql"
        else {
            throw Invalid(
                description:
                    "LATCHKEY_DATABASE_URL must be a postgres:// URL (postgres://user:password@host:5432/database)")
        }
        let queryItems = components.queryItems ?? []
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !database.isEmpty else {
            throw Invalid(
                description: "LATCHKEY_DATABASE_URL must name a database in its path (postgres://host/latchkey)")
        }
        let username = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? "postgres"
        let password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        let tls: PostgresClient.Configuration.TLS
        switch queryItems.first(where: { $0.name == "sslmode" })?.value ?? "disable" {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        case let other:
            throw Invalid(
                description: "LATCHKEY_DATABASE_URL has an unknown sslmode '\(other)' (disable, prefer or require)")
        }
        var configuration: PostgresClient.Configuration
        if let socketDirectory = queryItems.first(where: { $0.name == "host" })?.value, socketDirectory.hasPrefix("/") {
            let port = components.port ?? 5432
            configuration = .init(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password,
                database: database)
        } else {
            guard let host = components.host, !host.isEmpty else {
                throw Invalid(
                    description: "LATCHKEY_DATABASE_URL must name a host (postgres://127.0.0.1:5432/latchkey)")
            }
            configuration = .init(
                host: host, port: components.port ?? 5432, username: username, password: password, database: database,
                tls: tls)
        }
        if let size = queryItems.first(where: { $0.name == "pool_size" })?.value {
            guard let connections = Int(size), (1...500).contains(connections) else {
                throw Invalid(description: "LATCHKEY_DATABASE_URL pool_size must be a number from 1 to 500")
            }
            configuration.options.maximumConnections = connections
        }
        return configuration
    }
}

extension PostgresClient {
    /// Runs `body` with a client whose connection pool is running, then shuts
    /// the pool down: for one-shot commands (`latchkey migrate`, `rekey`, tests)
    /// that are not part of a service group.
    @discardableResult
    /// With `reachableWithin`, a first `SELECT 1` must succeed in that time,
    /// or the command fails with one line saying where it could not connect
    /// (the pool alone would keep retrying for a minute, silently).
    package static func withRunning<Result: Sendable>(
        _ configuration: PostgresClient.Configuration,
        logger: Logger,
        reachableWithin timeout: Duration? = nil,
        _ body: @Sendable (PostgresClient) async throws -> Result
    ) async throws -> Result {
        // Connection-pool chatter (such as a lease racing `run()` starting) is
        // noise for a one-shot command; failures still surface as thrown errors.
        var backgroundLogger = logger
        backgroundLogger.logLevel = .error
        let client = PostgresClient(configuration: configuration, backgroundLogger: backgroundLogger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            if let timeout { try await client.checkReachable(configuration, within: timeout) }
            return try await body(client)
        }
    }
}

extension PostgresClient {
    /// Fails with one line saying where no database answered, when a first
    /// `SELECT 1` does not succeed within `timeout`.
    package func checkReachable(_ configuration: PostgresClient.Configuration, within timeout: Duration) async throws {
        do {
            try await DatabaseDeadline.$timeout.withValue(timeout) {
                try await withDatabaseErrors { _ = try await self.query("SELECT 1") }
            }
        } catch let error as LatchkeyError where error.code == .databaseUnavailable {
            let place = configuration.unixSocketPath ?? "\(configuration.host ?? "?"):\(configuration.port ?? 5432)"
            throw DatabaseURL.Unreachable(
                description:
                    "LATCHKEY_DATABASE_URL: no PostgreSQL answered at \(place) within \(timeout) (LATCHKEY_DATABASE_TIMEOUT)"
            )
        }
    }
}
