import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Testing

/// Every class of bad input gets SPEC section 7's error shape, the right
/// status, never a 500, and leaves stored data exactly as it was.
@Suite("Bad input is refused cleanly and changes nothing")
struct BadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let label: String
        let method: HTTPRequest.Method
        let uri: String
        let body: String?
        let status: Int
        let code: String
        var field: String? = nil
        var testDescription: String { self.label }
    }

    static let credentials = "/v1/vaults/default/credentials"

    static let cases: [Case] = [
        // Malformed JSON and wrong shapes.
        Case(
            label: "malformed JSON", method: .post, uri: credentials, body: #"{"name": "x", "type": "#, status: 400,
            code: "MALFORMED_JSON"),
        Case(
            label: "not JSON at all", method: .post, uri: credentials, body: "name=x&type=bearer", status: 400,
            code: "MALFORMED_JSON"),
        Case(label: "empty body", method: .post, uri: credentials, body: nil, status: 400, code: "MALFORMED_JSON"),
        Case(label: "array body", method: .post, uri: credentials, body: "[1,2]", status: 400, code: "MALFORMED_JSON"),
        Case(
            label: "string body", method: .post, uri: "/v1/vaults", body: #""vault""#, status: 400,
            code: "MALFORMED_JSON"),
        // Wrong types.
        Case(
            label: "name is a number", method: .post, uri: credentials,
            body: #"{"name": 5, "type": "bearer", "value": {"token": "t"}}"#, status: 422, code: "VALIDATION_FAILED",
            field: "name"),
        Case(
            label: "value is a string", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "value": "t"}"#, status: 422, code: "VALIDATION_FAILED",
            field: "value"),
        Case(
            label: "token is a number", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "value": {"token": 42}}"#, status: 422, code: "VALIDATION_FAILED",
            field: "value.token"),
        Case(
            label: "scopes not an array", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "oauth", "value": {"client": "c", "access_token": "t", "scopes": "read"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.scopes"),
        Case(
            label: "pkce not a bool", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "oauth_client", "value": {"client_id": "i", "client_secret": "s", "token_url": "https://x.example/t", "pkce": "yes"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.pkce"),
        Case(
            label: "description is an object", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "description": {}, "value": {"token": "t"}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "description"),
        // Values that do not fit their type.
        Case(
            label: "missing value", method: .post, uri: credentials, body: #"{"name": "a", "type": "bearer"}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value"),
        Case(
            label: "missing token", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "value": {}}"#, status: 422, code: "VALIDATION_FAILED",
            field: "value.token"),
        Case(
            label: "empty token", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "value": {"token": ""}}"#, status: 422, code: "VALIDATION_FAILED",
            field: "value.token"),
        Case(
            label: "unknown value field", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "value": {"token": "t", "tokn": "t"}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "value.tokn"),
        Case(
            label: "api_key with header and query_param", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "api_key", "value": {"key": "k", "header": "X-K", "query_param": "k"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value"),
        Case(
            label: "api_key bad header name", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "api_key", "value": {"key": "k", "header": "X K:"}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "value.header"),
        Case(
            label: "header_set value with a line break", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "header_set", "value": {"headers": {"X-A": "v\r\nX-Injected: 1"}}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.headers.X-A"),
        Case(
            label: "header_set empty", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "header_set", "value": {"headers": {}}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "value.headers"),
        Case(
            label: "basic username with colon", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "basic", "value": {"username": "a:b", "password": "p"}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "value.username"),
        Case(
            label: "aws region upper case", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "aws_sigv4", "value": {"access_key_id": "A", "secret_access_key": "S", "region": "US-EAST-1", "service": "s3"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.region"),
        Case(
            label: "oauth_client bad token_url", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "oauth_client", "value": {"client_id": "i", "client_secret": "s", "token_url": "ftp://x"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.token_url"),
        Case(
            label: "oauth_client bad auth method", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "oauth_client", "value": {"client_id": "i", "client_secret": "s", "token_url": "https://x.example/t", "token_auth_method": "jwt"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.token_auth_method"),
        Case(
            label: "oauth_client next secret not a string", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "oauth_client", "value": {"client_id": "i", "client_secret": "s", "client_secret_next": 7, "token_url": "https://x.example/t"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.client_secret_next"),
        Case(
            label: "oauth_client next secret empty", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "oauth_client", "value": {"client_id": "i", "client_secret": "s", "client_secret_next": "", "token_url": "https://x.example/t"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.client_secret_next"),
        Case(
            label: "oauth without tokens", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "oauth", "value": {"client": "c"}}"#, status: 422, code: "VALIDATION_FAILED",
            field: "value"),
        Case(
            label: "oauth negative expires_in", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "oauth", "value": {"client": "c", "access_token": "t", "expires_in": -5}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.expires_in"),
        Case(
            label: "oauth unparsable expires_at", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "oauth", "value": {"client": "c", "access_token": "t", "expires_at": "tomorrow"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.expires_at"),
        Case(
            label: "oauth both expiries", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "oauth", "value": {"client": "c", "access_token": "t", "expires_in": 5, "expires_at": "2030-01-01T00:00:00Z"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value"),
        // Unknown type, bad names, unknown fields.
        Case(
            label: "unknown type", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "password", "value": {"token": "t"}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "type"),
        Case(
            label: "missing type", method: .post, uri: credentials, body: #"{"name": "a", "value": {"token": "t"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "type"),
        Case(
            label: "name with a space", method: .post, uri: credentials,
            body: #"{"name": "my token", "type": "bearer", "value": {"token": "t"}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "name"),
        Case(
            label: "name starting with a digit", method: .post, uri: credentials,
            body: #"{"name": "1token", "type": "bearer", "value": {"token": "t"}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "name"),
        Case(
            label: "name too long", method: .post, uri: credentials,
            body: #"{"name": "a\#(String(repeating: "b", count: 128))", "type": "bearer", "value": {"token": "t"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "name"),
        Case(
            label: "unknown top-level field", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "value": {"token": "t"}, "owner": "me"}"#, status: 422,
            code: "VALIDATION_FAILED", field: "owner"),
        Case(
            label: "vault with a bad name", method: .post, uri: "/v1/vaults", body: #"{"name": "../etc"}"#, status: 422,
            code: "VALIDATION_FAILED", field: "name"),
        // Unknown vault, bad path and query parameters.
        Case(
            label: "unknown vault", method: .post, uri: "/v1/vaults/nowhere/credentials",
            body: #"{"name": "a", "type": "bearer", "value": {"token": "t"}}"#, status: 404, code: "VAULT_NOT_FOUND"),
        Case(
            label: "unknown vault list", method: .get, uri: "/v1/vaults/nowhere/credentials", body: nil, status: 404,
            code: "VAULT_NOT_FOUND"),
        Case(
            label: "bad vault in path", method: .get, uri: "/v1/vaults/no%20pe/credentials", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "vault"),
        Case(
            label: "bad credential name in path", method: .delete, uri: "/v1/vaults/default/credentials/1bad",
            body: nil, status: 400, code: "INVALID_PARAMETER", field: "name"),
        Case(
            label: "limit out of range", method: .get, uri: "\(credentials)?limit=0", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "limit"),
        Case(
            label: "limit not a number", method: .get, uri: "\(credentials)?limit=ten", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "limit"),
        Case(
            label: "unknown type filter", method: .get, uri: "\(credentials)?type=secret", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "type"),
        Case(
            label: "negative stale_days", method: .get, uri: "\(credentials)?stale_days=-1", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "stale_days"),
        Case(
            label: "forged cursor", method: .get, uri: "\(credentials)?cursor=!!!", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "cursor"),
        Case(
            label: "repeated parameter", method: .get, uri: "\(credentials)?limit=1&limit=2", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "limit"),
        Case(
            label: "audit bad since", method: .get, uri: "/v1/audit?since=yesterday", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "since"),
        Case(
            label: "audit forged cursor", method: .get, uri: "/v1/audit?cursor=eA", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "cursor"),
        Case(
            label: "rotate without value", method: .post, uri: "\(credentials)/existing/rotate", body: "{}",
            status: 422, code: "VALIDATION_FAILED", field: "value"),
        Case(
            label: "rotate with extra field", method: .post, uri: "\(credentials)/existing/rotate",
            body: #"{"value": {"token": "t"}, "name": "x"}"#, status: 422, code: "VALIDATION_FAILED", field: "name"),
        // Text PostgreSQL cannot store, and values that would split a header (found by scripts/fuzz).
        Case(
            label: "NUL in a description", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "description": "x\u0000y", "value": {"token": "t"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "description"),
        Case(
            label: "NUL in a vault description", method: .post, uri: "/v1/vaults",
            body: #"{"name": "nulvault", "description": "a\u0000b"}"#, status: 422, code: "VALIDATION_FAILED",
            field: "description"),
        Case(
            label: "NUL in scopes", method: .post, uri: credentials,
            body:
                #"{"name": "a", "type": "oauth_client", "value": {"client_id": "i", "client_secret": "s", "token_url": "https://x.example/t", "scopes": ["a\u0000b"]}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.scopes"),
        Case(
            label: "NUL in a search", method: .get, uri: "\(credentials)?q=a%00b", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "q"),
        Case(
            label: "NUL in an audit filter", method: .get, uri: "/v1/audit?actor=a%00b", body: nil, status: 400,
            code: "INVALID_PARAMETER", field: "actor"),
        Case(
            label: "line break in a bearer token", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "bearer", "value": {"token": "abc\r\nX-Evil: 1"}}"#, status: 422,
            code: "VALIDATION_FAILED", field: "value.token"),
        Case(
            label: "line break in an access token", method: .post, uri: credentials,
            body: #"{"name": "a", "type": "oauth", "value": {"client": "c", "access_token": "abc\ndef"}}"#,
            status: 422, code: "VALIDATION_FAILED", field: "value.access_token"),
        Case(
            label: "line break in a rotated token", method: .post, uri: "\(credentials)/existing/rotate",
            body: #"{"value": {"token": "abc\ndef"}}"#, status: 422, code: "VALIDATION_FAILED", field: "value.token"),
        Case(label: "unknown route", method: .get, uri: "/v1/nothing-here", body: nil, status: 404, code: "NOT_FOUND"),
        Case(
            label: "unsupported method", method: .put, uri: "\(credentials)/existing", body: "{}", status: 404,
            code: "NOT_FOUND"),
    ]

    @Test(arguments: cases)
    func refused(_ badCase: Case) async throws {
        try await Harness.withApp { harness, client in
            let seeded = try await client.call(
                .post, Self.credentials, key: harness.adminKey,
                body: json(["name": "existing", "type": "bearer", "value": ["token": "keep-me"]]))
            #expect(seeded.status == 201)
            let before = try await harness.dataSnapshot()
            let response = try await client.call(
                badCase.method, badCase.uri, key: harness.adminKey, body: badCase.body)
            #expect(response.status == badCase.status, "\(response.body)")
            #expect(response.errorCode == badCase.code, "\(response.body)")
            #expect(response.json["error"]["message"].stringValue?.isEmpty == false)
            #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
            if let field = badCase.field {
                #expect(response.json["error"]["field"] == .string(field), "\(response.body)")
            }
            #expect(try await harness.dataSnapshot() == before)
        }
    }

    @Test func oversizedBodiesAreRefusedWith413() async throws {
        try await Harness.withApp { harness, client in
            let before = try await harness.dataSnapshot()
            let huge = json([
                "name": "big", "type": "bearer", "value": ["token": String(repeating: "x", count: 300_000)],
            ])
            let response = try await client.call(.post, Self.credentials, key: harness.adminKey, body: huge)
            #expect(response.status == 413)
            #expect(response.errorCode == "PAYLOAD_TOO_LARGE")
            // Under the body limit but over the per-field limit: a field-level 422.
            let long = json([
                "name": "big", "type": "bearer", "value": ["token": String(repeating: "x", count: 20_000)],
            ])
            let tooLong = try await client.call(.post, Self.credentials, key: harness.adminKey, body: long)
            #expect(tooLong.status == 422)
            #expect(tooLong.json["error"]["field"] == .string("value.token"))
            #expect(try await harness.dataSnapshot() == before)
        }
    }
}

@Suite("Authentication failures")
struct AuthenticationFailureTests {
    @Test(
        arguments: [
            nil, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer wrong-secret", "Bearer wrong-secret",
            "Token lk_live_x", "Bearer lk_live_" + String(repeating: "A", count: 43), "Bearer lk_live_has spaces",
            "Bearer " + String(repeating: "x", count: 5000),
        ] as [String?])
    func missingMalformedOrUnknownKeysAre401(authorization: String?) async throws {
        try await Harness.withApp { harness, client in
            var headers: HTTPFields = [:]
            if let authorization { headers[.authorization] = authorization }
            let before = try await harness.dataSnapshot()
            for (method, uri) in [
                (HTTPRequest.Method.get, "/v1/vaults"), (.post, "/v1/vaults/default/credentials"), (.get, "/v1/audit"),
            ] {
                let response = try await client.call(
                    method, uri, key: nil,
                    body: method == .post ? json(["name": "x", "type": "bearer", "value": ["token": "t"]]) : nil,
                    headers: headers)
                #expect(response.status == 401)
                #expect(response.errorCode == "INVALID_KEY")
                #expect(response.headers[.wwwAuthenticate] == "Bearer")
            }
            #expect(try await harness.dataSnapshot() == before)
            // Audited, aggregated: the three attempts become one row.
            await harness.flushUsage()
            let failures = try await client.call(.get, "/v1/audit?action=auth.failure", key: harness.adminKey)
            let attempts = failures.json["items"].arrayValue.compactMap { $0["detail"]["attempts"].intValue }
            #expect(attempts == [3])
        }
    }

    @Test func theSchemeIsCaseInsensitiveAndHealthNeedsNoKey() async throws {
        try await Harness.withApp { harness, client in
            let response = try await client.call(
                .get, "/v1/vaults", key: nil, headers: [.authorization: "bearer \(harness.adminKey)"])
            #expect(response.status == 200)
            #expect(try await client.call(.get, "/healthz", key: nil).status == 200)
        }
    }
}
