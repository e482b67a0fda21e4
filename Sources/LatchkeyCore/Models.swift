package import struct Foundation.Date

/// A credential as the admin API shows it: everything but the value.
package struct CredentialMetadata: Sendable, Hashable, Encodable {
    package var id: String
    package var vault: String
    package var name: String
    package var type: CredentialType
    package var description: String
    package var status: CredentialStatus
    package var createdAt: Date
    package var createdBy: String
    package var updatedAt: Date
    package var lastRotatedAt: Date
    /// Non-secret fields of the value (an API key's header name, a client's token URL).
    package var attributes: [String: JSONValue]
    // OAuth types only (nil, and so absent from the JSON, for the others).
    package var client: String?
    package var scopes: [String]?
    package var expiresAt: Date?
    package var lastRefreshedAt: Date?
    package var nextRefreshAt: Date?
    /// In back-off: when the refresher tries again.
    package var nextAttemptAt: Date?
    package var refreshFailures: Int?
    package var lastError: String?
    // Filled in by single-credential reads.
    package var referencedBy: [String]?
    package var usage: CredentialUsage?

    package init(
        id: String, vault: String, name: String, type: CredentialType, description: String, status: CredentialStatus,
        createdAt: Date, createdBy: String, updatedAt: Date, lastRotatedAt: Date, attributes: [String: JSONValue],
        client: String? = nil, scopes: [String]? = nil, expiresAt: Date? = nil, lastRefreshedAt: Date? = nil,
        nextRefreshAt: Date? = nil, nextAttemptAt: Date? = nil, refreshFailures: Int? = nil, lastError: String? = nil,
        referencedBy: [String]? = nil, usage: CredentialUsage? = nil
    ) {
        self.id = id
        self.vault = vault
        self.name = name
        self.type = type
        self.description = description
        self.status = status
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.updatedAt = updatedAt
        self.lastRotatedAt = lastRotatedAt
        self.attributes = attributes
        self.client = client
        self.scopes = scopes
        self.expiresAt = expiresAt
        self.lastRefreshedAt = lastRefreshedAt
        self.nextRefreshAt = nextRefreshAt
        self.nextAttemptAt = nextAttemptAt
        self.refreshFailures = refreshFailures
        self.lastError = lastError
        self.referencedBy = referencedBy
        self.usage = usage
    }

    enum CodingKeys: String, CodingKey {
        case id, vault, name, type, description, status, attributes, client, scopes, usage
        case createdAt = "created_at"
        case createdBy = "created_by"
        case updatedAt = "updated_at"
        case lastRotatedAt = "last_rotated_at"
        case expiresAt = "expires_at"
        case lastRefreshedAt = "last_refreshed_at"
        case nextRefreshAt = "next_refresh_at"
        case nextAttemptAt = "next_attempt_at"
        case refreshFailures = "refresh_failures"
        case lastError = "last_error"
        case referencedBy = "referenced_by"
    }
}

/// How much a credential has been used (aggregated per day by the injection path).
package struct CredentialUsage: Sendable, Hashable, Encodable {
    package var totalCalls: Int
    package var callsLast7Days: Int
    package var lastUsedAt: Date?

    package init(totalCalls: Int, callsLast7Days: Int, lastUsedAt: Date?) {
        self.totalCalls = totalCalls
        self.callsLast7Days = callsLast7Days
        self.lastUsedAt = lastUsedAt
    }

    enum CodingKeys: String, CodingKey {
        case totalCalls = "total_calls"
        case callsLast7Days = "calls_last_7_days"
        case lastUsedAt = "last_used_at"
    }
}

/// A vault (namespace) with its statistics.
package struct VaultInfo: Sendable, Hashable, Encodable {
    package var id: String
    package var name: String
    package var description: String
    package var createdAt: Date
    package var createdBy: String
    package var stats: VaultStats

    package init(id: String, name: String, description: String, createdAt: Date, createdBy: String, stats: VaultStats) {
        self.id = id
        self.name = name
        self.description = description
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.stats = stats
    }

    enum CodingKeys: String, CodingKey {
        case id, name, description, stats
        case createdAt = "created_at"
        case createdBy = "created_by"
    }
}

package struct VaultStats: Sendable, Hashable, Encodable {
    package var totalCredentials: Int
    package var byType: [String: Int]
    package var lastUpdatedAt: Date?

    package init(totalCredentials: Int, byType: [String: Int], lastUpdatedAt: Date? = nil) {
        self.totalCredentials = totalCredentials
        self.byType = byType
        self.lastUpdatedAt = lastUpdatedAt
    }

    enum CodingKeys: String, CodingKey {
        case totalCredentials = "total_credentials"
        case byType = "by_type"
        case lastUpdatedAt = "last_updated_at"
    }
}

/// One append-only audit row. `detail` holds non-secret context only
/// (an error code, a client address, the fields that changed).
package struct AuditEvent: Sendable, Hashable, Encodable {
    package enum Outcome: String, Sendable, Hashable, Codable {
        case success, failure, denied
    }

    package var id: Int64
    package var occurredAt: Date
    package var actor: String
    package var action: String
    package var vault: String?
    package var credential: String?
    package var outcome: Outcome
    package var detail: [String: JSONValue]

    package init(
        id: Int64, occurredAt: Date, actor: String, action: String, vault: String? = nil, credential: String? = nil,
        outcome: Outcome, detail: [String: JSONValue]
    ) {
        self.id = id
        self.occurredAt = occurredAt
        self.actor = actor
        self.action = action
        self.vault = vault
        self.credential = credential
        self.outcome = outcome
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case id, actor, action, vault, credential, outcome, detail
        case occurredAt = "occurred_at"
    }
}

/// A page of results with an opaque cursor for the next one.
package struct Page<Item: Sendable & Encodable>: Sendable, Encodable {
    package var items: [Item]
    package var nextCursor: String?

    package init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }

    enum CodingKeys: String, CodingKey {
        case items
        case nextCursor = "next_cursor"
    }
}
