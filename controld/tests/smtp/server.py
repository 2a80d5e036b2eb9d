"""A real SMTP server for the alert-mail test: aiosmtpd (PyPI) on
127.0.0.1, an ephemeral port, STARTTLS required before AUTH, one
user:password accepted; each accepted message is written to OUT_DIR as
<n>.eml. The first DATA is answered 451 (a temporary failure: the client
is expected to try again); OUT_DIR/attempts counts every DATA. Prints
"port N" once listening.

usage: server.py CERT KEY USER PASSWORD OUT_DIR
"""

import asyncio
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    # aiosmtpd 1.4 warns about its own Session.login_data on every AUTH.
    warnings.simplefilter("ignore", DeprecationWarning)
    cert, key, user, password, out_dir = sys.argv[1:6]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    count = [0]
    attempts = [0]

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            attempts[0] += 1
            with open(os.path.join(out_dir, "attempts"), "w") as f:
                f.write(str(attempts[0]))
            if attempts[0] == 1:
                return "451 4.3.0 try again later"
            count[0] += 1
            path = os.path.join(out_dir, "%d.eml" % count[0])
            with open(path + ".tmp", "wb") as f:
                f.write(b"X-Envelope-From: " + envelope.mail_from.encode() + b"\r\n")
                f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
                f.write(b"X-Authenticated: " + str(session.authenticated).encode() + b"\r\n")
                f.write(envelope.original_content)
            os.rename(path + ".tmp", path)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, auth_data=auth_data)

    def factory():
        return SMTP(
            Handler(),
            hostname="mail.test",
            tls_context=context,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=True,
        )

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", 0)
        print("port %d" % server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
