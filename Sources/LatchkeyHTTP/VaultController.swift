import Foundation
import Hummingbird
import LatchkeyCore
import LatchkeyStore

/// `/v1/vaults`: list and create namespaces, with per-vault statistics.
struct VaultController {
    let store: VaultStore

    func addListRoute(to group: RouterGroup<LatchkeyRequestContext>) {
        group.get("vaults", use: self.list)
    }

    func addCreateRoute(to group: RouterGroup<LatchkeyRequestContext>) {
        group.post("vaults", use: self.create)
    }

    func addVaultRoutes(to group: RouterGroup<LatchkeyRequestContext>) {
        group.get("vaults/:vault", use: self.get)
        group.patch("vaults/:vault", use: self.update)
    }

    /// Every vault the caller's key is scoped to.
    @Sendable func list(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let scope = context.caller.scope
        let visible = try await self.store.listVaults().filter { scope.allows(vault: $0.name) }
        return try APIJSON.response(Page(items: visible, nextCursor: nil))
    }

    @Sendable func get(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let vault = try Parameters(request: request, context: context).vault()
        return try APIJSON.response(try await self.store.vault(named: vault))
    }

    @Sendable func create(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "a vault")
        let name = try fields.requiredString("name")
        guard Names.isValidVaultName(name) else {
            throw LatchkeyError.validation(
                "name", "must start with a letter and hold only letters, digits, '_' and '-' (at most 64)")
        }
        let description = try fields.optionalString("description", allowEmpty: true, maxBytes: 1024) ?? ""
        try fields.refuseLeftovers()
        let vault = try await self.store.createVault(name: name, description: description, by: context.caller)
        var response = try APIJSON.response(vault, status: .created)
        response.headers[.location] = "/v1/vaults/\(name)"
        return response
    }

    /// `PATCH /v1/vaults/{vault}` with `{"connect_return_urls": [...]}`: the
    /// absolute http(s) URLs connect sessions in this vault may send browsers
    /// back to (exact matches; never an open redirect).
    @Sendable func update(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let vault = try Parameters(request: request, context: context).vault()
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "a vault update")
        guard let urls = try fields.optionalStringArray("connect_return_urls") else {
            throw LatchkeyError.validation("connect_return_urls", "is required (the only field PATCH changes)")
        }
        try fields.refuseLeftovers()
        for url in urls {
            guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
                scheme == "https" || scheme == "http", parsed.host?.isEmpty == false, url.utf8.count <= 2048
            else {
                throw LatchkeyError.validation("connect_return_urls", "every entry must be an absolute http(s) URL")
            }
        }
        try await self.store.setConnectReturnURLs(vault: vault, urls: urls, by: context.caller)
        return try APIJSON.response([
            "vault": JSONValue.string(vault), "connect_return_urls": .array(urls.map(JSONValue.string)),
        ])
    }
}
