import LatchkeyCore
import PostgresNIO
import Synchronization

/// Keeps `PSQLError` inside the store: a database that cannot be reached
/// becomes `DATABASE_UNAVAILABLE` (503); domain errors thrown inside a
/// transaction come out unwrapped; anything else is a bug and stays as is,
/// to be logged and answered as a 500 by the HTTP layer.
package func translateDatabaseError(_ error: any Error) -> any Error {
    switch error {
    case let error as LatchkeyError:
        return error
    case let error as PostgresTransactionError:
        if let closureError = error.closureError { return translateDatabaseError(closureError) }
        if let beginError = error.beginError { return translateDatabaseError(beginError) }
        if let commitError = error.commitError { return translateDatabaseError(commitError) }
        return LatchkeyError.databaseUnavailable
    case let error as PSQLError:
        // Errors the server reported (a failed constraint, bad SQL) carry a
        // SQLSTATE; connection-level failures do not.
        guard let state = error.serverInfo?[.sqlState] else { return LatchkeyError.databaseUnavailable }
        // A backstop for input the readers let through: text PostgreSQL cannot
        // store is the caller's mistake, not a 500.
        if state == "22021" || state == "22P05" {
            return LatchkeyError(.validationFailed, "The request holds text the database cannot store (such as NUL).")
        }
        return error
    default:
        return error
    }
}

/// How long a database operation may take before it is given up as
/// `DATABASE_UNAVAILABLE`. The HTTP layer sets it for each request
/// (`LATCHKEY_DATABASE_TIMEOUT`); unset, operations wait as long as the pool
/// does. It matters when Postgres is down: PostgresNIO's pool then queues a
/// request for up to a minute (its circuit breaker) before failing it, and a
/// caller deserves a 503 long before that.
package enum DatabaseDeadline {
    @TaskLocal package static var timeout: Duration?
}

/// What the process's database work looks like, for `/metrics`: PostgresNIO's
/// pool keeps its own statistics private, so the operations that pass through
/// `withDatabaseErrors` (every store call) are counted here. Process-wide.
package enum DatabaseActivity {
    static let inFlightCount = Atomic<Int>(0)
    static let operationCount = Atomic<Int>(0)
    static let unavailableCount = Atomic<Int>(0)

    /// Store calls waiting for or using a connection now.
    package static var inFlight: Int { inFlightCount.load(ordering: .relaxed) }
    /// Store calls made since start.
    package static var operations: Int { operationCount.load(ordering: .relaxed) }
    /// Store calls that ended in `DATABASE_UNAVAILABLE` (unreachable, or past the deadline).
    package static var unavailable: Int { unavailableCount.load(ordering: .relaxed) }
}

/// Runs a database operation within `DatabaseDeadline.timeout` and
/// translates its errors (see `translateDatabaseError`). At the deadline the
/// operation is cancelled: a pool lease still waiting is withdrawn, and a
/// transaction that had not committed rolls back, so a timed-out write
/// leaves nothing half done.
package func withDatabaseErrors<Result: Sendable>(
    _ body: @Sendable () async throws -> Result
) async throws -> Result {
    DatabaseActivity.operationCount.add(1, ordering: .relaxed)
    DatabaseActivity.inFlightCount.add(1, ordering: .relaxed)
    defer { DatabaseActivity.inFlightCount.subtract(1, ordering: .relaxed) }
    do {
        guard let timeout = DatabaseDeadline.timeout else { return try await body() }
        return try await withoutActuallyEscaping(body) { body in
            try await withThrowingTaskGroup(of: Result?.self) { group in
                group.addTask { try await body() }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let result = first else {
                    throw LatchkeyError(
                        .databaseUnavailable,
                        "The database did not answer within \(timeout.components.seconds > 0 ? "\(timeout.components.seconds) s" : "\(timeout)"); try again shortly."
                    )
                }
                return result
            }
        }
    } catch {
        let translated = translateDatabaseError(error)
        if (translated as? LatchkeyError)?.code == .databaseUnavailable {
            DatabaseActivity.unavailableCount.add(1, ordering: .relaxed)
        }
        throw translated
    }
}

/// Log metadata for an unexpected error: its type and, for a database error,
/// the SQLSTATE and the server's one-line message. Never the query's bound
/// values or the server's DETAIL line, which can quote row contents.
package func errorLogMetadata(_ error: any Error) -> [String: String] {
    var metadata = ["error.type": String(reflecting: type(of: error))]
    if let error = error as? PSQLError {
        metadata["db.sqlstate"] = error.serverInfo?[.sqlState]
        metadata["db.message"] = error.serverInfo?[.message]
        metadata["db.error_code"] = "\(error.code)"
    }
    return metadata
}
