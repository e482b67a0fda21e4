import Foundation
import Hummingbird
import LatchkeyCore
import LatchkeyOAuth
import LatchkeyRefresher
import LatchkeyStore

/// `/v1/vaults/{vault}/credentials...`: create, list, read metadata, update
/// the description, rotate, delete. No handler ever returns a value.
struct CredentialController {
    let store: VaultStore
    let tokens: TokenEndpointClient
    let refresher: TokenRefresher
    let now: @Sendable () -> Date

    var pasted: PastedTokenValidation { PastedTokenValidation(store: self.store, tokens: self.tokens) }

    func addRoutes(to group: RouterGroup<LatchkeyRequestContext>) {
        group.post("vaults/:vault/credentials", use: self.create)
        group.get("vaults/:vault/credentials", use: self.list)
        group.get("vaults/:vault/credentials/:name", use: self.get)
        group.patch("vaults/:vault/credentials/:name", use: self.update)
        group.delete("vaults/:vault/credentials/:name", use: self.delete)
        group.post("vaults/:vault/credentials/:name/rotate", use: self.rotate)
        group.post("vaults/:vault/credentials/:name/refresh", use: self.refresh)
    }

    @Sendable func create(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let vault = try Parameters(request: request, context: context).vault()
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "a credential")
        let name = try fields.requiredString("name")
        guard Names.isValidCredentialName(name) else {
            throw LatchkeyError.validation(
                "name", "must start with a letter and hold only letters, digits and '_' (at most 128)")
        }
        let typeName = try fields.requiredString("type")
        guard let type = CredentialType(rawValue: typeName) else {
            throw LatchkeyError.validation("type", "'\(typeName.prefix(40))' is not one of \(CredentialType.allNames)")
        }
        guard context.caller.scope.allows(vault: vault, credential: name) else {
            throw LatchkeyError.forbidden("This key is not scoped to credential '\(name)'.")
        }
        let description = try fields.optionalString("description", allowEmpty: true, maxBytes: 1024) ?? ""
        let now = self.now()
        var rawValue = fields.take("value")
        if type == .oauthClient { rawValue = try ProviderPresets.prefill(rawValue) }
        _ = try CredentialValidator.validate(type: type, value: rawValue, now: now)
        try fields.refuseLeftovers()
        var providerFields: [String: JSONValue] = [:]
        if type == .oauth {
            (rawValue, providerFields) = try await self.pasted.validate(
                vault: vault, name: name, value: rawValue, action: .credentialCreate, by: context.caller, now: now)
        }
        var value = try CredentialValidator.validate(type: type, value: rawValue, now: now)
        if !providerFields.isEmpty { value.attributes["provider_fields"] = .object(providerFields) }
        let metadata = try await self.store.createCredential(
            vault: vault, name: name, type: type, description: description, value: value, by: context.caller, now: now)
        var response = try APIJSON.response(metadata, status: .created)
        response.headers[.location] = "/v1/vaults/\(vault)/credentials/\(name)"
        return response
    }

    @Sendable func list(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let vault = try parameters.vault()
        var filter = CredentialListFilter()
        if let type = try parameters.string("type") {
            guard let parsed = CredentialType(rawValue: type) else {
                throw Parameters.invalid("type", "must be one of \(CredentialType.allNames)")
            }
            filter.type = parsed
        }
        filter.nameContains = try parameters.string("q", maxLength: 128)
        if let days = try parameters.integer("stale_days", in: 0...36_500) {
            filter.rotatedBefore = self.now().addingTimeInterval(-Double(days) * 86_400)
        }
        filter.limit = try parameters.integer("limit", in: 1...200) ?? 50
        if let cursor = try parameters.string("cursor") {
            guard let after = Cursor.decode(cursor), Names.isValidCredentialName(after) else {
                throw Parameters.invalid("cursor", "is not a cursor this API returned")
            }
            filter.after = after
        }
        var page = try await self.store.listCredentials(vault: vault, filter: filter)
        page.nextCursor = page.nextCursor.map(Cursor.encode)
        // A key limited to some credentials sees only those (a page may then
        // hold fewer than `limit` items; the cursor still walks every name).
        let scope = context.caller.scope
        page.items.removeAll { !scope.allows(vault: vault, credential: $0.name) }
        return try APIJSON.response(page)
    }

    @Sendable func get(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let (vault, name) = (try parameters.vault(), try parameters.credentialName())
        let metadata = try await self.store.metadata(vault: vault, name: name)
        // SPEC section 6: reading a credential's metadata is audited.
        try await self.store.recordAudit(
            action: .credentialRead, vault: vault, credential: name, by: context.caller, outcome: .success)
        return try APIJSON.response(metadata)
    }

    @Sendable func update(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let (vault, name) = (try parameters.vault(), try parameters.credentialName())
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "a credential update")
        for immutable in ["name", "type", "id", "vault"] where fields.take(immutable) != nil {
            throw LatchkeyError.validation(immutable, "cannot be changed; only 'description' can")
        }
        if fields.take("value") != nil {
            throw LatchkeyError.validation("value", "is changed with POST .../rotate, not PATCH")
        }
        guard let description = try fields.optionalString("description", allowEmpty: true, maxBytes: 1024) else {
            throw LatchkeyError.validation("description", "is required (it is the only field PATCH changes)")
        }
        try fields.refuseLeftovers()
        let metadata = try await self.store.updateDescription(
            vault: vault, name: name, description: description, by: context.caller, now: self.now())
        return try APIJSON.response(metadata)
    }

    @Sendable func rotate(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let (vault, name) = (try parameters.vault(), try parameters.credentialName())
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "a rotation")
        // Only oauth_client values carry `provider`; for any other type the
        // stored type's validation refuses the field.
        var value = try ProviderPresets.prefill(fields.take("value"))
        try fields.refuseLeftovers()
        let now = self.now()
        var providerFields: [String: JSONValue] = [:]
        if try await self.store.credentialType(vault: vault, name: name) == .oauth {
            (value, providerFields) = try await self.pasted.validate(
                vault: vault, name: name, value: value, action: .credentialRotate, by: context.caller, now: now)
        }
        let metadata = try await self.store.rotate(
            vault: vault, name: name, value: value, providerFields: providerFields, by: context.caller, now: now)
        return try APIJSON.response(metadata)
    }

    /// Refreshes an `oauth` or `client_credentials` credential now. The
    /// outcome is recorded whatever it is; a failure is also the answer.
    @Sendable func refresh(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let (vault, name) = (try parameters.vault(), try parameters.credentialName())
        switch try await self.refresher.refreshNow(vault: vault, name: name, by: context.caller) {
        case .refreshed:
            break
        case .backoff(let retryAt, let reason):
            throw LatchkeyError(
                .providerUnavailable,
                "The provider could not refresh '\(name)' (\(reason)); the next attempt is at \(ISO8601DateFormatter().string(from: retryAt))."
            )
        case .needsReauth(let reason):
            throw LatchkeyError(.needsReauth, "'\(name)' needs re-authorisation: \(reason).")
        }
        return try APIJSON.response(try await self.store.metadata(vault: vault, name: name))
    }

    @Sendable func delete(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let parameters = Parameters(request: request, context: context)
        let (vault, name) = (try parameters.vault(), try parameters.credentialName())
        let force = try parameters.bool("force") ?? false
        try await self.store.delete(vault: vault, name: name, force: force, by: context.caller)
        return Response(status: .noContent)
    }
}
