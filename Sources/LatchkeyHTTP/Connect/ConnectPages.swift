package import HTTPTypes
package import Hummingbird
import NIOCore

/// The server-rendered HTML pages of the browser half of the OAuth connect
/// flow: the start page behind `connect_url`, the success page and the
/// failure pages of the callback.
///
/// Plain Swift, no template library and no JavaScript. Every interpolated
/// string goes through ``escape(_:)``; the only markup that is not escaped is
/// this file's own. Every page carries ``securityHeaders``.
///
/// The Content-Security-Policy, directive by directive:
///
/// - `default-src 'none'`: no scripts, images, fonts, frames or fetches at all.
/// - `style-src 'sha256-…'`: the one inline `<style>` element (``stylesheet``)
///   is allowed by its hash and nothing else is: neither other `<style>`
///   elements nor `style` attributes, so markup smuggled past escaping could
///   not restyle the page either. The hash is a constant rather than computed
///   at run time so that LatchkeyHTTP needs no Crypto dependency; a test
///   recomputes it with Crypto's SHA256, so editing the stylesheet without
///   updating ``stylesheetHash`` fails the suite instead of silently
///   unstyling the pages.
/// - `form-action 'self' https: http://127.0.0.1:* http://localhost:*`: the
///   Connect button posts to Latchkey itself, which answers with a redirect to
///   the provider's authorization endpoint. Browsers (Chromium at least)
///   check `form-action` against every redirect that follows a form
///   submission, so `'self'` alone would block that redirect, and the
///   provider's origin is not known to a static header. Authorization
///   endpoints are served over TLS (RFC 6749 section 3.1 requires it), hence
///   `https:`; the loopback hosts let the development provider simulator
///   (plain HTTP on 127.0.0.1) work. What stays blocked is a form posting to
///   a plain-HTTP or non-HTTP target elsewhere. Leaving `form-action` out
///   would not fall back to `default-src`: it would allow everything.
/// - `frame-ancestors 'none'` (with `X-Frame-Options: DENY` for older
///   browsers): the Connect button cannot be clickjacked from a frame.
/// - `base-uri 'none'`: an injected `<base>` cannot redirect the relative
///   form action.
///
/// `Referrer-Policy: no-referrer` keeps the callback's `code` and `state` out
/// of the `Referer` of anything the page leads to, and `Cache-Control:
/// no-store` keeps the pages out of caches and the back/forward history.
package enum ConnectPages {
    /// The start page: names the provider (its display name), the vault, the
    /// credential and the scopes, with a "Connect" button in a form that
    /// POSTs to `action` (a path on Latchkey, given by the caller).
    package static func start(
        provider: String, vault: String, credential: String, scopes: [String], action: String
    ) -> Response {
        let name = escape(provider)
        var body = """
            <h1>Connect \(name)</h1>
            <p>Latchkey will keep the \(name) account you approve as this credential:</p>
            <dl>
            <dt>Provider</dt><dd>\(name)</dd>
            <dt>Vault</dt><dd>\(escape(vault))</dd>
            <dt>Credential</dt><dd>\(escape(credential))</dd>
            </dl>

            """
        if scopes.isEmpty {
            body += "<p>No particular scopes are requested: \(name) grants its defaults.</p>\n"
        } else {
            body += "<p>It asks \(name) for these scopes:</p>\n" + scopeList(scopes)
        }
        body += """
            <form method="post" action="\(escape(action))">
            <button type="submit">Connect</button>
            </form>
            <p class="note">You will be sent to \(name) to sign in and approve the access.</p>

            """
        return page(status: .ok, title: "Connect \(provider)", body: body)
    }

    /// The success page: "Connected <provider> as <credential> in vault
    /// <vault>", the scopes granted, and that the window can be closed.
    package static func success(provider: String, vault: String, credential: String, scopes: [String]) -> Response {
        var body = """
            <h1>\(escape(provider)) connected</h1>
            <p>Connected \(escape(provider)) as \(escape(credential)) in vault \(escape(vault)).</p>

            """
        if !scopes.isEmpty {
            body += "<p>Scopes granted:</p>\n" + scopeList(scopes)
        }
        body += "<p>You can close this window.</p>\n"
        return page(status: .ok, title: "\(provider) connected", body: body)
    }

    /// A failure page with the caller's status: a title, a sentence and an
    /// optional detail (such as the provider's OAuth error code), all escaped.
    /// Whether anything was stored is for the caller's message to say.
    package static func failure(
        status: HTTPResponse.Status, title: String, message: String, detail: String?
    ) -> Response {
        var body = """
            <h1>\(escape(title))</h1>
            <p>\(escape(message))</p>

            """
        if let detail {
            body += "<p class=\"note\">\(escape(detail))</p>\n"
        }
        body += "<p>You can close this window.</p>\n"
        return page(status: status, title: title, body: body)
    }

    /// HTML-escapes `&`, `<`, `>`, `"` and `'` (as `&amp;`, `&lt;`, `&gt;`,
    /// `&quot;` and `&#39;`), which makes text safe both between tags and in
    /// a quoted attribute value. Everything else is left as it is.
    package static func escape(_ text: String) -> String {
        guard text.utf8.contains(where: { Self.isSpecial($0) }) else { return text }
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count + 16)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// The security headers every page carries (see the type's documentation
    /// for the policy). Also fit for the callback's redirect to `return_url`.
    package static var securityHeaders: HTTPFields { headers }

    /// The text of the pages' one `<style>` element, exactly as hashed in the
    /// Content-Security-Policy.
    package static let stylesheet = """
        :root{color-scheme:light dark}
        body{margin:0;padding:2rem 1rem;font:1rem/1.5 system-ui,sans-serif}
        main{max-width:34rem;margin:0 auto}
        h1{font-size:1.5rem;line-height:1.25}
        dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
        dt{font-weight:600}
        dd{margin:0}
        dd,code{overflow-wrap:anywhere}
        code{font-family:ui-monospace,monospace}
        button{font:inherit;font-weight:600;padding:.5rem 1.5rem;border:0;border-radius:.375rem;\
        background:#0b57d0;color:#fff;cursor:pointer}
        button:hover{background:#0842a0}
        button:focus-visible{outline:3px solid #5e97f6;outline-offset:2px}
        .note{font-size:.875rem}
        """

    /// The CSP hash source of ``stylesheet``: base64 of its UTF-8 SHA-256.
    package static let stylesheetHash = "sha256-EeEL1VSALcj6jy6UJODOmnm49LwzZGue783gOZj/g84="

    /// The Content-Security-Policy of every page.
    package static let contentSecurityPolicy =
        "default-src 'none'; style-src '\(stylesheetHash)'; "
        + "form-action 'self' https: http://127.0.0.1:* http://localhost:*; "
        + "frame-ancestors 'none'; base-uri 'none'"

    private static let headers: HTTPFields = [
        .contentSecurityPolicy: contentSecurityPolicy,
        HTTPField.Name("X-Frame-Options")!: "DENY",
        .xContentTypeOptions: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        .cacheControl: "no-store",
    ]

    private static func isSpecial(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "&"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "\""), UInt8(ascii: "'"): true
        default: false
        }
    }

    private static func scopeList(_ scopes: [String]) -> String {
        "<ul>\n" + scopes.map { "<li><code>\(escape($0))</code></li>\n" }.joined() + "</ul>\n"
    }

    /// A whole HTML5 document around `body` (already escaped markup); `title`
    /// is escaped here.
    private static func page(status: HTTPResponse.Status, title: String, body: String) -> Response {
        let html = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title)) · Latchkey</title>
            <style>\(stylesheet)</style>
            </head>
            <body>
            <main>
            \(body)</main>
            </body>
            </html>

            """
        var fields = securityHeaders
        fields[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }
}
