package import AsyncHTTPClient
import Foundation
package import LatchkeyCore
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// What a token request needs of an `oauth_client`, read from its sealed value.
package struct OAuthClientConfiguration: Sendable, Hashable {
    package var clientID: String
    package var clientSecret: String?
    /// A newer secret being rolled in: tried first, and on `invalid_client`
    /// the current one is tried once more, so a client secret can be rotated
    /// at the provider without a failed refresh in between.
    package var nextClientSecret: String?
    package var tokenURL: String
    /// `client_secret_basic`, `client_secret_post` or `none`.
    package var authMethod: String
    package var scopeSeparator: String
    package var tokenParams: [String: String]

    package init(
        clientID: String, clientSecret: String?, tokenURL: String, authMethod: String = "client_secret_basic",
        scopeSeparator: String = " ", tokenParams: [String: String] = [:], nextClientSecret: String? = nil
    ) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.nextClientSecret = nextClientSecret
        self.tokenURL = tokenURL
        self.authMethod = authMethod
        self.scopeSeparator = scopeSeparator
        self.tokenParams = tokenParams
    }

    /// From the sealed value of an `oauth_client` (as CredentialValidator normalised it).
    package init?(sealedValue value: [String: JSONValue]) {
        guard let clientID = value["client_id"]?.stringValue, let tokenURL = value["token_url"]?.stringValue else {
            return nil
        }
        var params: [String: String] = [:]
        if case .object(let object)? = value["token_params"] {
            for (key, value) in object { if let text = value.stringValue { params[key] = text } }
        }
        self.init(
            clientID: clientID, clientSecret: value["client_secret"]?.stringValue, tokenURL: tokenURL,
            authMethod: value["token_auth_method"]?.stringValue ?? "client_secret_basic",
            scopeSeparator: value["scope_separator"]?.stringValue ?? " ", tokenParams: params,
            nextClientSecret: value["client_secret_next"]?.stringValue)
    }

    /// The token endpoint's host, which bounds concurrent calls per provider.
    package var tokenHost: String {
        URL(string: self.tokenURL)?.host?.lowercased() ?? self.tokenURL
    }
}

/// Calls providers' token endpoints (RFC 6749 sections 4.1.3, 4.4 and 6).
/// Always sends `Accept: application/json`, bounds every response body and
/// every request in time, and never lets a provider's body escape: results
/// are tokens or a `TokenFailure`.
package struct TokenEndpointClient: Sendable {
    let http: HTTPClient
    package let timeout: Duration
    /// Token responses are small; anything bigger is not a token response.
    static let maxBodyBytes = 256 * 1024

    package init(http: HTTPClient, timeout: Duration = .seconds(15)) {
        self.http = http
        self.timeout = timeout
    }

    package func refresh(
        _ client: OAuthClientConfiguration, refreshToken: String, scopes: [String]? = nil
    ) async -> Result<TokenSet, TokenFailure> {
        var form = ["grant_type": "refresh_token", "refresh_token": refreshToken]
        if let scopes, !scopes.isEmpty { form["scope"] = scopes.joined(separator: client.scopeSeparator) }
        return await self.request(client, form: form)
    }

    package func clientCredentials(
        _ client: OAuthClientConfiguration, scopes: [String]? = nil
    ) async -> Result<TokenSet, TokenFailure> {
        var form = ["grant_type": "client_credentials"]
        if let scopes, !scopes.isEmpty { form["scope"] = scopes.joined(separator: client.scopeSeparator) }
        return await self.request(client, form: form)
    }

    package func exchangeCode(
        _ client: OAuthClientConfiguration, code: String, redirectURI: String, codeVerifier: String?
    ) async -> Result<TokenSet, TokenFailure> {
        var form = ["grant_type": "authorization_code", "code": code, "redirect_uri": redirectURI]
        if let codeVerifier { form["code_verifier"] = codeVerifier }
        return await self.request(client, form: form)
    }

    /// Sends a grant with the newest client secret; if the provider answers
    /// `invalid_client` to a secret being rolled in, once more with the
    /// current one.
    private func request(
        _ client: OAuthClientConfiguration, form: [String: String]
    ) async -> Result<TokenSet, TokenFailure> {
        guard let next = client.nextClientSecret, client.authMethod != "none" else {
            return await self.send(client, secret: client.clientSecret, form: form)
        }
        let result = await self.send(client, secret: next, form: form)
        if case .failure(.rejected(let code)) = result, code == "invalid_client" || code == "http_401" {
            return await self.send(client, secret: client.clientSecret, form: form)
        }
        return result
    }

    private func send(
        _ client: OAuthClientConfiguration, secret: String?, form: [String: String]
    ) async -> Result<TokenSet, TokenFailure> {
        var fields = client.tokenParams.merging(form) { _, grant in grant }
        var request = HTTPClientRequest(url: client.tokenURL)
        request.method = .POST
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "User-Agent", value: "latchkey")
        switch client.authMethod {
        case "client_secret_post":
            fields["client_id"] = client.clientID
            fields["client_secret"] = secret ?? ""
        case "none":
            fields["client_id"] = client.clientID
        default:
            // RFC 6749 2.3.1: each part form-encoded before base64.
            let pair = "\(FormEncoding.encode(client.clientID)):\(FormEncoding.encode(secret ?? ""))"
            request.headers.add(name: "Authorization", value: "Basic \(Data(pair.utf8).base64EncodedString())")
        }
        request.body = .bytes(ByteBuffer(string: FormEncoding.encode(fields)))
        do {
            let response = try await self.http.execute(request, timeout: .init(self.timeout))
            let body = try await response.body.collect(upTo: Self.maxBodyBytes)
            return TokenResponseParser.parse(
                status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"),
                retryAfter: response.headers.first(name: "Retry-After"), body: Array(buffer: body))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            return .failure(.unavailable(reason: "timed out after \(self.timeout)", retryAfter: nil))
        } catch is NIOTooManyBytesError {
            return .failure(.malformed(reason: "the response is larger than \(Self.maxBodyBytes) bytes"))
        } catch {
            // Connection refused, DNS, TLS: the type names the trouble without quoting anything.
            return .failure(
                .unavailable(reason: "cannot reach the token endpoint (\(type(of: error)))", retryAfter: nil))
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// `application/x-www-form-urlencoded`, strict: everything but RFC 3986's
/// unreserved characters is percent-encoded (Foundation's URLComponents leaves
/// `+` and `&` alone in values, which corrupts secrets containing them).
package enum FormEncoding {
    package static func encode(_ fields: [String: String]) -> String {
        fields.sorted { $0.key < $1.key }.map { "\(Self.encode($0.key))=\(Self.encode($0.value))" }.joined(
            separator: "&")
    }

    package static func encode(_ text: String) -> String {
        var encoded = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                encoded += String(format: "%%%02X", byte)
            }
        }
        return encoded
    }
}
