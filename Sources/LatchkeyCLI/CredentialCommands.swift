import ArgumentParser
import AsyncHTTPClient
import Foundation
import LatchkeyCore
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// How client commands reach a server.
struct ClientOptions: ParsableArguments {
    @Option(help: "Server base URL (default: $LATCHKEY_URL or http://127.0.0.1:8080).")
    var url: String?

    @Option(help: "API key (default: $LATCHKEY_KEY). Prefer the environment: flags land in shell history.")
    var key: String?

    @Option(help: "Vault name.")
    var vault: String = "default"

    func client() throws -> APIClient {
        let environment = ProcessInfo.processInfo.environment
        let base = self.url ?? environment["LATCHKEY_URL"] ?? "http://127.0.0.1:8080"
        guard let key = self.key ?? environment["LATCHKEY_KEY"], !key.isEmpty else {
            throw ValidationError("no API key: set LATCHKEY_KEY (or pass --key)")
        }
        guard Names.isValidVaultName(self.vault) else {
            throw ValidationError("'\(self.vault)' is not a valid vault name")
        }
        return APIClient(baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base, key: key)
    }
}

/// A failed call, printed as `CODE: message` (never with a request body).
struct APIClientError: Error, CustomStringConvertible {
    let description: String
}

/// A small JSON-over-HTTP client for the admin API.
struct APIClient {
    let baseURL: String
    let key: String

    /// One client for the process. Unlike a server's, it does not retry a
    /// refused connection until the deadline: a person at a terminal should
    /// hear at once that nothing is listening. (A static is never
    /// deinitialised, so it needs no shutdown.)
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(5)
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    func call(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil) async throws -> (UInt, Data) {
        var request = HTTPClientRequest(url: self.baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(self.key)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await Self.http.execute(request, timeout: .seconds(30))
        } catch {
            throw APIClientError(description: "cannot reach Latchkey at \(self.baseURL): \(error)")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 16 * 1024 * 1024))
        guard (200..<300).contains(Int(response.status.code)) else {
            throw Self.error(status: response.status.code, body: data)
        }
        return (response.status.code, data)
    }

    static func error(status: UInt, body: Data) -> APIClientError {
        if case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: body),
            case .object(let error)? = object["error"],
            let code = error["code"]?.stringValue, let message = error["message"]?.stringValue
        {
            return APIClientError(description: "\(code): \(message)")
        }
        return APIClientError(description: "the server answered HTTP \(status)")
    }
}

