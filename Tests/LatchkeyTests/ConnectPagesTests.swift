import AsyncHTTPClient
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LatchkeyApp
import LatchkeyCore
import LatchkeyCrypto
import LatchkeyHTTP
import LatchkeyOAuth
import LatchkeyRefresher
import LatchkeyStore
import LatchkeyTesting
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Testing

@Suite("Connect pages")
struct ConnectPagesTests {
    /// Collects a response body's bytes.
    final class Sink {
        var bytes = ByteBuffer()
    }

    struct Collector: ResponseBodyWriter {
        let sink: Sink

        mutating func write(_ buffer: ByteBuffer) async throws {
            var buffer = buffer
            self.sink.bytes.writeBuffer(&buffer)
        }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    static func html(_ response: Response) async throws -> String {
        let sink = Sink()
        try await response.body.write(Collector(sink: sink))
        return String(buffer: sink.bytes)
    }

    /// One page of each kind, for the checks every page must pass.
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case start, success, failure, failureWithoutDetail

        var testDescription: String { self.rawValue }

        var page: Response {
            switch self {
            case .start:
                ConnectPages.start(
                    provider: "GitHub", vault: "default", credential: "gh", scopes: ["repo"], action: "/connect/abc")
            case .success:
                ConnectPages.success(provider: "GitHub", vault: "default", credential: "gh", scopes: ["repo"])
            case .failure:
                ConnectPages.failure(status: .badRequest, title: "Denied", message: "No.", detail: "x")
            case .failureWithoutDetail:
                ConnectPages.failure(status: .gone, title: "Expired", message: "Late.", detail: nil)
            }
        }
    }

    @Test("escape() replaces the five special characters and leaves everything else")
    func escapesFiveCharacters() {
        #expect(ConnectPages.escape("&<>\"'") == "&amp;&lt;&gt;&quot;&#39;")
        #expect(ConnectPages.escape("a & b < c > d \"e\" 'f'") == "a &amp; b &lt; c &gt; d &quot;e&quot; &#39;f&#39;")
        #expect(ConnectPages.escape("&amp;") == "&amp;amp;")
        let plain = "plain text, ümlauts, emoji 🔑, tabs\tand\nnewlines / = ; # %"
        #expect(ConnectPages.escape(plain) == plain)
        #expect(ConnectPages.escape("") == "")
        #expect(ConnectPages.escape("é<🔑>") == "é&lt;🔑&gt;")
    }

    @Test("a failure page shows hostile detail and provider names only in escaped form")
    func failureEscapesEverything() async throws {
        let page = ConnectPages.failure(
            status: .badGateway, title: "Acme \"Pro\" <b>refused</b>", message: "The provider's answer: 'no' & more",
            detail: "<script>alert(1)</script>")
        #expect(page.status == .badGateway)
        let html = try await Self.html(page)
        #expect(!html.contains("<script"))
        #expect(!html.contains("<b>"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(html.contains("<title>Acme &quot;Pro&quot; &lt;b&gt;refused&lt;/b&gt; · Latchkey</title>"))
        #expect(html.contains("<h1>Acme &quot;Pro&quot; &lt;b&gt;refused&lt;/b&gt;</h1>"))
        #expect(html.contains("The provider&#39;s answer: &#39;no&#39; &amp; more"))

        let start = try await Self.html(
            ConnectPages.start(
                provider: "Acme \"Pro\" 'X'", vault: "v<1>", credential: "c&d", scopes: ["a\"b"],
                action: "/connect/\"><script>"))
        #expect(!start.contains("<script"))
        #expect(!start.contains("\"Pro\""))
        #expect(!start.contains("'X'"))
        #expect(start.contains("Connect Acme &quot;Pro&quot; &#39;X&#39;"))
        #expect(start.contains("<dd>v&lt;1&gt;</dd>"))
        #expect(start.contains("<dd>c&amp;d</dd>"))
        #expect(start.contains("<li><code>a&quot;b</code></li>"))
        #expect(start.contains("action=\"/connect/&quot;&gt;&lt;script&gt;\""))

        let success = try await Self.html(
            ConnectPages.success(provider: "Acme \"Pro\"", vault: "<v>", credential: "'c'", scopes: ["<s>"]))
        #expect(!success.contains("\"Pro\""))
        #expect(success.contains("Connected Acme &quot;Pro&quot; as &#39;c&#39; in vault &lt;v&gt;."))
        #expect(success.contains("<li><code>&lt;s&gt;</code></li>"))
    }

