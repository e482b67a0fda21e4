import Foundation
import HTTPTypes
import Hummingbird
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyOAuth
import LatchkeyStore

/// The browser connect flow (SPEC section 4, "Connect"):
///
/// 1. `POST /v1/vaults/{vault}/connect-sessions` (admin or `connect` key)
///    answers a one-time `connect_url`.
/// 2. `GET /connect/{token}` shows what will be connected, with a Connect
///    button (`?auto=1` goes straight on); `POST /connect/{token}` starts the
///    authorization: a fresh `state` and PKCE verifier, then a redirect to
///    the provider.
/// 3. `GET /oauth/callback` checks `state` (single use, ten minutes),
///    exchanges the code with the verifier, stores the tokens as an `oauth`
///    credential, and shows a page or returns to the vault's allowed URL.
///
/// Every failure is a page that stores nothing and escapes what it shows.
struct ConnectController: Sendable {
    let store: VaultStore
    let tokens: TokenEndpointClient
    let publicURL: String?
    let sessionLifetime: Duration
    let refreshWindow: Duration
    let now: @Sendable () -> Date

    static let stateLifetime: TimeInterval = 600

    func addAPIRoutes(to group: RouterGroup<LatchkeyRequestContext>) {
        group.post("vaults/{vault}/connect-sessions", use: self.createSession)
    }

    func addBrowserRoutes(to router: Router<LatchkeyRequestContext>) {
        router.get("connect/{token}", use: self.start)
        router.post("connect/{token}", use: self.authorize)
        router.get("oauth/callback", use: self.callback)
    }

    var redirectURI: String? { self.publicURL.map { $0.trimmingSuffix("/") + "/oauth/callback" } }

    // MARK: API

