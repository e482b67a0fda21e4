import Foundation
import Hummingbird
import LatchkeyCore
import LatchkeyStore

/// `/v1/keys`: mint (the full key appears in this one response), list, revoke.
struct KeyController {
    let keys: KeyStore
    let maxEphemeralTTL: Duration
    let now: @Sendable () -> Date

    /// Ephemeral keys live this long unless `ttl_seconds` says otherwise (SPEC section 3).
    static let defaultEphemeralTTL = 600

    func addMintRoute(to group: RouterGroup<LatchkeyRequestContext>) {
        group.post("keys", use: self.mint)
    }

    func addRoutes(to group: RouterGroup<LatchkeyRequestContext>) {
        group.get("keys", use: self.list)
        group.delete("keys/:id", use: self.revoke)
    }

    @Sendable func mint(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        var fields = try JSONFields(body: await APIJSON.body(request), subject: "an API key")
        let name = try fields.requiredString("name", maxBytes: 128)
        let roleName = try fields.requiredString("role")
        guard let role = APIKeyRole(rawValue: roleName) else {
            throw LatchkeyError.validation("role", "must be one of \(APIKeyRole.allNames)")
        }
        guard let vaultList = try fields.optionalStringArray("vaults"), !vaultList.isEmpty else {
            throw LatchkeyError.validation("vaults", "is required: a list of vault names, or [\"*\"] for all vaults")
        }
        let vaults: Set<String>?
        if vaultList == ["*"] {
            vaults = nil
        } else {
            guard !vaultList.contains("*") else { throw LatchkeyError.validation("vaults", "'*' must stand alone") }
            guard vaultList.allSatisfy(Names.isValidVaultName) else {
                throw LatchkeyError.validation("vaults", "every entry must be a vault name or '*'")
            }
            vaults = Set(vaultList)
        }
        var credentials: Set<String>?
        if let names = try fields.optionalStringArray("credentials") {
            guard !names.isEmpty, names.allSatisfy(Names.isValidCredentialName) else {
                throw LatchkeyError.validation("credentials", "must be a non-empty list of credential names")
            }
            credentials = Set(names)
        }
        var allowlist: [CIDR]?
        if let entries = try fields.optionalStringArray("ip_allowlist") {
            guard !entries.isEmpty, entries.count <= 64 else {
                throw LatchkeyError.validation("ip_allowlist", "must list between 1 and 64 CIDR blocks")
            }
            allowlist = try entries.map { entry in
                guard let block = CIDR(entry) else {
                    throw LatchkeyError.validation(
                        "ip_allowlist", "'\(entry.prefix(64))' is not an IPv4 or IPv6 CIDR block")
                }
                return block
            }
        }
        var ttl: Duration?
        if let raw = fields.take("ttl_seconds") {
            let maximum = Int(self.maxEphemeralTTL.components.seconds)
            guard case .number(let seconds) = raw, seconds == seconds.rounded(), seconds >= 1,
                seconds <= Double(maximum)
            else {
                throw LatchkeyError.validation("ttl_seconds", "must be a whole number of seconds from 1 to \(maximum)")
            }
            ttl = .seconds(Int(seconds))
        }
        if let ephemeral = try fields.optionalBool("ephemeral") {
            if ephemeral && ttl == nil { ttl = .seconds(Self.defaultEphemeralTTL) }
            if !ephemeral && ttl != nil {
                throw LatchkeyError.validation("ephemeral", "a key with ttl_seconds is ephemeral")
            }
        }
        let description = try fields.optionalString("description", allowEmpty: true, maxBytes: 1024) ?? ""
        try fields.refuseLeftovers()

        let scope = AccessScope(vaults: vaults, credentials: credentials)
        guard context.caller.scope.contains(scope) else {
            throw LatchkeyError.forbidden("A key can only mint keys within its own vaults and credentials.")
        }
        let (info, key) = try await self.keys.mint(
            MintRequest(name: name, description: description, role: role, scope: scope, allowlist: allowlist, ttl: ttl),
            by: context.caller, now: self.now())
        var response = try APIJSON.response(MintedKey(info: info, key: key), status: .created)
        response.headers[.location] = "/v1/keys/\(info.id)"
        // The key is in this body only: keep it out of every cache.
        response.headers[.cacheControl] = "no-store"
        return response
    }

    @Sendable func list(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        try APIJSON.response(Page(items: try await self.keys.list(now: self.now()), nextCursor: nil))
    }

    @Sendable func revoke(_ request: Request, context: LatchkeyRequestContext) async throws -> Response {
        let text = context.parameters.get("id") ?? ""
        guard let id = UUID(uuidString: text) else {
            throw LatchkeyError(.invalidParameter, "'\(text.prefix(64))' is not a key id.", field: "id")
        }
        return try APIJSON.response(try await self.keys.revoke(id: id, by: context.caller, now: self.now()))
    }
}

/// The creation response: the key's metadata plus, this once, the key.
struct MintedKey: Encodable {
    let info: APIKeyInfo
    let key: String

    func encode(to encoder: any Encoder) throws {
        try self.info.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.key, forKey: .key)
    }

    enum CodingKeys: String, CodingKey { case key }
}