struct CredentialCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credential",
        abstract: "Manage credentials on a running server.",
        subcommands: [Set.self, List.self, Get.self, Rotate.self, Delete.self]
    )

    /// Reads a value from standard input. `bearer` and `cookie` take the raw
    /// secret (one trailing newline dropped); every other type takes its value
    /// object as JSON (SPEC section 9).
    static func readValue(type: CredentialType) throws -> JSONValue {
        let data = FileHandle.standardInput.readDataToEndOfFile()
        guard data.count <= 256 * 1024 else { throw ValidationError("the value on standard input is over 256 KiB") }
        var text = String(decoding: data, as: UTF8.self)
        switch type {
        case .bearer, .cookie:
            if text.hasSuffix("\r\n") {
                text.removeLast(2)
            } else if text.hasSuffix("\n") {
                text.removeLast()
            }
            guard !text.isEmpty else { throw ValidationError("standard input is empty: pipe the secret in") }
            return .object([type == .bearer ? "token" : "cookie": .string(text)])
        default:
            guard let value = try? JSONDecoder().decode(JSONValue.self, from: data), case .object = value else {
                throw ValidationError(
                    "a \(type.rawValue) value is read from standard input as a JSON object, e.g. {\"key\": \"...\", \"header\": \"X-API-Key\"}"
                )
            }
            return value
        }
    }

    static func printJSON(_ data: Data) {
        if let value = try? JSONDecoder().decode(JSONValue.self, from: data) {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            if let pretty = try? encoder.encode(value) {
                print(String(decoding: pretty, as: UTF8.self))
                return
            }
        }
        print(String(decoding: data, as: UTF8.self))
    }

    static func path(vault: String, name: String? = nil) -> String {
        "/v1/vaults/\(vault)/credentials" + (name.map { "/\($0)" } ?? "")
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a credential, or rotate it if it exists, with its value read from standard input.",
            discussion: """
                Example: printf %s "$TOKEN" | latchkey credential set github_pat --type bearer --value-stdin
                bearer and cookie read the raw secret; other types read their value object as JSON.
                """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "Credential name.") var name: String
        @Option(help: "One of: \(CredentialType.allNames).") var type: String
        @Option(help: "A description (not secret).") var description: String?
        @Flag(name: .customLong("value-stdin"), help: "Read the value from standard input (required).")
        var valueStdin = false

        func validate() throws {
            guard self.valueStdin else {
                throw ValidationError("pass --value-stdin and pipe the value in: secrets never go on the command line")
            }
            guard CredentialType(rawValue: self.type) != nil else {
                throw ValidationError("--type must be one of \(CredentialType.allNames)")
            }
        }

        func run() async throws {
            let type = CredentialType(rawValue: self.type)!
            let value = try CredentialCommand.readValue(type: type)
            let api = try self.client.client()
            var body: [String: JSONValue] = [
                "name": .string(self.name), "type": .string(type.rawValue), "value": value,
            ]
            if let description { body["description"] = .string(description) }
            do {
                _ = try await api.call(.POST, CredentialCommand.path(vault: self.client.vault), body: .object(body))
                print("Created \(type.rawValue) credential '\(self.name)' in vault '\(self.client.vault)'.")
            } catch let error as APIClientError where error.description.hasPrefix("CREDENTIAL_EXISTS") {
                _ = try await api.call(
                    .POST, CredentialCommand.path(vault: self.client.vault, name: self.name) + "/rotate",
                    body: .object(["value": value]))
                print("Rotated credential '\(self.name)' in vault '\(self.client.vault)'.")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List credentials (metadata only).")

        @OptionGroup var client: ClientOptions
        @Option(help: "Only this type.") var type: String?
        @Option(help: "Only names containing this text.") var q: String?
        @Option(name: .customLong("stale-days"), help: "Only credentials not rotated for this many days.")
        var staleDays: Int?
        @Flag(help: "Print the raw JSON pages.") var json = false

        func run() async throws {
            let api = try self.client.client()
            var query: [URLQueryItem] = []
            if let type { query.append(.init(name: "type", value: type)) }
            if let q { query.append(.init(name: "q", value: q)) }
            if let staleDays { query.append(.init(name: "stale_days", value: String(staleDays))) }
            query.append(.init(name: "limit", value: "200"))
            var cursor: String?
            var rows: [[String]] = []
            repeat {
                var components = URLComponents()
                components.queryItems = query + (cursor.map { [.init(name: "cursor", value: $0)] } ?? [])
                let (_, data) = try await api.call(
                    .GET,
                    CredentialCommand.path(vault: self.client.vault) + "?" + (components.percentEncodedQuery ?? ""))
                if self.json { CredentialCommand.printJSON(data) }
                guard case .object(let page)? = try? JSONDecoder().decode(JSONValue.self, from: data),
                    case .array(let items)? = page["items"]
                else { throw APIClientError(description: "the server sent an unexpected list response") }
                for case .object(let item) in items {
                    rows.append(
                        ["name", "type", "status", "last_rotated_at"].map { item[$0]?.stringValue ?? "" })
                }
                cursor = page["next_cursor"]?.stringValue
            } while cursor != nil
            guard !self.json else { return }
            printTable(header: ["NAME", "TYPE", "STATUS", "LAST ROTATED"], rows: rows)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a credential's metadata (never its value).")

        @OptionGroup var client: ClientOptions
        @Argument(help: "Credential name.") var name: String

        func run() async throws {
            let (_, data) = try await self.client.client().call(
                .GET, CredentialCommand.path(vault: self.client.vault, name: self.name))
            CredentialCommand.printJSON(data)
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace a credential's value, read from standard input.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "Credential name.") var name: String
        @Option(
            help: "The credential's type, if it is bearer or cookie (raw secret on stdin); otherwise stdin is JSON.")
        var type: String?
        @Flag(name: .customLong("value-stdin"), help: "Read the value from standard input (required).")
        var valueStdin = false

        func validate() throws {
            guard self.valueStdin else {
                throw ValidationError("pass --value-stdin and pipe the value in: secrets never go on the command line")
            }
        }

        func run() async throws {
            let api = try self.client.client()
            let type: CredentialType
            if let given = self.type {
                guard let parsed = CredentialType(rawValue: given) else {
                    throw ValidationError("--type must be one of \(CredentialType.allNames)")
                }
                type = parsed
            } else {
                let (_, data) = try await api.call(
                    .GET, CredentialCommand.path(vault: self.client.vault, name: self.name))
                guard case .object(let metadata)? = try? JSONDecoder().decode(JSONValue.self, from: data),
                    let raw = metadata["type"]?.stringValue, let parsed = CredentialType(rawValue: raw)
                else { throw APIClientError(description: "the server sent unexpected metadata") }
                type = parsed
            }
            let value = try CredentialCommand.readValue(type: type)
            _ = try await api.call(
                .POST, CredentialCommand.path(vault: self.client.vault, name: self.name) + "/rotate",
                body: .object(["value": value]))
            print("Rotated credential '\(self.name)' in vault '\(self.client.vault)'.")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a credential.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "Credential name.") var name: String
        @Flag(help: "Delete an oauth_client even while credentials use it (they become needs_reauth).")
        var force = false

        func run() async throws {
            _ = try await self.client.client().call(
                .DELETE,
                CredentialCommand.path(vault: self.client.vault, name: self.name) + (self.force ? "?force=true" : ""))
            print("Deleted credential '\(self.name)' from vault '\(self.client.vault)'.")
        }
    }
}
