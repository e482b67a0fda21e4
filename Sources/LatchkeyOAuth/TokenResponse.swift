import Foundation
package import LatchkeyCore

/// Tokens a provider's token endpoint issued.
package struct TokenSet: Sendable, Hashable {
    package var accessToken: String
    /// nil when the provider sent none (on refresh: keep the old one).
    package var refreshToken: String?
    /// Seconds; nil when the provider sent none (the token is treated as
    /// non-expiring until a use fails).
    package var expiresIn: Int?
    package var tokenType: String?
    package var scopes: [String]?
    /// Every other field (`instance_url`, `id_token`, ...), kept as sent.
    package var extra: [String: JSONValue]

    package init(
        accessToken: String, refreshToken: String? = nil, expiresIn: Int? = nil, tokenType: String? = nil,
        scopes: [String]? = nil, extra: [String: JSONValue] = [:]
    ) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.expiresIn = expiresIn
        self.tokenType = tokenType
        self.scopes = scopes
        self.extra = extra
    }

    /// The value of an `oauth` credential holding these tokens for `client`
    /// (as `CredentialValidator` accepts it): the refresh token the provider
    /// sent, else `keeping` (a provider that does not rotate); the granted
    /// scopes, else `requestedScopes`.
    package func oauthValue(
        client: String, keeping refreshToken: String? = nil, requestedScopes: [String]? = nil
    ) -> [String: JSONValue] {
        var value: [String: JSONValue] = ["client": .string(client), "access_token": .string(self.accessToken)]
        if let refresh = self.refreshToken ?? refreshToken { value["refresh_token"] = .string(refresh) }
        if let idToken = self.idToken { value["id_token"] = .string(idToken) }
        if let seconds = self.expiresIn { value["expires_in"] = .number(Double(seconds)) }
        if let scopes = self.scopes ?? requestedScopes, !scopes.isEmpty {
            value["scopes"] = .array(scopes.map(JSONValue.string))
        }
        return value
    }

    /// An OpenID Connect ID token, when the provider sent one: kept sealed
    /// with the other tokens, never shown (it identifies the user, and some
    /// APIs accept it as a bearer credential).
    package var idToken: String? {
        self.extra["id_token"]?.stringValue.flatMap { $0.isEmpty || $0.utf8.count > 16 * 1024 ? nil : $0 }
    }

    /// The extra fields that are safe to show in metadata (`instance_url`,
    /// `team`, ...): strings, numbers and booleans whose names do not look
    /// like a secret. The `id_token` (see `idToken`) and anything else named
    /// like a token, secret, code, key or password is left out of metadata.
    package var providerFields: [String: JSONValue] {
        let secretish = ["token", "secret", "code", "key", "password", "assertion"]
        return self.extra.filter { name, value in
            let lowered = name.lowercased()
            guard name.utf8.count <= 64, !secretish.contains(where: { lowered.contains($0) }) else { return false }
            switch value {
            case .string(let text): return text.utf8.count <= 512
            case .number, .bool: return true
            default: return false
            }
        }
    }
}

/// Why a token request did not yield tokens. Never carries the provider's
/// raw body: only the OAuth error code, which is safe to show and log.
package enum TokenFailure: Error, Sendable, Hashable {
    /// The provider refused (`invalid_grant`, `invalid_client`, ...): retrying
    /// will not help.
    case rejected(code: String)
    /// Network trouble, a timeout, a 5xx or a 429: worth retrying, after
    /// `retryAfter` seconds when the provider said so.
    case unavailable(reason: String, retryAfter: Int?)
    /// A success status without a usable access token.
    case malformed(reason: String)

    /// Codes after which the credential needs a person to re-authorise.
    package var needsReauthorization: Bool {
        if case .rejected(let code) = self {
            return ["invalid_grant", "invalid_client", "unauthorized_client"].contains(code)
        }
        return false
    }
}

