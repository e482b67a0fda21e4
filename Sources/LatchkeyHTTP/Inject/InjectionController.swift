import Foundation
import HTTPTypes
import Hummingbird
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyStore
import NIOCore

/// `GET /v1/inject/{vault}/{name}` and `POST /v1/sign/{vault}/{name}`, for
/// `proxy` keys scoped to the credential (SPEC section 5). The hot path:
/// a warm credential costs no database round trip and no write (usage is
/// aggregated in memory and flushed).
struct InjectionController: Sendable {
    let injector: Injector
    let usage: UsageRecorder
    let now: @Sendable () -> Date

    func addRoutes(to group: RouterGroup<LatchkeyRequestContext>) {
        group.get("inject/{vault}/{name}", use: self.inject)
        // HEAD: the same headers without a body, so nginx can keep its
        // auth_request connections alive (it never reads those bodies).
        group.head("inject/{vault}/{name}") { request, context in
            var response = try await self.inject(request, context: context)
            response.body = .init()
            return response
        }
        group.post("sign/{vault}/{name}", use: self.sign)
        group.post("inject/{vault}/{name}/rejected", use: self.rejected)
    }

    /// `POST /v1/inject/{vault}/{name}/rejected` `{"token_sha256": "<hex>"}`:
    /// the provider refused the token the sidecar was given (an upstream
    /// 401). Refreshes it if it is still current (see
    /// `Injector.reportRejected`) and answers like `GET`, with the token to
    /// retry with.
    @Sendable func rejected(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let (vault, name) = (try parameters.vault(), try parameters.credentialName())
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "a refused-token report")
        let digest = try fields.requiredString("token_sha256")
        guard digest.utf8.count == 64, digest.allSatisfy(\.isHexDigit) else {
            throw LatchkeyError.validation(
                "token_sha256", "must be the SHA-256 of the refused access token, as 64 hexadecimal characters")
        }
        try fields.refuseLeftovers()
        try await self.injector.reportRejected(vault: vault, name: name, tokenSHA256: digest, by: context.caller)
        return try await self.inject(request, context: context)
    }

    /// 200 with the headers to add, as JSON and as response headers (for
    /// nginx's `auth_request_set`).
    @Sendable func inject(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let (vault, name) = (try parameters.vault(), try parameters.credentialName())
        let cache = self.injector.cache
        // Warm: the answer rendered for an earlier request, untouched since.
        if let hit = cache.rendered(vault: vault, name: name, now: self.now()) {
            self.recordUse(hit.credentialID, by: context.caller)
            return Response(status: .ok, headers: hit.headers, body: .init(byteBuffer: hit.body))
        }
        let generation = cache.generation
        let (injection, credential) = try await self.injector.inject(vault: vault, name: name, by: context.caller)
        self.recordUse(credential.id, by: context.caller)
        var body: [String: JSONValue] = [
            "headers": .object(Dictionary(injection.headers.map { ($0.0, .string($0.1)) }) { _, last in last }),
            "expires_at": injection.expiresAt.map { .string(ISO8601DateFormatter().string(from: $0)) } ?? .null,
        ]
        if !injection.query.isEmpty { body["query"] = .object(injection.query.mapValues(JSONValue.string)) }
        let (headers, buffer) = try Self.render(body, headers: injection.headers)
        cache.store(
            RenderedInjection(
                key: vault + "/" + name, credentialID: credential.id, headers: headers, body: buffer,
                validUntil: injection.trace.validUntil, dependencies: injection.trace.dependencies),
            generation: generation)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: buffer))
    }

    /// Signs an AWS request with an `aws_sigv4` credential: the sidecar
    /// sends the method, URL, headers and the body's SHA-256 (never the body)
    /// and gets `Authorization`, `X-Amz-Date` and, with a session token,
    /// `X-Amz-Security-Token` to add.
    @Sendable func sign(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let (vault, name) = (try parameters.vault(), try parameters.credentialName())
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "a request to sign")
        let method = try fields.requiredString("method")
        let urlText = try fields.requiredString("url")
        let payloadHash = try fields.requiredString("payload_sha256")
        var headers: [(String, String)] = []
        switch fields.take("headers") {
        case nil:
            break
        case .object(let given)?:
            for (header, value) in given.sorted(by: { $0.key < $1.key }) {
                guard let text = value.stringValue else {
                    throw LatchkeyError.validation("headers.\(header)", "must be a string")
                }
                headers.append((header, text))
            }
        case let other?:
            throw LatchkeyError.validation(
                "headers", "must be an object of header name to value, not \(other.typeName)")
        }
        try fields.refuseLeftovers()
        guard let url = URLComponents(string: urlText), let host = url.host, !host.isEmpty,
            ["http", "https"].contains(url.scheme?.lowercased() ?? "")
        else {
            throw LatchkeyError.validation("url", "must be an absolute http(s) URL")
        }
        if !headers.contains(where: { $0.0.lowercased() == "host" }) {
            headers.append(("Host", url.port.map { "\(host):\($0)" } ?? host))
        }
        let (credential, value) = try await self.injector.usable(vault: vault, name: name, by: context.caller)
        guard credential.type == .awsSigV4 else {
            throw LatchkeyError.validation(
                "name", "'\(name)' is a \(credential.type.rawValue) credential; only aws_sigv4 signs requests")
        }
        let signature: SigV4Signature
        do {
            signature = try SigV4.sign(
                SigV4Request(
                    method: method, path: url.percentEncodedPath.isEmpty ? "/" : url.percentEncodedPath,
                    query: url.percentEncodedQuery ?? "", headers: headers, payloadSHA256Hex: payloadHash),
                credentials: SigV4Credentials(
                    accessKeyID: value["access_key_id"]?.stringValue ?? "",
                    secretAccessKey: value["secret_access_key"]?.stringValue ?? "",
                    sessionToken: value["session_token"]?.stringValue, region: value["region"]?.stringValue ?? "",
                    service: value["service"]?.stringValue ?? ""),
                date: self.now())
        } catch {
            throw LatchkeyError.validation(Self.signField(error.field), error.message)
        }
        self.recordUse(credential.id, by: context.caller)
        let signed = signature.headers.map { ($0.name, $0.value) }
        let body: [String: JSONValue] = [
            "headers": .object(Dictionary(signed.map { ($0.0, JSONValue.string($0.1)) }) { _, last in last })
        ]
        return try Self.response(body, headers: signed)
    }

    private func recordUse(_ credential: UUID, by principal: Principal) {
        if let key = principal.keyID { self.usage.recordUse(credential: credential, key: key, at: self.now()) }
    }

    /// The signer names fields of its own request model; answer in the API's.
    private static func signField(_ field: String) -> String {
        switch field {
        case "path", "query": "url"
        case "payloadSHA256Hex", "payload": "payload_sha256"
        default: field.hasPrefix("headers") || field.hasPrefix("header") ? "headers" : field
        }
    }

    /// The JSON body, with the same headers on the response itself.
    private static func response(_ body: [String: JSONValue], headers: [(String, String)]) throws -> Response {
        let (fields, buffer) = try Self.render(body, headers: headers)
        return Response(status: .ok, headers: fields, body: .init(byteBuffer: buffer))
    }

    private static func render(
        _ body: [String: JSONValue], headers: [(String, String)]
    ) throws -> (HTTPFields, ByteBuffer) {
        var fields: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        for (header, value) in headers {
            if let field = HTTPField.Name(header) { fields.append(HTTPField(name: field, value: value)) }
        }
        // Secrets: never cached by anything between Latchkey and the sidecar.
        fields[.cacheControl] = "no-store"
        return (fields, ByteBuffer(bytes: try APIJSON.encoder.encode(body)))
    }
}
