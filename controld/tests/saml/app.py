#!/usr/bin/env python3
"""A SAML service provider app for the relay tests, on OneLogin's
python3-saml (Debian's python3-onelogin-saml2, verifying through
python3-xmlsec) in strict mode: what the proxy issues as the app's identity
provider is checked by an implementation nobody here wrote.

Usage: app.py DIR DOMAIN

Serves plain HTTP on 127.0.0.1 (a free port; the proxy is its TLS front)
and prints {"port": N} when ready. Its entity ID is
https://DOMAIN/saml/metadata and its assertion consumer service
https://DOMAIN/saml/acs; the identity provider's metadata (the proxy's) is
read from DIR/idp-metadata.xml when the first sign-in needs it.

  GET  /private    signed in (cookie app_session): "signed in as NAME";
                   else redirect to the identity provider (HTTP-Redirect),
                   remembering the request ID in cookie app_request (other
                   paths: 404, so a favicon never starts a sign-in)
  GET  /app        signed in: a page whose script (from static.DOMAIN)
                   asks api.DOMAIN/me, with the session cookie, who it is
  POST /saml/acs   the response, validated strictly (signature, issuer,
                   audience, destination, recipient, times, InResponseTo):
                   the session cookie (Domain=DOMAIN) and a redirect to
                   RelayState; 403 with the library's reasons otherwise
"""

import json
import os
import secrets
import sys
import threading
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser


def main():
    directory, domain = sys.argv[1], sys.argv[2]
    sessions = {}
    lock = threading.Lock()

    def settings():
        with open(os.path.join(directory, "idp-metadata.xml")) as f:
            idp = OneLogin_Saml2_IdPMetadataParser.parse(f.read())
        idp.update(
            {
                "strict": True,
                "debug": False,
                "sp": {
                    "entityId": f"https://{domain}/saml/metadata",
                    "assertionConsumerService": {
                        "url": f"https://{domain}/saml/acs",
                        "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
                    },
                    "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
                },
                "security": {
                    "wantAssertionsSigned": True,
                    "rejectDeprecatedAlgorithm": True,
                },
            }
        )
        return idp

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def saml(self, post_data=None):
            url = urlparse(self.path)
            request = {
                "https": "on",
                "http_host": self.headers.get("Host", domain),
                "script_name": url.path,
                "get_data": {k: v[0] for k, v in parse_qs(url.query).items()},
                "post_data": post_data or {},
            }
            return OneLogin_Saml2_Auth(request, settings())

        def cookies(self):
            jar = SimpleCookie()
            jar.load(self.headers.get("Cookie", ""))
            return {k: m.value for k, m in jar.items()}

        def answer(self, status, body, headers=(), kind="text/plain; charset=utf-8"):
            data = body.encode()
            self.send_response(status)
            if kind:
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            token = self.cookies().get("app_session")
            with lock:
                who = sessions.get(token)
            host = self.headers.get("Host", domain).split(":")[0]
            path = urlparse(self.path).path
            if host == f"static.{domain}":
                # The page's script, from another host: asks the API host.
                script = (
                    f'fetch("https://api.{domain}/me", {{credentials: "include"}})'
                    '.then(r => r.json()).then(j => {'
                    'document.getElementById("api").textContent = "api says " + j.user; })'
                    '.catch(e => { document.getElementById("api").textContent = "api failed " + e; });'
                )
                self.answer(200, script, [("Content-Type", "text/javascript")], kind=None)
                return
            if host == f"api.{domain}":
                origin = self.headers.get("Origin", "")
                cors = [
                    ("Access-Control-Allow-Origin", origin),
                    ("Access-Control-Allow-Credentials", "true"),
                ]
                if who:
                    self.answer(200, json.dumps({"user": who[0]}), cors, kind="application/json")
                else:
                    self.answer(401, json.dumps({"error": "no session"}), cors, kind="application/json")
                return
            if who and path == "/app":
                # The page of the multi-host app.
                self.answer(
                    200,
                    "<!doctype html><html><head><title>CRM</title></head><body>"
                    f'<p id="user">signed in as {who[0]}</p><p id="api">loading</p>'
                    f'<script src="https://static.{domain}/app.js"></script></body></html>',
                    kind="text/html; charset=utf-8",
                )
                return
            if who:
                name, attributes = who
                groups = ",".join(attributes.get("groups", []))
                self.answer(200, f"signed in as {name} groups={groups}")
                return
            if path not in ("/app", "/private"):
                # Only pages start a sign-in: a favicon fetched alongside
                # must not replace the request the sign-in answers.
                self.answer(404, "not found")
                return
            auth = self.saml()
            location = auth.login(return_to=f"https://{domain}{self.path}")
            self.answer(
                302,
                "sign in",
                [
                    ("Location", location),
                    (
                        "Set-Cookie",
                        f"app_request={auth.get_last_request_id()}; Path=/saml; HttpOnly; Secure",
                    ),
                ],
            )

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlparse(self.path).path != "/saml/acs":
                self.answer(404, "not found")
                return
            auth = self.saml(form)
            auth.process_response(request_id=self.cookies().get("app_request"))
            errors = auth.get_errors()
            if errors or not auth.is_authenticated():
                self.answer(403, f"saml error: {errors} {auth.get_last_error_reason()}")
                return
            token = secrets.token_urlsafe(16)
            with lock:
                sessions[token] = (auth.get_nameid(), auth.get_attributes())
            relay = form.get("RelayState", "")
            if relay.startswith(f"https://{domain}/"):
                relay = relay[len(f"https://{domain}") :]
            if not relay.startswith("/") or relay.startswith("//"):
                relay = "/"
            self.answer(
                302,
                "signed in",
                [
                    ("Location", f"https://{domain}{relay}"),
                    ("Set-Cookie", f"app_session={token}; Domain={domain}; Path=/; HttpOnly; Secure"),
                ],
            )

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": httpd.server_address[1]}), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