/// Parses token endpoint responses the way real providers send them (RFC 6749
/// section 5 and its common departures): JSON or form-encoded bodies (GitHub
/// without `Accept`), `expires_in` as a number or a numeric string or absent,
/// `scope` separated by spaces or commas, and `error` inside a 200 body (Slack,
/// GitHub) treated as an error.
package enum TokenResponseParser {
    package static func parse(
        status: Int, contentType: String?, retryAfter: String?, body: [UInt8]
    ) -> Result<TokenSet, TokenFailure> {
        let fields = Self.fields(contentType: contentType, body: body)
        if let code = fields?["error"]?.stringValue, !code.isEmpty {
            // An OAuth error, whatever the status. 429s and 5xx that carry one
            // (rare) are still transient.
            if status == 429 || status >= 500 {
                return .failure(
                    .unavailable(reason: "HTTP \(status) \(Self.safeCode(code))", retryAfter: Self.seconds(retryAfter)))
            }
            return .failure(.rejected(code: Self.safeCode(code)))
        }
        guard (200..<300).contains(status) else {
            if status == 429 || status >= 500 || status == 408 {
                return .failure(.unavailable(reason: "HTTP \(status)", retryAfter: Self.seconds(retryAfter)))
            }
            return .failure(.rejected(code: "http_\(status)"))
        }
        guard let fields else { return .failure(.malformed(reason: "the body is neither JSON nor form-encoded")) }
        guard let access = fields["access_token"]?.stringValue, !access.isEmpty else {
            return .failure(.malformed(reason: "no access_token in the response"))
        }
        // It becomes a header: a provider's line break must not split one.
        guard Names.isValidHeaderValue(access) else {
            return .failure(.malformed(reason: "the access_token holds a line break or NUL"))
        }
        var expiresIn: Int?
        switch fields["expires_in"] {
        case .number(let seconds)?: expiresIn = Int(exactly: seconds.rounded(.down))
        case .string(let text)?:
            guard let seconds = Int(text.trimmingCharacters(in: .whitespaces)) else {
                return .failure(.malformed(reason: "expires_in is neither a number nor a numeric string"))
            }
            expiresIn = seconds
        case .null?, nil: expiresIn = nil
        default: return .failure(.malformed(reason: "expires_in is neither a number nor a numeric string"))
        }
        if let seconds = expiresIn, seconds < 0 { return .failure(.malformed(reason: "expires_in is negative")) }
        let scopes = fields["scope"]?.stringValue.map { text in
            text.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        }
        let known: Set = ["access_token", "refresh_token", "expires_in", "token_type", "scope"]
        return .success(
            TokenSet(
                accessToken: access,
                refreshToken: fields["refresh_token"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 },
                expiresIn: expiresIn, tokenType: fields["token_type"]?.stringValue, scopes: scopes,
                extra: fields.filter { !known.contains($0.key) }))
    }

    /// The body as fields: JSON when it says so (or looks like it), else form.
    static func fields(contentType: String?, body: [UInt8]) -> [String: JSONValue]? {
        let type = contentType?.lowercased() ?? ""
        let trimmed = body.drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        if type.contains("json") || trimmed.first == UInt8(ascii: "{") {
            if case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(body)) {
                return object
            }
            return nil
        }
        guard !body.isEmpty, let text = String(validating: body, as: UTF8.self) else { return nil }
        var fields: [String: JSONValue] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.formDecode(parts[0]), !name.isEmpty else { return nil }
            fields[name] = .string(parts.count == 2 ? (Self.formDecode(parts[1]) ?? "") : "")
        }
        return fields.isEmpty ? nil : fields
    }

    private static func formDecode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// An OAuth error code is an ASCII token (RFC 6749 5.2); anything else
    /// from a provider is not repeated back, since it could be anything.
    private static func safeCode(_ code: String) -> String {
        let printable =
            code.utf8.count <= 64
            && code.utf8.allSatisfy {
                (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\")
            }
        return printable ? code : "unrecognised_error"
    }

    private static func seconds(_ header: String?) -> Int? {
        guard let header, let seconds = Int(header.trimmingCharacters(in: .whitespaces)), seconds >= 0 else {
            return nil
        }
        return min(seconds, 3600)
    }
}
