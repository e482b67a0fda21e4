/// Who is making a call: recorded as `created_by` and as the audit actor.
///
/// Never holds key material: a bootstrap-secret caller is `admin-secret`, a CLI
/// call straight against the database is `cli`, an API key is named by its
/// display prefix.
package struct Principal: Sendable, Hashable {
    package let name: String

    package init(name: String) { self.name = name }

    package static let adminSecret = Principal(name: "admin-secret")
    package static let cli = Principal(name: "cli")
    package static let system = Principal(name: "system")
    package static let anonymous = Principal(name: "anonymous")
}
