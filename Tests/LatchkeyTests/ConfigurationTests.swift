import Foundation
import LatchkeyApp
import Testing

@Suite("Configuration: every LATCHKEY_* variable, its flag and its README row")
struct ConfigurationTests {

    @Test func everySettingHasAFlagAndAReadmeRowAndNothingElseIsRead() async throws {
        let help = try await LatchkeyProcess.run(["serve", "--help"], environment: [:])
        #expect(help.status == 0)
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        for setting in LatchkeyConfiguration.settings {
            #expect(help.stdout.contains(setting.flag + " "), "serve --help lacks \(setting.flag)")
            #expect(readme.contains("| `\(setting.variable)` |"), "README's table lacks \(setting.variable)")
        }
        // Every LATCHKEY_* name the server's sources read is a documented setting.
        let documented = Set(LatchkeyConfiguration.settings.map(\.variable))
        let pattern = try Regex(#"LATCHKEY_[A-Z_]+[A-Z]"#)
        for target in ["LatchkeyApp", "LatchkeyCLI", "LatchkeyHTTP", "LatchkeyStore", "LatchkeyRefresher"] {
            let directory = repositoryRoot.appendingPathComponent("Sources/\(target)")
            for case let file as URL in FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)!
            where file.pathExtension == "swift" {
                let source = try String(contentsOf: file, encoding: .utf8)
                for match in source.matches(of: pattern) where !documented.contains(String(source[match.range])) {
                    // The CLI's client commands read where to reach a server, not server settings.
                    guard target == "LatchkeyCLI",
                        ["LATCHKEY_URL", "LATCHKEY_KEY"].contains(String(source[match.range]))
                    else {
                        Issue.record(
                            "\(file.lastPathComponent) reads \(source[match.range]), which is not a documented setting")
                        continue
                    }
                }
            }
        }
    }

    /// A real process, as an operator would start it: a non-zero exit and one
    /// line that names the variable, for a variable or for its flag.
    @Test(arguments: [
        (["serve"], ["LATCHKEY_DATABASE_URL": "http://db.example/latchkey"], "LATCHKEY_DATABASE_URL"),
        (["serve"], ["LATCHKEY_REFRESH_WINDOW": "soon"], "LATCHKEY_REFRESH_WINDOW"),
        (["serve"], ["LATCHKEY_DATABASE_TIMEOUT": "5 seconds"], "LATCHKEY_DATABASE_TIMEOUT"),
        (["serve"], ["LATCHKEY_MASTER_KEY": "abcd"], "LATCHKEY_MASTER_KEY"),
        (["serve"], ["LATCHKEY_PUBLIC_URL": "latchkey.example.com"], "LATCHKEY_PUBLIC_URL"),
        (["serve", "--shutdown-grace", "forever"], [:], "LATCHKEY_SHUTDOWN_GRACE"),
        (["serve", "--admin-secret-file", "/nonexistent/secret"], [:], "LATCHKEY_ADMIN_SECRET"),
        (["refresher", "--provider-timeout", "0s"], [:], "LATCHKEY_PROVIDER_TIMEOUT"),
        (["migrate", "--database-url", "postgres://host-only"], [:], "LATCHKEY_DATABASE_URL"),
        // Nothing listens on port 1: a clear line after the timeout, not a silent minute.
        (["migrate", "--database-timeout", "1s"], [:], "LATCHKEY_DATABASE_URL"),
    ])
    func aBadSettingStopsStartUpWithOneLineNamingIt(
        arguments: [String], environment: [String: String], variable: String
    ) async throws {
        let base = [
            "LATCHKEY_DATABASE_URL": "postgres://u@127.0.0.1:1/none",
            "LATCHKEY_MASTER_KEY": String(repeating: "ab", count: 32),
        ]
        let result = try await LatchkeyProcess.run(arguments, environment: base.merging(environment) { $1 })
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        #expect(lines.count == 1, "\(result.output)")
        #expect(lines.first?.contains(variable) == true, "\(result.output)")
    }

    /// serve logs while it starts; what matters is the exit and the last line.
    @Test func serveWithoutADatabaseStopsAfterTheTimeoutNamingTheURL() async throws {
        let result = try await LatchkeyProcess.run(
            ["serve", "--database-timeout", "1s", "--listen", "127.0.0.1:0"],
            environment: [
                "LATCHKEY_DATABASE_URL": "postgres://u@127.0.0.1:1/none",
                "LATCHKEY_MASTER_KEY": String(repeating: "ab", count: 32),
            ])
        #expect(result.status != 0)
        let last = result.stderr.split(separator: "\n").last ?? ""
        #expect(last.contains("LATCHKEY_DATABASE_URL: no PostgreSQL answered at 127.0.0.1:1"), "\(result.output)")
    }

    @Test func durationsTakeUnitsAndBareSecondsAndNothingElse() {
        #expect(LatchkeyConfiguration.parseDuration("30") == .seconds(30))
        #expect(LatchkeyConfiguration.parseDuration("30s") == .seconds(30))
        #expect(LatchkeyConfiguration.parseDuration("250ms") == .milliseconds(250))
        #expect(LatchkeyConfiguration.parseDuration("5m") == .seconds(300))
        #expect(LatchkeyConfiguration.parseDuration("2h") == .seconds(7_200))
        for bad in ["", "s", "1.5s", "-1s", "5 m", "5d", "１s", "99999999999s", "1e3"] {
            #expect(LatchkeyConfiguration.parseDuration(bad) == nil, "\(bad)")
        }
    }
}
