package import LatchkeyCore

/// A provider's OAuth endpoints and habits, prefilled into an `oauth_client`
/// created with `"provider": "<name>"`; everything but the client's own id and
/// secret. Fields given explicitly in the request win over the preset.
package struct ProviderPreset: Sendable, Hashable, Encodable {
    package let name: String
    package let displayName: String
    package let authorizationURL: String
    package let tokenURL: String
    package let tokenAuthMethod: String
    package let scopeSeparator: String
    package let defaultScopes: [String]
    package let authorizeParams: [String: String]
    package let pkce: Bool
    /// Where to register the app and read about scopes.
    package let documentation: String

    enum CodingKeys: String, CodingKey {
        case name, pkce, documentation
        case displayName = "display_name"
        case authorizationURL = "authorization_url"
        case tokenURL = "token_url"
        case tokenAuthMethod = "token_auth_method"
        case scopeSeparator = "scope_separator"
        case defaultScopes = "scopes"
        case authorizeParams = "authorize_params"
    }
}

/// The built-in presets. To add a provider, add one entry here (and a test
/// row in ProviderPresetTests): nothing else needs to change.
package enum ProviderPresets {
    package static let all: [ProviderPreset] = [
        ProviderPreset(
            name: "atlassian", displayName: "Atlassian (Jira, Confluence)",
            authorizationURL: "https://auth.atlassian.com/authorize",
            tokenURL: "https://auth.atlassian.com/oauth/token", tokenAuthMethod: "client_secret_post",
            scopeSeparator: " ", defaultScopes: ["offline_access"],
            authorizeParams: ["audience": "api.atlassian.com", "prompt": "consent"], pkce: false,
            documentation: "https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/"),
        ProviderPreset(
            name: "github", displayName: "GitHub", authorizationURL: "https://github.com/login/oauth/authorize",
            tokenURL: "https://github.com/login/oauth/access_token", tokenAuthMethod: "client_secret_post",
            scopeSeparator: " ", defaultScopes: [], authorizeParams: [:], pkce: true,
            documentation: "https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps"),
        ProviderPreset(
            name: "google", displayName: "Google", authorizationURL: "https://accounts.google.com/o/oauth2/v2/auth",
            tokenURL: "https://oauth2.googleapis.com/token", tokenAuthMethod: "client_secret_post",
            scopeSeparator: " ", defaultScopes: [],
            // Without these Google issues no refresh token, or only on first consent.
            authorizeParams: ["access_type": "offline", "prompt": "consent"], pkce: true,
            documentation: "https://developers.google.com/identity/protocols/oauth2/web-server"),
        ProviderPreset(
            name: "hubspot", displayName: "HubSpot", authorizationURL: "https://app.hubspot.com/oauth/authorize",
            tokenURL: "https://api.hubapi.com/oauth/v1/token", tokenAuthMethod: "client_secret_post",
            scopeSeparator: " ", defaultScopes: ["oauth"], authorizeParams: [:], pkce: false,
            documentation: "https://developers.hubspot.com/docs/api/working-with-oauth"),
        ProviderPreset(
            name: "linear", displayName: "Linear", authorizationURL: "https://linear.app/oauth/authorize",
            tokenURL: "https://api.linear.app/oauth/token", tokenAuthMethod: "client_secret_post",
            scopeSeparator: ",", defaultScopes: ["read"], authorizeParams: [:], pkce: true,
            documentation: "https://developers.linear.app/docs/oauth/authentication"),
        ProviderPreset(
            name: "microsoft", displayName: "Microsoft (Entra ID, Graph)",
            authorizationURL: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            tokenURL: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            tokenAuthMethod: "client_secret_post", scopeSeparator: " ", defaultScopes: ["offline_access"],
            authorizeParams: [:], pkce: true,
            documentation: "https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow"),
        ProviderPreset(
            name: "notion", displayName: "Notion", authorizationURL: "https://api.notion.com/v1/oauth/authorize",
            tokenURL: "https://api.notion.com/v1/oauth/token", tokenAuthMethod: "client_secret_basic",
            scopeSeparator: " ", defaultScopes: [], authorizeParams: ["owner": "user"], pkce: false,
            documentation: "https://developers.notion.com/docs/authorization"),
        ProviderPreset(
            name: "salesforce", displayName: "Salesforce",
            authorizationURL: "https://login.salesforce.com/services/oauth2/authorize",
            tokenURL: "https://login.salesforce.com/services/oauth2/token", tokenAuthMethod: "client_secret_post",
            scopeSeparator: " ", defaultScopes: ["api", "refresh_token"], authorizeParams: [:], pkce: true,
            documentation: "https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm"),
        ProviderPreset(
            name: "slack", displayName: "Slack", authorizationURL: "https://slack.com/oauth/v2/authorize",
            tokenURL: "https://slack.com/api/oauth.v2.access", tokenAuthMethod: "client_secret_post",
            scopeSeparator: ",", defaultScopes: [], authorizeParams: [:], pkce: false,
            documentation: "https://api.slack.com/authentication/oauth-v2"),
        ProviderPreset(
            name: "zoom", displayName: "Zoom", authorizationURL: "https://zoom.us/oauth/authorize",
            tokenURL: "https://zoom.us/oauth/token", tokenAuthMethod: "client_secret_basic", scopeSeparator: " ",
            defaultScopes: [], authorizeParams: [:], pkce: true,
            documentation: "https://developers.zoom.us/docs/integrations/oauth/"),
    ]

    package static func named(_ name: String) -> ProviderPreset? {
        Self.all.first { $0.name == name }
    }
}

extension ProviderPresets {
    /// Fills an `oauth_client` value's missing fields from its `provider`
    /// preset; fields the caller gave win (authorize parameters merge, the
    /// caller's overriding the preset's). A value without `provider` is
    /// returned unchanged.
    package static func prefill(_ value: JSONValue?) throws(LatchkeyError) -> JSONValue? {
        guard case .object(var object)? = value, let provider = object["provider"] else { return value }
        guard let name = provider.stringValue else {
            throw .validation("value.provider", "must be a string, not \(provider.typeName)")
        }
        guard let preset = Self.named(name) else {
            throw .validation(
                "value.provider",
                "is not a known provider (\(Self.all.map(\.name).joined(separator: ", "))); GET /v1/providers lists them, "
                    + "or leave it out and give token_url and authorization_url")
        }
        func fill(_ key: String, _ fallback: JSONValue) {
            if object[key] == nil || object[key] == .null { object[key] = fallback }
        }
        fill("authorization_url", .string(preset.authorizationURL))
        fill("token_url", .string(preset.tokenURL))
        fill("token_auth_method", .string(preset.tokenAuthMethod))
        fill("scope_separator", .string(preset.scopeSeparator))
        fill("pkce", .bool(preset.pkce))
        if !preset.defaultScopes.isEmpty { fill("scopes", .array(preset.defaultScopes.map(JSONValue.string))) }
        if !preset.authorizeParams.isEmpty {
            var params = preset.authorizeParams.mapValues(JSONValue.string)
            if case .object(let given)? = object["authorize_params"] { params.merge(given) { $1 } }
            object["authorize_params"] = .object(params)
        }
        return .object(object)
    }
}
