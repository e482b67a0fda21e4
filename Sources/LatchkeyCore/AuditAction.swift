/// The audit log's action names: one place, so filters and writers agree.
package enum AuditAction: String, Sendable, CaseIterable {
    case credentialCreate = "credential.create"
    case credentialRead = "credential.read"
    case credentialUpdate = "credential.update"
    case credentialRotate = "credential.rotate"
    case credentialRefresh = "credential.refresh"
    case credentialDelete = "credential.delete"
    case vaultCreate = "vault.create"
    case vaultUpdate = "vault.update"
    case connectStart = "connect.start"
    case connectComplete = "connect.complete"
    case authFailure = "auth.failure"
    case authBlocked = "auth.ip_blocked"
    case keyMint = "key.mint"
    case keyRevoke = "key.revoke"
    case keyExpire = "key.expire"
    case rekey = "keyring.rekey"
}
