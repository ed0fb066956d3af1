"""An SMTP server that fails a share of its transactions, for the crash-recovery test.

    python faulty_smtp.py --log LOG --seed N [--hang SECONDS] [--clean]

With --clean it fails nothing (a healthy relay beside the faulty one).

Listens on a free 127.0.0.1 port and prints `READY <port>`. Each transaction draws one fate
at MAIL FROM (seeded, so a run can be repeated):

- accept (62 %): 250 after DATA;
- `421` at MAIL (8 %) and `451` after DATA (8 %): transient refusals;
- hang at RCPT (7 %): never answers, so the client times out before DATA;
- drop after DATA (7 %): the connection closes with the message unanswered, so the client
  cannot know whether it was taken (an unknown outcome), and it was not;
- accept, then hang (8 %): the message is taken, but the 250 comes too late for the client —
  the unknown outcome where a retry duplicates the message.

Each fate drawn appends `fate <name>` to LOG, and every message taken appends `accept
<Subject>` (before any reply), so the test counts what the provider really accepted. Exits when
stdin closes.
"""

import argparse
import asyncio
import email
import email.policy
import os
import random
import socket
import sys
import threading

try:
    from aiosmtpd.smtp import SMTP
except ImportError as e:
    sys.stderr.write(f"aiosmtpd is not installed for {sys.executable}: {e}\n")
    sys.exit(3)

FATES = [
    ("accept", 62),
    ("refuse_mail", 8),
    ("refuse_data", 8),
    ("hang_rcpt", 7),
    ("drop_data", 7),
    ("accept_then_hang", 8),
]


class Handler:
    def __init__(self, log, seed, hang):
        self.log = log
        self.rng = random.Random(seed)
        self.hang = hang
        self.fates = {}
        self.clean = False

    def draw(self):
        if self.clean:
            self.write("fate accept")
            return "accept"
        roll = self.rng.randrange(100)
        fate = "accept"
        for name, share in FATES:
            if roll < share:
                fate = name
                break
            roll -= share
        self.write(f"fate {fate}")
        return fate

    def write(self, line):
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(f"{line}\n")

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        fate = self.draw()
        self.fates[id(session)] = fate
        if fate == "refuse_mail":
            return "421 4.3.2 busy, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.fates.get(id(session)) == "hang_rcpt":
            await asyncio.sleep(self.hang)
            server.transport.close()
            return "421 4.4.2 timed out"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        fate = self.fates.pop(id(session), "accept")
        if fate == "refuse_data":
            return "451 4.3.0 temporary failure, try again"
        if fate == "drop_data":
            server.transport.close()
            await asyncio.sleep(self.hang)
            return "421 4.4.2 closing"
        msg = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        self.write(f"accept {msg['Subject']}")
        if fate == "accept_then_hang":
            await asyncio.sleep(self.hang)
        return "250 2.0.0 Ok: queued"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--hang", type=float, default=1.5)
    p.add_argument("--clean", action="store_true")
    args = p.parse_args()
    handler = Handler(args.log, args.seed, args.hang)
    handler.clean = args.clean

    def factory():
        return SMTP(handler, hostname="smtp.carteiro.test", timeout=30)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, sock=sock))

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
