import Foundation
package import Hummingbird
import LatchkeyCore
import LatchkeyCrypto
package import LatchkeyStore
import Logging

/// Authenticates admin calls with the bootstrap secret
/// (`Authorization: Bearer $LATCHKEY_ADMIN_SECRET`), compared in constant
/// time. Every failure is answered 401 `INVALID_KEY` and audited with the
/// caller's address, never with what it sent.
package struct AdminSecretAuthenticator: RouterMiddleware {
    package typealias Context = LatchkeyRequestContext

    let adminSecret: String?
    let store: VaultStore

    package init(adminSecret: String?, store: VaultStore) {
        self.adminSecret = adminSecret
        self.store = store
    }

    package func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let presented = Self.bearerToken(request)
        guard let presented, let adminSecret, constantTimeEquals(presented, adminSecret) else {
            var detail: [String: JSONValue] = [
                "reason": .string(presented == nil ? "missing_or_malformed_authorization" : "unknown_key"),
                "route": .string("\(request.method.rawValue) \(request.uri.path.prefix(200))"),
            ]
            if let address = context.remoteAddress?.ipAddress { detail["remote_address"] = .string(address) }
            do {
                try await self.store.recordAudit(
                    action: .authFailure, vault: nil, credential: nil, by: .anonymous, outcome: .denied,
                    detail: detail)
            } catch {
                // Never let an audit outage turn a 401 into a 500.
                context.logger.warning("could not audit a failed authentication")
            }
            throw LatchkeyError.invalidKey
        }
        context.principal = .adminSecret
        return try await next(request, context)
    }

    /// The token from `Authorization: Bearer <token>`, or nil when the header
    /// is missing or not of that form.
    static func bearerToken(_ request: Request) -> Substring? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : Substring(token)
    }
}
