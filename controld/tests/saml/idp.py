#!/usr/bin/env python3
"""A SAML 2.0 identity provider for the tests, built on pysaml2 (Debian's
python3-pysaml2, signing through xmlsec1): the proxy's SAML sign-in is
tested against an implementation nobody here wrote.

Usage: idp.py DIR

Makes its keys in DIR (an RSA-2048 key and an ECDSA P-256 key, both in its
metadata, an RSA key that is not, and DIR/sp-rsa.{pem,key} for a service
provider that signs its requests), writes DIR/idp-metadata.xml, serves
on 127.0.0.1 (a free port) and prints {"port": N} when ready. The service
provider's metadata is read from DIR/sp-metadata.xml when the first request
needs it (the test fetches it from the proxy; DIR/sp-metadata*.xml when the
proxy has more than one service-provider entity).

  GET /metadata   its metadata (the entity ID is this URL)
  GET /sso?SAMLRequest=..&RelayState=..&user=..&groups=a,b[&sign=..][&mutate=..]
      answers the AuthnRequest (HTTP-Redirect binding) with the HTTP-POST
      binding's auto-submitting form (a request from a service provider
      with a signing certificate must carry a valid signature); without user, a sign-in form asks
      for it (a browser's way in), unless the browser signed in before
      (cookie idp_user: single sign-on)
  GET /init?acs=URL&user=..[&relay=..][&mutate=..]
      an unsolicited response (identity-provider-initiated sign-in)

sign: assertion (default), response or both (pysaml2's own signing).
mutate: a response signed by this IdP but wrong in one way, or an attack:
expired, notyet, audience, recipient, nodest, unsigned, othercert, sha1, ec,
tamper, comment, xxe, xsw1 .. xsw8.
"""

import copy
import datetime
import glob
import html
import json
import os
import sys
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.config import IdPConfig
from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_UNSPECIFIED, NameID
from saml2.server import Server
from saml2.sigver import pre_signature_part, verify_redirect_signature
from saml2.xmldsig import DIGEST_SHA256, SIG_ECDSA_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
ASSERTION_CLASS = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
RESPONSE_CLASS = "urn:oasis:names:tc:SAML:2.0:protocol:Response"


def make_key(directory, stem, kind, pkcs8=False):
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test idp {stem}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, f"{stem}.key")
    cert_path = os.path.join(directory, f"{stem}.pem")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8
                if pkcs8
                else serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    der = cert.public_bytes(serialization.Encoding.DER)
    import base64

    return key_path, cert_path, base64.b64encode(der).decode()


