package import Foundation

/// A credential value that has been checked against its type.
///
/// `secret` is the canonical object that gets sealed: every field the user
/// sent, normalised (defaults filled in). `attributes` are the fields safe to
/// show in metadata (an API key's header name, an OAuth client's token URL),
/// and the remaining properties feed columns the service queries by.
package struct ValidatedValue: Sendable, Hashable {
    package var secret: [String: JSONValue]
    package var attributes: [String: JSONValue]
    /// The `oauth_client` an `oauth` or `client_credentials` credential uses.
    package var clientName: String?
    package var scopes: [String]?
    package var expiresAt: Date?
}

/// Validates a credential's `value` object for its type (SPEC section 9).
///
/// Unknown fields are refused rather than ignored: a typo such as `tokn` would
/// otherwise store a credential that injects nothing.
package enum CredentialValidator {
    /// Upper bound for any single string in a value: large enough for a JWT or
    /// a cookie jar, small enough that a mistaken upload is caught.
    package static let maxStringBytes = 16 * 1024

    package static func validate(
        type: CredentialType,
        value: JSONValue?,
        now: Date
    ) throws(LatchkeyError) -> ValidatedValue {
        guard let value else { throw .validation("value", "is required for a \(type.rawValue) credential") }
        guard case .object(let object) = value else {
            throw .validation("value", "must be an object, not \(value.typeName)")
        }
        var fields = JSONFields(object, prefix: "value.", subject: "a \(type.rawValue) credential")
        let result: ValidatedValue
        switch type {
        case .bearer:
            let token = try fields.requiredString("token")
            guard Names.isValidHeaderValue(token) else {
                throw .validation("value.token", "must not contain line breaks (it becomes a header)")
            }
            result = .init(secret: ["token": .string(token)], attributes: [:])
        case .apiKey:
            let key = try fields.requiredString("key")
            let header = try fields.optionalString("header")
            let queryParameter = try fields.optionalString("query_param")
            var secret: [String: JSONValue] = ["key": .string(key)]
            var attributes: [String: JSONValue] = [:]
            switch (header, queryParameter) {
            case (let header?, nil):
                guard Names.isValidHeaderName(header) else {
                    throw .validation("value.header", "must be a valid HTTP header name")
                }
                secret["header"] = .string(header)
                attributes["header"] = .string(header)
            case (nil, let parameter?):
                guard parameter.utf8.count <= 256, parameter.utf8.allSatisfy(Self.isQueryNameByte) else {
                    throw .validation(
                        "value.query_param", "must be a query parameter name of letters, digits, '-', '_', '.' or '~'")
                }
                secret["query_param"] = .string(parameter)
                attributes["query_param"] = .string(parameter)
            case (nil, nil):
                throw .validation("value", "an api_key needs either 'header' or 'query_param'")
            case (.some, .some):
                throw .validation("value", "an api_key takes 'header' or 'query_param', not both")
            }
            guard Names.isValidHeaderValue(key) else {
                throw .validation("value.key", "must not contain line breaks or NUL")
            }
            result = .init(secret: secret, attributes: attributes)
        case .headerSet:
            guard let raw = fields.take("headers") else {
                throw .validation("value.headers", "is required for a header_set credential")
            }
            guard case .object(let headers) = raw, !headers.isEmpty else {
                throw .validation("value.headers", "must be a non-empty object of header name to value")
            }
            guard headers.count <= 64 else { throw .validation("value.headers", "may hold at most 64 headers") }
            var checked: [String: JSONValue] = [:]
            var references: Set<String> = []
            for (name, headerValue) in headers {
                guard Names.isValidHeaderName(name) else {
                    // The name is not echoed: a secret pasted into the wrong place must not come back.
                    throw .validation("value.headers", "every header name must be a valid HTTP field name")
                }
                guard case .string(let text) = headerValue, !text.isEmpty,
                    text.utf8.count <= Self.maxStringBytes, Names.isValidHeaderValue(text)
                else {
                    throw .validation("value.headers.\(name)", "must be a non-empty string without line breaks")
                }
                references.formUnion(try Placeholders.references(in: text))
                checked[name] = .string(text)
            }
            // The names its placeholders point at (not secret), so metadata
            // and deletes can tell which credentials a header_set depends on.
            result = .init(
                secret: ["headers": .object(checked)],
                attributes: [
                    "header_names": .array(checked.keys.sorted().map(JSONValue.string)),
                    "references": .array(references.sorted().map(JSONValue.string)),
                ])
        case .basic:
            let username = try fields.requiredString("username")
            guard !username.contains(":") else {
                throw .validation(
                    "value.username", "must not contain ':' (HTTP Basic separates it from the password with one)")
            }
            let password = try fields.requiredString("password", allowEmpty: true)
            result = .init(secret: ["username": .string(username), "password": .string(password)], attributes: [:])
        case .cookie:
            let cookie = try fields.requiredString("cookie")
            guard Names.isValidHeaderValue(cookie) else {
                throw .validation("value.cookie", "must not contain line breaks or NUL")
            }
            result = .init(secret: ["cookie": .string(cookie)], attributes: [:])
        case .awsSigV4:
            var secret: [String: JSONValue] = [
                "access_key_id": .string(try fields.requiredString("access_key_id")),
                "secret_access_key": .string(try fields.requiredString("secret_access_key")),
            ]
            if let token = try fields.optionalString("session_token") { secret["session_token"] = .string(token) }
            let region = try fields.requiredString("region")
            let service = try fields.requiredString("service")
            for (field, text) in [("region", region), ("service", service)]
            where !text.utf8.allSatisfy(Self.isRegionByte) {
                throw .validation("value.\(field)", "must be lower-case letters, digits and '-'")
            }
            secret["region"] = .string(region)
            secret["service"] = .string(service)
            result = .init(secret: secret, attributes: ["region": .string(region), "service": .string(service)])
        case .oauthClient:
            result = try Self.validateOAuthClient(&fields)
        case .oauth:
            result = try Self.validateOAuthToken(&fields, now: now)
        case .clientCredentials:
            let client = try fields.requiredString("client")
            let scopes = try fields.optionalStringArray("scopes")
            var secret: [String: JSONValue] = ["client": .string(client)]
            if let scopes { secret["scopes"] = .array(scopes.map(JSONValue.string)) }
            result = .init(secret: secret, attributes: [:], clientName: client, scopes: scopes)
        }
        try fields.refuseLeftovers()
        return result
    }

    private static func validateOAuthClient(_ fields: inout JSONFields) throws(LatchkeyError) -> ValidatedValue {
        var secret: [String: JSONValue] = [:]
        var attributes: [String: JSONValue] = [:]
        if let provider = try fields.optionalString("provider") {
            secret["provider"] = .string(provider)
            attributes["provider"] = .string(provider)
        }
        let method = try fields.optionalString("token_auth_method") ?? "client_secret_basic"
        guard ["client_secret_basic", "client_secret_post", "none"].contains(method) else {
            throw .validation("value.token_auth_method", "must be client_secret_basic, client_secret_post or none")
        }
        secret["token_auth_method"] = .string(method)
        attributes["token_auth_method"] = .string(method)
        secret["client_id"] = .string(try fields.requiredString("client_id"))
        if method == "none" {
            if let clientSecret = try fields.optionalString("client_secret") {
                secret["client_secret"] = .string(clientSecret)
            }
        } else {
            secret["client_secret"] = .string(try fields.requiredString("client_secret"))
            // A newer secret being rolled in (tried first; the current one on `invalid_client`).
            if let next = try fields.optionalString("client_secret_next") {
                secret["client_secret_next"] = .string(next)
                attributes["client_secret_next"] = .bool(true)
            }
        }
        // Until provider presets prefill it, the token URL is what every grant needs.
        let tokenURL = try fields.requiredString("token_url")
        try Self.checkHTTPURL(tokenURL, field: "value.token_url")
        secret["token_url"] = .string(tokenURL)
        attributes["token_url"] = .string(tokenURL)
        if let authorizationURL = try fields.optionalString("authorization_url") {
            try Self.checkHTTPURL(authorizationURL, field: "value.authorization_url")
            secret["authorization_url"] = .string(authorizationURL)
            attributes["authorization_url"] = .string(authorizationURL)
        }
        if let scopes = try fields.optionalStringArray("scopes") {
            secret["scopes"] = .array(scopes.map(JSONValue.string))
            attributes["scopes"] = .array(scopes.map(JSONValue.string))
        }
        let separator = try fields.optionalString("scope_separator", allowEmpty: false) ?? " "
        secret["scope_separator"] = .string(separator)
        attributes["scope_separator"] = .string(separator)
        let pkce = try fields.optionalBool("pkce") ?? true
        secret["pkce"] = .bool(pkce)
        attributes["pkce"] = .bool(pkce)
        for field in ["authorize_params", "token_params"] {
            if let params = try fields.optionalStringMap(field) { secret[field] = .object(params) }
        }
        return .init(secret: secret, attributes: attributes)
    }

    private static func validateOAuthToken(
        _ fields: inout JSONFields, now: Date
    ) throws(LatchkeyError) -> ValidatedValue {
        let client = try fields.requiredString("client")
        var secret: [String: JSONValue] = ["client": .string(client)]
        let access = try fields.optionalString("access_token")
        if let access, !Names.isValidHeaderValue(access) {
            throw .validation("value.access_token", "must not contain line breaks (it becomes a header)")
        }
        let refresh = try fields.optionalString("refresh_token")
        guard access != nil || refresh != nil else {
            throw .validation("value", "an oauth credential needs 'access_token', 'refresh_token' or both")
        }
        if let access { secret["access_token"] = .string(access) }
        if let refresh { secret["refresh_token"] = .string(refresh) }
        // An OpenID Connect ID token, sealed with the others (the provider's, or pasted).
        if let idToken = try fields.optionalString("id_token", maxBytes: 16 * 1024) {
            secret["id_token"] = .string(idToken)
        }
        let expiresIn = fields.take("expires_in")
        let expiresAtText = try fields.optionalString("expires_at")
        var expiresAt: Date?
        switch (expiresIn, expiresAtText) {
        case (.some, .some):
            throw .validation("value", "give 'expires_in' or 'expires_at', not both")
        case (let seconds?, nil):
            let interval: Double? =
                switch seconds {
                case .number(let number): number
                case .string(let text): Double(text)
                default: nil
                }
            guard let interval, interval.isFinite, interval >= 0, interval <= 10 * 365 * 86_400 else {
                throw .validation("value.expires_in", "must be a number of seconds between 0 and ten years")
            }
            expiresAt = now.addingTimeInterval(interval.rounded(.down))
        case (nil, let text?):
            guard let date = ISO8601DateFormatter().date(from: text) else {
                throw .validation("value.expires_at", "must be an RFC 3339 time such as 2026-01-02T03:04:05Z")
            }
            expiresAt = date
        case (nil, nil):
            expiresAt = nil
        }
        let scopes = try fields.optionalStringArray("scopes")
        if let scopes { secret["scopes"] = .array(scopes.map(JSONValue.string)) }
        return .init(secret: secret, attributes: [:], clientName: client, scopes: scopes, expiresAt: expiresAt)
    }

    private static func checkHTTPURL(_ text: String, field: String) throws(LatchkeyError) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
            scheme == "https" || scheme == "http", url.host?.isEmpty == false
        else {
            throw .validation(field, "must be an absolute http(s) URL")
        }
    }

    private static func isQueryNameByte(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
            || "-_.~".utf8.contains(byte)
    }

    private static func isRegionByte(_ byte: UInt8) -> Bool {
        (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == UInt8(ascii: "-")
    }
}
