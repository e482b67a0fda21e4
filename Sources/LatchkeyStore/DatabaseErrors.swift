import LatchkeyCore
import PostgresNIO

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
        if error.serverInfo?[.sqlState] == nil { return LatchkeyError.databaseUnavailable }
        return error
    default:
        return error
    }
}

/// Runs a database operation and translates its errors (see `translateDatabaseError`).
package func withDatabaseErrors<Result>(_ body: () async throws -> Result) async throws -> Result {
    do {
        return try await body()
    } catch {
        throw translateDatabaseError(error)
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