class Idp:
    def __init__(self, directory, port):
        self.dir = directory
        self.base = f"http://127.0.0.1:{port}"
        self.entity_id = f"{self.base}/metadata"
        self.rsa = make_key(directory, "idp-rsa", "rsa")
        self.ec = make_key(directory, "idp-ec", "ec")
        self.other = make_key(directory, "other-rsa", "rsa")
        # A key for the service provider to sign its requests with (the
        # test's policy names these files; PKCS#8, as the proxy reads).
        make_key(directory, "sp-rsa", "rsa", pkcs8=True)
        keys = "".join(
            f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>'
            f"<ds:X509Certificate>{b64}</ds:X509Certificate>"
            f"</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            for (_, _, b64) in (self.rsa, self.ec)
        )
        metadata = (
            '<?xml version="1.0"?>\n'
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{self.entity_id}">'
            '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            f"{keys}"
            f'<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" Location="{self.base}/sso"/>'
            "</md:IDPSSODescriptor></md:EntityDescriptor>\n"
        )
        with open(os.path.join(directory, "idp-metadata.xml"), "w") as f:
            f.write(metadata)
        self.server = None
        self.lock = threading.Lock()

    def pysaml2(self):
        with self.lock:
            if self.server is None:
                conf = {
                    "entityid": self.entity_id,
                    "service": {
                        "idp": {
                            "endpoints": {
                                "single_sign_on_service": [
                                    (f"{self.base}/sso", BINDING_HTTP_REDIRECT)
                                ]
                            },
                            "policy": {
                                "default": {
                                    "lifetime": {"minutes": 15},
                                    "name_form": NAME_FORMAT_BASIC,
                                }
                            },
                            "name_id_format": [NAMEID_FORMAT_UNSPECIFIED],
                        }
                    },
                    "key_file": self.rsa[0],
                    "cert_file": self.rsa[1],
                    "xmlsec_binary": "/usr/bin/xmlsec1",
                    "metadata": {
                        "local": sorted(glob.glob(os.path.join(self.dir, "sp-metadata*.xml")))
                    },
                    "signing_algorithm": SIG_RSA_SHA256,
                    "digest_algorithm": DIGEST_SHA256,
                }
                config = IdPConfig()
                config.load(conf)
                self.server = Server(config=config)
            return self.server

    def response(self, in_response_to, acs, sp_entity_id, user, groups, sign, mutate):
        server = self.pysaml2()
        identity = {"uid": [user], "groups": groups, "device": ["compliant"]}
        own_signing = mutate in ("", None)
        resp = server.create_authn_response(
            identity,
            in_response_to,
            acs,
            sp_entity_id,
            userid=user,
            name_id=NameID(format=NAMEID_FORMAT_UNSPECIFIED, text=user),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_assertion=own_signing and sign in ("assertion", "both"),
            sign_response=own_signing and sign in ("response", "both"),
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        xml = str(resp)
        if own_signing:
            return xml
        return mutated(server, self, xml, mutate)


def assertion_of(root):
    return root.find("saml:Assertion", NS)


def sign_element(server, xml, element_class, element_id, key_file, sign_alg=SIG_RSA_SHA256):
    """Adds a signature template to the element with `element_id` (after
    its Issuer) and signs it with xmlsec1 through pysaml2."""
    root = etree.fromstring(xml.encode())
    target = root if root.get("ID") == element_id else assertion_of(root)
    template = pre_signature_part(element_id, None, 1, sign_alg=sign_alg, digest_alg=DIGEST_SHA256)
    node = etree.fromstring(str(template).encode())
    issuer = target.find("saml:Issuer", NS)
    issuer.addnext(node)
    xml = etree.tostring(root).decode()
    return server.sec.sign_statement(xml, element_class, key_file=key_file, node_id=element_id)


def mutated(server, idp, xml, mutate):
    now = time.time()

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    root = etree.fromstring(xml.encode())
    a = assertion_of(root)
    conditions = a.find("saml:Conditions", NS)
    data = a.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
    if mutate == "expired":
        conditions.set("NotBefore", iso(now - 7200))
        conditions.set("NotOnOrAfter", iso(now - 3600))
        data.set("NotOnOrAfter", iso(now - 3600))
    elif mutate == "notyet":
        conditions.set("NotBefore", iso(now + 3600))
    elif mutate == "audience":
        conditions.find("saml:AudienceRestriction/saml:Audience", NS).text = "https://other-sp.test"
    elif mutate == "recipient":
        data.set("Recipient", "https://evil.test/.palisade/saml/acs")
    elif mutate == "nodest":
        # A signed response that names no destination.
        del root.attrib["Destination"]
        xml = etree.tostring(root).decode()
        return sign_element(server, xml, RESPONSE_CLASS, root.get("ID"), idp.rsa[0])
    xml = etree.tostring(root).decode()
    assertion_id = a.get("ID")
    if mutate == "unsigned":
        return xml
    key, alg = idp.rsa[0], SIG_RSA_SHA256
    if mutate == "othercert":
        key = idp.other[0]
    elif mutate == "sha1":
        alg = SIG_RSA_SHA1
    elif mutate == "ec":
        key, alg = idp.ec[0], SIG_ECDSA_SHA256
    if mutate in ("xsw1", "xsw2"):
        return wrap(sign_element(server, xml, RESPONSE_CLASS, root.get("ID"), key, alg), mutate)
    signed = sign_element(server, xml, ASSERTION_CLASS, assertion_id, key, alg)
    if mutate == "tamper":
        return signed.replace(">alice<", ">mallory<", 1)
    if mutate == "comment":
        # Signed for "alice.evil"; a reader stopping at the comment sees
        # "alice".
        return signed.replace(">alice.evil<", ">alice<!-- -->.evil<", 1)
    if mutate == "xxe":
        doctype = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        if signed.startswith("<?xml"):
            head, rest = signed.split("?>", 1)
            return head + "?>" + doctype + rest
        return doctype + signed
    if mutate.startswith("xsw"):
        return wrap(signed, mutate)
    return signed


def evil_copy(assertion):
    evil = copy.deepcopy(assertion)
    evil.set("ID", "_evil" + assertion.get("ID"))
    name_id = evil.find("saml:Subject/saml:NameID", NS)
    name_id.text = "mallory"
    for sig in evil.findall("ds:Signature", NS):
        evil.remove(sig)
    return evil


def wrap(signed, variant):
    """The XML Signature Wrapping variants of Somorovsky et al., "On
    Breaking SAML: Be Whoever You Want to Be" (USENIX Security 2012), as
    SAML Raider names them."""
    root = etree.fromstring(signed.encode())
    original = assertion_of(root)
    if variant in ("xsw1", "xsw2"):
        # Response signed: an evil response around a copy of the signed one.
        evil = copy.deepcopy(root)
        evil.set("ID", "_evil" + root.get("ID"))
        evil_sig = evil.find("ds:Signature", NS)
        ea = assertion_of(evil)
        ea.find("saml:Subject/saml:NameID", NS).text = "mallory"
        signed_copy = copy.deepcopy(root)
        signed_copy.remove(signed_copy.find("ds:Signature", NS))
        if variant == "xsw1":
            evil_sig.append(signed_copy)
        else:
            evil_sig.addprevious(signed_copy)
        return etree.tostring(evil).decode()
    evil = evil_copy(original)
    sig = original.find("ds:Signature", NS)
    if variant == "xsw3":
        original.addprevious(evil)
    elif variant == "xsw4":
        original.addprevious(evil)
        root.remove(original)
        evil.append(original)
    elif variant in ("xsw5", "xsw6", "xsw8"):
        # The evil assertion takes the original's ID and a copy of its
        # signature; the original, unsigned, goes last (5), into that
        # signature (6), or into an Object in it (8).
        evil.set("ID", original.get("ID"))
        moved_sig = copy.deepcopy(sig)
        evil.insert(1, moved_sig)
        original.addprevious(evil)
        root.remove(original)
        original.remove(sig)
        if variant == "xsw5":
            root.append(original)
        elif variant == "xsw6":
            moved_sig.append(original)
        else:
            etree.SubElement(moved_sig, "{%s}Object" % NS["ds"]).append(original)
    elif variant == "xsw7":
        extensions = etree.SubElement(root, "{%s}Extensions" % NS["samlp"])
        root.remove(extensions)
        original.addprevious(extensions)
        root.remove(original)
        extensions.append(original)
        extensions.addnext(evil)
    return etree.tostring(root).decode()


def form_page(acs, response_xml, relay_state):
    import base64

    value = base64.b64encode(response_xml.encode()).decode()
    return (
        "<!doctype html><html><body onload=\"document.forms[0].submit()\">"
        f'<form method="post" action="{html.escape(acs)}">'
        f'<input type="hidden" name="SAMLResponse" value="{value}">'
        f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}">'
        "<noscript><button>Continue</button></noscript></form></body></html>"
    )


