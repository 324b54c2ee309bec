"""An SMTP server on 127.0.0.1 for basphere-notify's tests (aiosmtpd).

Usage: smtp_server.py DIR [USER:PASSWORD]

Listens on a free port, prints it on the first line of stdout, and writes every message it
receives to DIR/NNNN.json: the envelope, the raw message, and what Python's email parser makes
of it (headers in order, the decoded text body). With USER:PASSWORD, clients must log in with
those first (AUTH PLAIN or LOGIN, allowed without TLS on loopback). Stops when stdin closes.
"""

import asyncio
import email
import email.policy
import json
import os
import socket
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Keep:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.auth_data.login.decode() if session.authenticated else None,
            "raw": raw.decode("utf-8", "replace"),
            "headers": [[name, str(value)] for name, value in parsed.items()],
            "body": parsed.get_content() if not parsed.is_multipart() else None,
        }
        path = os.path.join(self.directory, "%04d.json" % self.count)
        with open(path + ".tmp", "w") as out:
            json.dump(record, out)
        os.rename(path + ".tmp", path)
        return "250 Message accepted"


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


async def main():
    directory = sys.argv[1]
    credentials = sys.argv[2].split(":", 1) if len(sys.argv) > 2 else None
    handler = Keep(directory)
    options = {}
    if credentials:
        options = {
            "authenticator": authenticator_for(*credentials),
            "auth_required": True,
            "auth_require_tls": False,
        }
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="smtp.test", **options), sock=listener)
    print(listener.getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
