"""A throwaway SMTP server for Carteiro's SMTP provider tests (shared/tests/it/smtp_provider.rs).

Run with the test venv's Python (aiosmtpd installed by scripts/test):

    python smtp_server.py --dir OUT --mode plain|starttls|tls [--cert C --key K]
        [--auth USER:PASSWORD] [--auth-plain-ok] [--smtputf8] [--fail VERB ADDRESS REPLY]...

It listens on a free 127.0.0.1 port and prints `READY <port>` on stdout. Every message it
accepts is written to OUT as `<n>.eml` (the raw bytes) and `<n>.json` (envelope, TLS and auth
facts, and the MIME tree as parsed by Python's `email` package — an independent parser),
before the 250 reply, so a client that got its 250 can read them at once.

Modes: `plain` (no TLS offered), `starttls` (STARTTLS offered and required before MAIL),
`tls` (implicit TLS from the first byte). `--fail MAIL|RCPT|DATA ADDRESS "REPLY"` answers that
verb with REPLY when ADDRESS is the sender (MAIL) or a recipient (RCPT, DATA); REPLY `HANG`
never answers, and `DROP` closes the connection without answering.
The server exits when its stdin closes, so it never outlives the test process.
"""

import argparse
import asyncio
import base64
import email
import email.policy
import json
import os
import time
import socket
import ssl
import sys
import threading

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError as e:  # The Rust side shows stderr and fails the test.
    sys.stderr.write(
        f"aiosmtpd is not installed for {sys.executable}: {e}\n"
        "Run scripts/test, or eval \"$(scripts/test --env)\" to set CARTEIRO_PYTHON.\n"
    )
    sys.exit(3)


def structure(msg):
    if msg.is_multipart():
        inner = ",".join(structure(p) for p in msg.iter_parts())
        return f"{msg.get_content_type()}({inner})"
    return msg.get_content_type()


def leaf(part):
    payload = part.get_payload(decode=True) or b""
    out = {
        "content_type": part.get_content_type(),
        "charset": part.get_content_charset(),
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "transfer_encoding": part.get("Content-Transfer-Encoding"),
        "content_base64": base64.b64encode(payload).decode("ascii"),
    }
    if part.get_content_maintype() == "text":
        out["text"] = part.get_content()
    return out


class Handler:
    def __init__(self, out_dir, failures):
        self.out_dir = out_dir
        self.failures = failures
        self.count = 0

    async def failure(self, server, verb, addresses):
        for f_verb, f_addr, reply in self.failures:
            if f_verb == verb and f_addr.lower() in (a.lower() for a in addresses):
                if reply == "DROP":
                    server.transport.close()
                    await asyncio.sleep(3600)
                if reply == "HANG":
                    await asyncio.sleep(3600)
                return reply
        return None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = await self.failure(server, "MAIL", [address])
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = await self.failure(server, "RCPT", [address])
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = await self.failure(server, "DATA", envelope.rcpt_tos)
        if reply:
            return reply
        self.count += 1
        n = self.count
        raw = envelope.original_content or envelope.content
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        record = {
            "received_at": time.time(),
            "mail_from": envelope.mail_from,
            "mail_options": list(envelope.mail_options),
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer_port": session.peer[1] if session.peer else None,
            "starttls": session.ssl is not None,
            "tls_version": ssl_object.version() if ssl_object is not None else None,
            "authenticated": bool(session.authenticated),
            "auth_login": (
                session.auth_data.login.decode()
                if isinstance(session.auth_data, LoginPassword)
                else None
            ),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "structure": structure(msg),
            "parts": [leaf(p) for p in msg.walk() if not p.is_multipart()],
        }
        with open(os.path.join(self.out_dir, f"{n}.eml"), "wb") as f:
            f.write(raw)
        tmp = os.path.join(self.out_dir, f"{n}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.replace(tmp, os.path.join(self.out_dir, f"{n}.json"))
        return f"250 2.0.0 Ok: queued as test-{n}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth", help="USER:PASSWORD the server accepts; AUTH becomes required")
    p.add_argument("--auth-plain-ok", action="store_true", help="allow AUTH without TLS")
    p.add_argument("--smtputf8", action="store_true")
    p.add_argument("--fail", nargs=3, action="append", default=[], metavar=("VERB", "ADDRESS", "REPLY"))
    args = p.parse_args()

    tls_context = None
    if args.mode != "plain":
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    authenticator = None
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd itself answers "535 5.7.8" on failure.
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    handler = Handler(args.dir, args.fail)

    def factory():
        return SMTP(
            handler,
            hostname="smtp.carteiro.test",
            enable_SMTPUTF8=args.smtputf8,
            tls_context=tls_context if args.mode == "starttls" else None,
            require_starttls=args.mode == "starttls",
            authenticator=authenticator,
            auth_required=authenticator is not None,
            auth_require_tls=not args.auth_plain_ok,
            timeout=30,
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(factory, sock=sock, ssl=tls_context if args.mode == "tls" else None)
    )

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"READY {port}", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
