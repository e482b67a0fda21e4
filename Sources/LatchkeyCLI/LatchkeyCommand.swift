package import ArgumentParser

/// `latchkey`: the server, its maintenance commands, and an admin client.
package struct LatchkeyCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "latchkey",
        abstract: "An encrypted vault for the credentials agents and services use to call third-party APIs.",
        discussion: """
            Server commands (serve, refresher, migrate, rekey) read LATCHKEY_* environment variables; see the README.
            keys works straight against the database (bootstrap and recovery).
            Client commands (credential) talk to a running server: --url / LATCHKEY_URL and --key / LATCHKEY_KEY.
            """,
        subcommands: [Serve.self, Refresher.self, Migrate.self, Rekey.self, KeysCommand.self, CredentialCommand.self]
    )

    package init() {}
}
