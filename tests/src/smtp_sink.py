"""A real SMTP server for certvakt's tests (aiosmtpd), driven by tests/src/smtp.rs.

Usage: python3 smtp_sink.py CONFIG.json

CONFIG: {"port": 0 or a port, "folder": where mails go, "mode": "plain" | "starttls" | "tls",
"require_starttls": bool, "cert": PEM chain file, "key": PEM key file, "auth": null or
{"user", "password"}, "auth_required": bool, "auth_exclude": ["PLAIN"], "rcpt_replies":
{address: "550 ..."}}

Listens on 127.0.0.1 and prints "PORT <n>" once it accepts. Every accepted mail becomes
<folder>/N.eml (the bytes as received) and then <folder>/N.json, each written atomically:
the envelope, whether TLS was on, the authenticated user, and the mail as Python's email
package decodes it (an implementation independent of the sender's). Every EHLO, AUTH, MAIL
and RCPT is appended to <folder>/commands.jsonl. Numbering goes on after a restart.
If aiosmtpd is missing it prints "MISSING aiosmtpd" and exits with status 3.
"""

import asyncio
import email
import email.policy
import hashlib
import json
import os
import socket
import ssl
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    print("MISSING aiosmtpd", flush=True)
    sys.exit(3)


def write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def is_tls(server):
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def decode(content):
    """The mail as a mail client sees it (line ends as a mail client stores them)."""
    msg = email.message_from_bytes(content.replace(b"\r\n", b"\n"),
                                   policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain",))
    attachments = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True) or b""
        attachments.append({
            "name": part.get_filename(),
            "content_type": part.get_content_type(),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
        })
    headers = {}
    for name in ("From", "To", "Cc", "Subject", "Date", "Message-ID", "X-Certvakt-Event",
                 "MIME-Version", "Content-Type"):
        value = msg.get(name)
        if value is not None:
            headers[name] = str(value)
    return {
        "subject": str(msg.get("Subject", "")),
        "message_id": str(msg.get("Message-ID", "")),
        "text": body.get_content() if body is not None else None,
        "text_content_type": body.get_content_type() if body is not None else None,
        "text_charset": body.get_content_charset() if body is not None else None,
        "attachments": attachments,
        "headers": headers,
        "defects": [type(d).__name__ for d in msg.defects],
    }


class Sink:
    def __init__(self, folder, rcpt_replies):
        self.folder = folder
        self.rcpt_replies = rcpt_replies
        existing = [int(n[:-5]) for n in os.listdir(folder)
                    if n.endswith(".json") and n[:-5].isdigit()]
        self.count = max(existing, default=0)

    def record(self, server, verb, **fields):
        line = dict(verb=verb, tls=is_tls(server), **fields)
        with open(os.path.join(self.folder, "commands.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.record(server, "EHLO", arg=hostname)
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.record(server, "MAIL", arg=address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.record(server, "RCPT", arg=address)
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        record = {
            "index": n,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": is_tls(server),
            "auth_user": session.auth_data if session.authenticated else None,
            "hello": session.host_name,
        }
        record.update(decode(content))
        write_atomically(os.path.join(self.folder, "%d.eml" % n), content)
        write_atomically(os.path.join(self.folder, "%d.json" % n),
                         json.dumps(record, indent=1).encode("utf-8"))
        return "250 2.0.0 Ok: queued as sink-%d" % n


def make_authenticator(sink, auth):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (auth is not None and isinstance(auth_data, LoginPassword)
              and auth_data.login == auth["user"].encode("utf-8")
              and auth_data.password == auth["password"].encode("utf-8"))
        login = auth_data.login.decode("utf-8", "replace") \
            if isinstance(auth_data, LoginPassword) else None
        sink.record(server, "AUTH", arg=mechanism, user=login, success=ok)
        # handled=False: aiosmtpd then answers a failure with 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)
    return authenticator


async def main(config):
    folder = config["folder"]
    os.makedirs(folder, exist_ok=True)
    sink = Sink(folder, config.get("rcpt_replies") or {})
    mode = config["mode"]
    context = None
    if mode in ("starttls", "tls"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config["cert"], config["key"])
    auth = config.get("auth")

    def factory():
        return SMTP(
            sink,
            hostname="sink.test",
            tls_context=context if mode == "starttls" else None,
            require_starttls=bool(config.get("require_starttls")),
            # Over implicit TLS the whole connection is encrypted; aiosmtpd only knows
            # about STARTTLS, so it must be told AUTH is fine there.
            auth_require_tls=(mode != "tls"),
            auth_required=bool(config.get("auth_required")),
            auth_exclude_mechanism=config.get("auth_exclude") or [],
            authenticator=make_authenticator(sink, auth),
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(config.get("port") or 0)))
    sock.listen(16)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, sock=sock,
                                      ssl=context if mode == "tls" else None)
    print("PORT %d" % sock.getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