    @Sendable func createSession(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let caller = context.caller
        let vault = try Parameters(request: request, context: context).vault()
        guard caller.role == .admin || caller.role == .connect, !caller.isBootstrapSecret else {
            throw LatchkeyError.forbidden("Only admin and connect keys create connect sessions.")
        }
        guard caller.scope.allows(vault: vault) else {
            throw LatchkeyError.forbidden("This key is not scoped to vault '\(vault.prefix(64))'.")
        }
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "a connect session")
        let client = try fields.requiredString("client")
        let credential = try fields.requiredString("credential")
        guard Names.isValidCredentialName(credential) else {
            throw LatchkeyError.validation(
                "credential", "must start with a letter and hold only letters, digits and '_' (at most 128)")
        }
        guard caller.scope.allows(vault: vault, credential: credential) else {
            throw LatchkeyError.forbidden("This key is not scoped to credential '\(credential)'.")
        }
        let scopes = try fields.optionalStringArray("scopes")
        let returnURL = try fields.optionalString("return_url", maxBytes: 2048)
        try fields.refuseLeftovers()
        guard let redirectURI = self.redirectURI else {
            throw LatchkeyError(
                .validationFailed,
                "LATCHKEY_PUBLIC_URL is not set, so there is no callback URL to register with the provider.")
        }
        let token = OneTimeSecret.make()
        let expiresAt = self.now().addingTimeInterval(RefreshPolicy.seconds(self.sessionLifetime))
        let id = try await self.store.createConnectSession(
            vault: vault, client: client, credential: credential, scopes: scopes, returnURL: returnURL,
            tokenHash: OneTimeSecret.hash(token), expiresAt: expiresAt, by: caller)
        let base = redirectURI.dropLast("/oauth/callback".count)
        let body: [String: JSONValue] = [
            "id": .string(id.lowercasedString), "connect_url": .string("\(base)/connect/\(token)"),
            "expires_at": .string(ISO8601DateFormatter().string(from: expiresAt)),
            "redirect_uri": .string(redirectURI),
        ]
        return try APIJSON.response(body, status: .created)
    }

    // MARK: Browser

    @Sendable func start(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let session: ConnectSession
        switch try await self.openSession(context) {
        case .success(let found): session = found
        case .failure(let page): return page.response
        }
        if request.uri.queryParameters.get("auto") == "1" { return try await self.redirect(session) }
        return ConnectPages.start(
            provider: Self.providerName(session), vault: session.vault, credential: session.credential,
            scopes: self.scopes(session), action: request.uri.path)
    }

    @Sendable func authorize(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        switch try await self.openSession(context) {
        case .success(let session): return try await self.redirect(session)
        case .failure(let page): return page.response
        }
    }

    @Sendable func callback(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        guard let state = query.get("state"), !state.isEmpty, state.utf8.count <= 256 else {
            return ConnectPages.failure(
                status: .badRequest, title: "Missing state",
                message:
                    "This page was opened without the state Latchkey sent to the provider. Start again from your connect link.",
                detail: nil)
        }
        let claimed = try await self.store.claimState(stateHash: OneTimeSecret.hash(state), now: self.now())
        let session: ConnectSession
        let verifier: String?
        switch claimed {
        case .failure(.unknown):
            return ConnectPages.failure(
                status: .badRequest, title: "Unknown sign-in attempt",
                message: "Latchkey does not know this sign-in attempt. Start again from your connect link.", detail: nil
            )
        case .failure(.expired):
            return ConnectPages.failure(
                status: .gone, title: "This link has expired",
                message: "The sign-in took longer than Latchkey allows. Ask for a new connect link.", detail: nil)
        case .failure(.used):
            return ConnectPages.failure(
                status: .conflict, title: "Already used",
                message: "This connect link has already been used. Ask for a new one to connect again.", detail: nil)
        case .success(let found):
            (session, verifier) = found
        }
        if let error = query.get("error") {
            try? await self.store.recordAudit(
                action: .connectComplete, vault: session.vault, credential: session.credential, by: .system,
                outcome: .failure, detail: ["provider_error": .string(String(error.prefix(64)))])
            return ConnectPages.failure(
                status: .badRequest, title: "Not connected",
                message: "\(Self.providerName(session)) did not grant access, so nothing was stored.",
                detail: "The provider answered: \(error.prefix(64))")
        }
        guard let code = query.get("code"), !code.isEmpty, let redirectURI = self.redirectURI,
            let client = OAuthClientConfiguration(sealedValue: session.client)
        else {
            return ConnectPages.failure(
                status: .badRequest, title: "Not connected",
                message: "The provider sent no authorization code, so nothing was stored. Ask for a new connect link.",
                detail: nil)
        }
        let issued: TokenSet
        switch await self.tokens.exchangeCode(client, code: code, redirectURI: redirectURI, codeVerifier: verifier) {
        case .success(let tokens):
            issued = tokens
        case .failure(let failure):
            let detail: String =
                switch failure {
                case .rejected(let code): "The provider answered \(code)."
                case .unavailable(let reason, _), .malformed(let reason): reason
                }
            try? await self.store.recordAudit(
                action: .connectComplete, vault: session.vault, credential: session.credential, by: .system,
                outcome: .failure, detail: ["reason": .string(detail)])
            return ConnectPages.failure(
                status: .badGateway, title: "Not connected",
                message:
                    "\(Self.providerName(session)) did not accept the sign-in, so nothing was stored. Ask for a new connect link.",
                detail: detail)
        }
        let granted = issued.scopes ?? self.scopes(session)
        let value = issued.oauthValue(client: session.clientName, requestedScopes: self.scopes(session))
        let actor = Principal.connect(session: session.id)
        if try await self.exists(session) {
            _ = try await self.store.rotate(
                vault: session.vault, name: session.credential, value: .object(value),
                providerFields: issued.providerFields, by: actor, now: self.now())
        } else {
            var validated = try CredentialValidator.validate(type: .oauth, value: .object(value), now: self.now())
            if !issued.providerFields.isEmpty {
                validated.attributes["provider_fields"] = .object(issued.providerFields)
            }
            _ = try await self.store.createCredential(
                vault: session.vault, name: session.credential, type: .oauth, description: "Connected in a browser",
                value: validated, by: actor, now: self.now())
        }
        try? await self.store.recordAudit(
            action: .connectComplete, vault: session.vault, credential: session.credential, by: actor,
            outcome: .success, detail: ["client": .string(session.clientName)])
        if let returnURL = session.returnURL {
            var headers = ConnectPages.securityHeaders
            headers[.location] = returnURL
            return Response(status: .seeOther, headers: headers)
        }
        return ConnectPages.success(
            provider: Self.providerName(session), vault: session.vault, credential: session.credential,
            scopes: granted)
    }

    // MARK: Steps

    private func openSession(_ context: LatchkeyRequestContext) async throws -> Result<ConnectSession, PageError> {
        let token = context.parameters.get("token") ?? ""
        guard (20...128).contains(token.utf8.count),
            let session = try await self.store.connectSession(tokenHash: OneTimeSecret.hash(token))
        else {
            return .failure(
                PageError(
                    ConnectPages.failure(
                        status: .notFound, title: "Unknown connect link",
                        message: "This connect link is not valid. Ask for a new one.", detail: nil)))
        }
        if session.usedAt != nil {
            return .failure(
                PageError(
                    ConnectPages.failure(
                        status: .conflict, title: "Already used",
                        message: "This connect link has already been used. Ask for a new one to connect again.",
                        detail: nil)))
        }
        if session.expiresAt <= self.now() {
            return .failure(
                PageError(
                    ConnectPages.failure(
                        status: .gone, title: "This link has expired",
                        message: "Connect links are valid for a limited time. Ask for a new one.", detail: nil)))
        }
        return .success(session)
    }

    /// A fresh state and verifier, then 303 to the provider.
    private func redirect(_ session: ConnectSession) async throws -> Response {
        guard let authorizationURL = session.client["authorization_url"]?.stringValue,
            var components = URLComponents(string: authorizationURL), let redirectURI = self.redirectURI,
            let clientID = session.client["client_id"]?.stringValue
        else {
            return ConnectPages.failure(
                status: .unprocessableContent, title: "Cannot connect",
                message:
                    "The OAuth client '\(session.clientName)' has no authorization URL, so a browser cannot sign in with it.",
                detail: nil)
        }
        let state = OneTimeSecret.make()
        let usesPKCE = session.client["pkce"] != .bool(false)
        let verifier = PKCE.makeVerifier()
        try await self.store.beginAuthorization(
            session, stateHash: OneTimeSecret.hash(state),
            stateExpiresAt: self.now().addingTimeInterval(Self.stateLifetime), verifier: usesPKCE ? verifier : "")
        var parameters: [(String, String)] = [
            ("response_type", "code"), ("client_id", clientID), ("redirect_uri", redirectURI), ("state", state),
        ]
        let scopes = self.scopes(session)
        if !scopes.isEmpty {
            parameters.append(
                ("scope", scopes.joined(separator: session.client["scope_separator"]?.stringValue ?? " ")))
        }
        if usesPKCE {
            parameters.append(("code_challenge", PKCE.challenge(for: verifier)))
            parameters.append(("code_challenge_method", "S256"))
        }
        if case .object(let extra)? = session.client["authorize_params"] {
            for (name, value) in extra.sorted(by: { $0.key < $1.key }) {
                if let text = value.stringValue { parameters.append((name, text)) }
            }
        }
        let existing = components.percentEncodedQuery.map { $0 + "&" } ?? ""
        components.percentEncodedQuery =
            existing
            + parameters.map { FormEncoding.encode($0.0) + "=" + FormEncoding.encode($0.1) }.joined(separator: "&")
        var headers = ConnectPages.securityHeaders
        headers[.location] = components.string ?? authorizationURL
        return Response(status: .seeOther, headers: headers)
    }

    private func scopes(_ session: ConnectSession) -> [String] {
        if let scopes = session.scopes { return scopes }
        guard case .array(let defaults)? = session.client["scopes"] else { return [] }
        return defaults.compactMap(\.stringValue)
    }

    private func exists(_ session: ConnectSession) async throws -> Bool {
        do {
            return try await self.store.credentialType(vault: session.vault, name: session.credential) == .oauth
        } catch let error as LatchkeyError where error.code == .credentialNotFound {
            return false
        }
    }

    private static func providerName(_ session: ConnectSession) -> String {
        if let provider = session.client["provider"]?.stringValue,
            let preset = ProviderPresets.all.first(where: { $0.name == provider })
        {
            return preset.displayName
        }
        return session.clientName
    }
}

/// A failure page, carried through a `Result`.
struct PageError: Error {
    let response: Response
    init(_ response: Response) { self.response = response }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        self.hasSuffix(suffix) ? String(self.dropLast(suffix.count)) : self
    }
}
