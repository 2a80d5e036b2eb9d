#!/usr/bin/env python3
"""The baseline for `cargo bench -p palisade-perf --bench saml`: the same
responses' signatures verified by libxmlsec1 (python3-xmlsec, what
python3-saml uses) in one process, parse included; median of rounds.
Signature verification only: no assertion checks.

Usage: /usr/bin/python3 perf/baseline/saml_xmlsec.py
"""
import os
import statistics
import time

import xmlsec
from lxml import etree

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../schema/tests/saml")
NS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "md": "urn:oasis:names:tc:SAML:2.0:metadata"}


def certificates():
    md = etree.parse(os.path.join(HERE, "idp-metadata.xml"))
    for text in md.xpath("//ds:X509Certificate/text()", namespaces=NS):
        pem = "-----BEGIN CERTIFICATE-----\n" + text.strip() + "\n-----END CERTIFICATE-----\n"
        yield xmlsec.Key.from_memory(pem.encode(), xmlsec.KeyFormat.CERT_PEM)


def verify(data, key):
    root = etree.fromstring(data)
    xmlsec.tree.add_ids(root, ["ID"])
    for sig in root.xpath("//ds:Signature", namespaces=NS):
        ctx = xmlsec.SignatureContext()
        ctx.key = key
        ctx.verify(sig)


def main():
    rsa_key, ec_key = list(certificates())
    for name, fixture, key in [
        ("RSA-2048", "response-rsa.xml", rsa_key),
        ("ECDSA P-256", "response-ec.xml", ec_key),
        ("RSA-2048, response and assertion signed", "response-both.xml", rsa_key),
    ]:
        data = open(os.path.join(HERE, fixture), "rb").read()
        verify(data, key)
        rounds = []
        for _ in range(15):
            n = 400
            start = time.perf_counter()
            for _ in range(n):
                verify(data, key)
            rounds.append((time.perf_counter() - start) / n * 1e6)
        print(f"libxmlsec1 verify, {name}: median {statistics.median(rounds):.1f} µs")


if __name__ == "__main__":
    main()
