#!/usr/bin/env python3
"""One long call with RTP through the border while benches/flood.sh floods it.

Calls sip:bob@TARGET from the home side (operator A's core address), sends 50 packets/s of
PCMU-sized RTP to the relay address the border's answer gives, and counts what comes back (the
callee, SIPp with -rtp_echo, returns every packet through the border again). Prints one line:

    longcall setup=200 sent=N echoed=M loss_pct=X max_gap_ms=Y bye=200

usage: longcall.py SIP_LOCAL TARGET RTP_LOCAL SECONDS
"""
import random
import re
import socket
import sys
import threading
import time


def main():
    sip_local, target, rtp_local, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    lip, lport = sip_local.rsplit(":", 1)
    tip, tport = target.rsplit(":", 1)
    rip, rport = rtp_local.rsplit(":", 1)
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind((lip, int(lport)))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((rip, int(rport)))
    dest = (tip, int(tport))
    call_id = "longcall-%08x@%s" % (random.getrandbits(32), lip)
    ftag = "lc%06x" % random.getrandbits(24)
    sdp = ("v=0\r\no=alice 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
           "m=audio %s RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n") % (rip, rip, rport)

    def request(method, uri, cseq, to_tag="", body=""):
        branch = "z9hG4bKlc%08x" % random.getrandbits(32)
        head = [
            "%s %s SIP/2.0" % (method, uri),
            "Via: SIP/2.0/UDP %s:%s;branch=%s" % (lip, lport, branch),
            "From: <sip:alice@opa.example>;tag=%s" % ftag,
            "To: <sip:bob@opb.example>%s" % (";tag=" + to_tag if to_tag else ""),
            "Call-ID: %s" % call_id,
            "CSeq: %d %s" % (cseq, method),
            "Contact: <sip:alice@%s:%s>" % (lip, lport),
            "Max-Forwards: 70",
        ]
        if body:
            head.append("Content-Type: application/sdp")
        head.append("Content-Length: %d" % len(body))
        return ("\r\n".join(head) + "\r\n\r\n" + body).encode()

    def transact(msg, want_final=True, tries=20):
        """Sends msg until a final response arrives (retransmitting every 500 ms); returns it."""
        for _ in range(tries):
            sip.sendto(msg, dest)
            deadline = time.time() + 0.5
            while time.time() < deadline:
                sip.settimeout(max(0.01, deadline - time.time()))
                try:
                    data, _ = sip.recvfrom(65535)
                except socket.timeout:
                    break
                text = data.decode(errors="replace")
                m = re.match(r"SIP/2.0 (\d+)", text)
                if m and int(m.group(1)) >= 200:
                    return int(m.group(1)), text
        return 0, ""

    uri = "sip:bob@%s" % target
    status, answer = transact(request("INVITE", uri, 1, body=sdp))
    if status != 200:
        print("longcall setup=%d sent=0 echoed=0 loss_pct=100 max_gap_ms=inf bye=0" % status)
        return 1
    to_tag = re.search(r"(?im)^To:.*;tag=([^;\s]+)", answer).group(1)
    contact = re.search(r"(?im)^Contact:\s*<([^>]+)>", answer)
    ruri = contact.group(1) if contact else uri
    cip = re.search(r"(?m)^c=IN IP4 (\S+)", answer).group(1)
    mport = int(re.search(r"(?m)^m=audio (\d+)", answer).group(1))
    sip.sendto(request("ACK", ruri, 1, to_tag), dest)

    arrivals = []
    stop = threading.Event()

    def receive():
        rtp.settimeout(0.2)
        while not stop.is_set():
            try:
                rtp.recvfrom(2048)
            except socket.timeout:
                continue
            arrivals.append(time.time())

    rx = threading.Thread(target=receive)
    rx.start()
    sent, seq, ts, ssrc = 0, 0, 0, random.getrandbits(32)
    start = time.time()
    nxt = start
    while time.time() - start < secs:
        pkt = bytes([0x80, 0]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + \
            ssrc.to_bytes(4, "big") + b"\xff" * 160
        rtp.sendto(pkt, (cip, mport))
        sent += 1
        seq = (seq + 1) & 0xFFFF
        ts = (ts + 160) & 0xFFFFFFFF
        nxt += 0.02
        time.sleep(max(0.0, nxt - time.time()))
    time.sleep(0.5)
    stop.set()
    rx.join()
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    if arrivals:
        gaps.append(arrivals[0] - start)
    max_gap = max(gaps) * 1000 if gaps else float("inf")
    bye, _ = transact(request("BYE", ruri, 2, to_tag))
    loss = 100.0 * (sent - len(arrivals)) / sent if sent else 100.0
    print("longcall setup=200 sent=%d echoed=%d loss_pct=%.2f max_gap_ms=%.0f bye=%d"
          % (sent, len(arrivals), loss, max_gap, bye))
    return 0


if __name__ == "__main__":
    sys.exit(main())