def main():
    directory = sys.argv[1]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), None)
    idp = Idp(directory, httpd.server_address[1])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body, kind="text/html", headers=()):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            # A browser signed in once keeps a session here (a cookie):
            # later requests are answered without the form, as single
            # sign-on does.
            jar = SimpleCookie()
            jar.load(self.headers.get("Cookie", ""))
            remembered = jar["idp_user"].value if "idp_user" in jar else ""
            if "user" not in q and remembered and url.path == "/sso":
                q["user"] = remembered
            user = q.get("user", "alice")
            groups = [g for g in q.get("groups", "").split(",") if g]
            try:
                if url.path == "/metadata":
                    with open(os.path.join(idp.dir, "idp-metadata.xml")) as f:
                        self.answer(200, f.read(), "application/samlmetadata+xml")
                elif url.path == "/sso" and "user" not in q:
                    # A browser: the sign-in form (any user name).
                    hidden = "".join(
                        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                        for k, v in q.items()
                    )
                    self.answer(
                        200,
                        "<!doctype html><html><head><title>Test IdP</title></head><body>"
                        f'<form method="get" action="/sso">{hidden}'
                        '<input name="user"><button>Sign in</button></form></body></html>',
                    )
                elif url.path == "/sso":
                    server = idp.pysaml2()
                    req = server.parse_authn_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT)
                    # A service provider whose metadata has a signing
                    # certificate must sign its requests (Bindings 3.4.4.1).
                    sp_certs = server.metadata.certs(req.message.issuer.text, "spsso", "signing")
                    if sp_certs:
                        signed = {
                            k: q[k] for k in ("SAMLRequest", "RelayState", "SigAlg", "Signature") if k in q
                        }
                        ok = "Signature" in signed and any(
                            verify_redirect_signature(signed, server.sec.sec_backend, cert)
                            for cert in sp_certs
                        )
                        if not ok:
                            self.answer(403, "the AuthnRequest's signature does not verify", "text/plain")
                            return
                    args = server.response_args(req.message, [BINDING_HTTP_POST])
                    xml = idp.response(
                        args["in_response_to"],
                        args["destination"],
                        args["sp_entity_id"],
                        user,
                        groups,
                        q.get("sign", "assertion"),
                        q.get("mutate", ""),
                    )
                    self.answer(
                        200,
                        form_page(args["destination"], xml, q.get("RelayState", "")),
                        headers=[("Set-Cookie", f"idp_user={user}; Path=/; HttpOnly")],
                    )
                elif url.path == "/init":
                    metadata = idp.pysaml2().metadata
                    sp = next(
                        sp
                        for sp in metadata.service_providers()
                        if any(
                            svc["location"] == q["acs"]
                            for svc in metadata.assertion_consumer_service(sp, BINDING_HTTP_POST)
                        )
                    )
                    xml = idp.response(
                        None,
                        q["acs"],
                        sp,
                        user,
                        groups,
                        q.get("sign", "assertion"),
                        q.get("mutate", ""),
                    )
                    self.answer(200, form_page(q["acs"], xml, q.get("relay", "")))
                else:
                    self.answer(404, "not found", "text/plain")
            except Exception as e:  # the test shows what went wrong
                import traceback

                traceback.print_exc()
                self.answer(500, f"idp error: {e!r}", "text/plain")

    httpd.RequestHandlerClass = Handler
    print(json.dumps({"port": httpd.server_address[1]}), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
