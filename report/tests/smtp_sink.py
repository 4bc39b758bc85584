"""A loopback SMTP server for patrol-report's end-to-end mail test.

Usage: /usr/bin/python3 smtp_sink.py HOST PORT OUT_DIR [USER:PASSWORD]

With USER:PASSWORD, the server requires SMTP AUTH (PLAIN or LOGIN, allowed
without TLS since this is loopback) and refuses mail from anyone who did
not log in with exactly those.

Saves every received message as OUT_DIR/NNN.eml (raw bytes as received),
its envelope as OUT_DIR/NNN.envelope (MAIL FROM, then RCPT TO lines), and
what Python's own MIME parser makes of it as OUT_DIR/NNN.json (decoded
headers; every part with its type, disposition, file name and decoded
body), so the Rust test checks the message with an independent parser.
The .eml appears last, so its presence means the other two are complete.
With SMTP_SINK_DATA_SIZE_LIMIT=N in the environment, messages over N bytes
are refused (552), as a relay with a size limit does. Keeps serving until
stdin closes or the process is killed. Prints "ready" once it accepts
connections. Needs the Debian package python3-aiosmtpd.
"""

import email
import email.policy
import hashlib
import json
import os
import sys
import threading

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:
    sys.stderr.write("aiosmtpd is missing: apt-get install python3-aiosmtpd\n")
    sys.exit(3)


def summary(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    headers = {k: str(msg[k]) for k in ("Subject", "From", "To", "Date", "Message-ID")
               if msg[k] is not None}
    parts = []
    for part in msg.walk():
        entry = {
            "content_type": part.get_content_type(),
            "disposition": part.get_content_disposition(),
            "filename": part.get_filename(),
            "content_id": part.get("Content-ID"),
        }
        if not part.is_multipart():
            body = part.get_content()
            entry["body"] = body if isinstance(body, str) else body.decode("utf-8", "replace")
            raw_body = part.get_payload(decode=True) or b""
            entry["sha256"] = hashlib.sha256(raw_body).hexdigest()
            entry["size"] = len(raw_body)
        parts.append(entry)
    return {"headers": headers, "parts": parts}


class SaveHandler:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        base = os.path.join(self.out_dir, "%03d" % n)
        raw = envelope.original_content or envelope.content
        with open(base + ".json", "w") as f:
            json.dump(summary(raw), f, indent=1)
        with open(base + ".tmp", "wb") as f:
            f.write(raw)
        with open(base + ".envelope", "w") as f:
            f.write(envelope.mail_from + "\n")
            for rcpt in envelope.rcpt_tos:
                f.write(rcpt + "\n")
        os.rename(base + ".tmp", base + ".eml")
        return "250 Message accepted for delivery"


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: let aiosmtpd answer 535 (its default, True, sends nothing).
        return AuthResult(success=ok, handled=False)

    return authenticate


def main():
    host, port, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    auth = {}
    if len(sys.argv) > 4:
        user, password = sys.argv[4].split(":", 1)
        auth = dict(
            authenticator=authenticator_for(user, password),
            auth_required=True,
            auth_require_tls=False,
        )
    limit = os.environ.get("SMTP_SINK_DATA_SIZE_LIMIT")
    if limit:
        auth["data_size_limit"] = int(limit)
    controller = Controller(SaveHandler(out_dir), hostname=host, port=port, **auth)
    controller.start()
    print("ready", flush=True)
    try:
        # The test holds our stdin; when it drops it (or dies), we stop.
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
