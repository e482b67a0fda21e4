import Foundation
import LatchkeyCore
import LatchkeyOAuth
import LatchkeyStore

/// Validates a pasted refresh token by using it (SPEC section 4, "Paste"):
/// before an `oauth` credential with a refresh token is stored, Latchkey
/// refreshes it against the provider and stores what the provider returned —
/// a rotating provider has already invalidated the pasted token. Nothing is
/// stored when the provider refuses (422 `REFRESH_TOKEN_REJECTED`, with the
/// provider's error code, audited) or cannot be reached (502
/// `PROVIDER_UNAVAILABLE`).
struct PastedTokenValidation {
    let store: VaultStore
    let tokens: TokenEndpointClient

    /// The value to store: `value` itself when there is no refresh token to
    /// check, otherwise the tokens the validation refresh returned, with the
    /// non-secret extra fields of the provider's answer (for metadata).
    func validate(
        vault: String, name: String, value: JSONValue?, action: AuditAction, by principal: Principal, now: Date
    ) async throws -> (value: JSONValue?, providerFields: [String: JSONValue]) {
        let checked = try CredentialValidator.validate(type: .oauth, value: value, now: now)
        guard case .string(let refreshToken)? = checked.secret["refresh_token"], let clientName = checked.clientName
        else { return (value, [:]) }
        let client = try await self.clientConfiguration(vault: vault, name: clientName)
        switch await self.tokens.refresh(client, refreshToken: refreshToken) {
        case .success(let issued):
            let refreshed = issued.oauthValue(
                client: clientName, keeping: refreshToken, requestedScopes: checked.scopes)
            return (.object(refreshed), issued.providerFields)
        case .failure(.rejected(let code)):
            try? await self.store.recordAudit(
                action: action, vault: vault, credential: name, by: principal, outcome: .failure,
                detail: ["error": .string("REFRESH_TOKEN_REJECTED"), "provider_error": .string(code)])
            throw LatchkeyError(
                .refreshTokenRejected,
                "The provider rejected the refresh token (\(code)) when Latchkey tried it; nothing was stored.",
                field: "value.refresh_token", providerError: code)
        case .failure(.unavailable(let reason, _)), .failure(.malformed(let reason)):
            throw LatchkeyError(
                .providerUnavailable,
                "The provider's token endpoint could not validate the refresh token (\(reason)); nothing was stored.")
        }
    }

    private func clientConfiguration(vault: String, name: String) async throws -> OAuthClientConfiguration {
        let type: CredentialType
        do {
            type = try await self.store.credentialType(vault: vault, name: name)
        } catch let error as LatchkeyError where error.code == .credentialNotFound {
            throw LatchkeyError.validation("value.client", "no oauth_client named '\(name)' in this vault")
        }
        guard type == .oauthClient,
            let configuration = OAuthClientConfiguration(
                sealedValue: try await self.store.openValue(vault: vault, name: name))
        else {
            throw LatchkeyError.validation(
                "value.client", "'\(name)' is a \(type.rawValue) credential, not an oauth_client")
        }
        return configuration
    }
}
