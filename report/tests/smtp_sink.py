"""A loopback SMTP server for patrol-report's end-to-end mail test.

Usage: /usr/bin/python3 smtp_sink.py HOST PORT OUT_DIR

Saves every received message as OUT_DIR/NNN.eml (raw bytes as received) and
its envelope as OUT_DIR/NNN.envelope (MAIL FROM, then RCPT TO lines), then
keeps serving until stdin closes or the process is killed. Prints "ready"
once it accepts connections. Needs the Debian package python3-aiosmtpd.
"""

import os
import sys
import threading

try:
    from aiosmtpd.controller import Controller
except ImportError:
    sys.stderr.write("aiosmtpd is missing: apt-get install python3-aiosmtpd\n")
    sys.exit(3)


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
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".envelope", "w") as f:
            f.write(envelope.mail_from + "\n")
            for rcpt in envelope.rcpt_tos:
                f.write(rcpt + "\n")
        os.rename(base + ".tmp", base + ".eml")
        return "250 Message accepted for delivery"


def main():
    host, port, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    controller = Controller(SaveHandler(out_dir), hostname=host, port=port)
    controller.start()
    print("ready", flush=True)
    try:
        # The test holds our stdin; when it drops it (or dies), we stop.
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