    @Test("every page carries the security headers and is UTF-8 HTML without script", arguments: Kind.allCases)
    func securityHeaders(kind: Kind) async throws {
        let page = kind.page
        let name = kind.rawValue
        let expected: [(String, String)] = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-store"),
        ]
        for (field, value) in expected {
            #expect(page.headers[HTTPField.Name(field)!] == value, "\(name): \(field)")
        }
        let csp = try #require(page.headers[.contentSecurityPolicy], "\(name)")
        let directives = csp.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(directives.contains("default-src 'none'"))
        #expect(directives.contains("frame-ancestors 'none'"))
        #expect(directives.contains("base-uri 'none'"))
        #expect(directives.contains("style-src '\(ConnectPages.stylesheetHash)'"))
        #expect(directives.contains { $0.hasPrefix("form-action 'self' ") })
        #expect(!csp.contains("unsafe"))
        for field in ConnectPages.securityHeaders {
            #expect(page.headers[field.name] == field.value, "\(name): \(field.name)")
        }

        let html = try await Self.html(page)
        #expect(html.hasPrefix("<!DOCTYPE html>\n<html lang=\"en\">"))
        #expect(html.contains("<main>"))
        #expect(html.contains("<h1>"))
        #expect(!html.contains("<script"))
        #expect(!html.contains(" style=\""))
        #expect(html.contains("<style>\(ConnectPages.stylesheet)</style>"))
        #expect(html.components(separatedBy: "<style").count == 2)
        #expect(page.headers[.contentLength] == nil || page.headers[.contentLength] == "\(html.utf8.count)")
    }

    @Test("the securityHeaders value has every header but Content-Type")
    func securityHeadersValue() {
        let headers = ConnectPages.securityHeaders
        #expect(headers[.contentSecurityPolicy] == ConnectPages.contentSecurityPolicy)
        #expect(headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
        #expect(headers[.xContentTypeOptions] == "nosniff")
        #expect(headers[HTTPField.Name("Referrer-Policy")!] == "no-referrer")
        #expect(headers[.cacheControl] == "no-store")
    }

    @Test("the CSP's style hash is the SHA-256 of the stylesheet")
    func styleHashMatches() {
        let digest = SHA256.hash(data: Data(ConnectPages.stylesheet.utf8))
        #expect(ConnectPages.stylesheetHash == "sha256-" + Data(digest).base64EncodedString())
    }

    @Test("the start page posts to the given action and lists the scopes")
    func startPageForm() async throws {
        let page = ConnectPages.start(
            provider: "GitHub", vault: "team", credential: "gh-main", scopes: ["repo", "read:org"],
            action: "/v1/connect/sess_123")
        #expect(page.status == .ok)
        let html = try await Self.html(page)
        #expect(html.contains("<form method=\"post\" action=\"/v1/connect/sess_123\">"))
        #expect(html.contains("<button type=\"submit\">Connect</button>"))
        #expect(html.contains("<ul>\n<li><code>repo</code></li>\n<li><code>read:org</code></li>\n</ul>"))
        #expect(html.contains("<h1>Connect GitHub</h1>"))
        #expect(html.contains("<dd>team</dd>"))
        #expect(html.contains("<dd>gh-main</dd>"))
        #expect(html.components(separatedBy: "<form").count == 2)

        let noScopes = try await Self.html(
            ConnectPages.start(provider: "Notion", vault: "v", credential: "c", scopes: [], action: "/go"))
        #expect(!noScopes.contains("<ul>"))
        #expect(noScopes.contains("No particular scopes"))
    }

    @Test("the success page names provider, credential, vault and scopes, and says the window can close")
    func successPage() async throws {
        let page = ConnectPages.success(provider: "GitHub", vault: "team", credential: "gh", scopes: ["repo"])
        #expect(page.status == .ok)
        let html = try await Self.html(page)
        #expect(html.contains("Connected GitHub as gh in vault team."))
        #expect(html.contains("<li><code>repo</code></li>"))
        #expect(html.contains("You can close this window."))
        #expect(!html.contains("<form"))
    }

    @Test("a failure page has the caller's status and shows the detail only when given")
    func failurePage() async throws {
        let withDetail = ConnectPages.failure(
            status: .badRequest, title: "Access denied", message: "You declined.", detail: "access_denied")
        #expect(withDetail.status == .badRequest)
        let html = try await Self.html(withDetail)
        #expect(html.contains("<h1>Access denied</h1>"))
        #expect(html.contains("<p>You declined.</p>"))
        #expect(html.contains("<p class=\"note\">access_denied</p>"))
        #expect(html.contains("You can close this window."))

        let without = ConnectPages.failure(status: .conflict, title: "Used", message: "Already used.", detail: nil)
        #expect(without.status == .conflict)
        #expect(!(try await Self.html(without)).contains("class=\"note\""))
    }
}
