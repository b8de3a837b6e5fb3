#!/usr/bin/env python3
"""Write the starting corpora under fuzz/seeds/<target>/ from tests/data and conf/ and a few
hand-made inputs (FUZZING.md). `make fuzz` fuzzes into fuzz/corpus/<target>/ with these as
extra seeds; the committed corpora were grown from them and minimized with -merge=1."""
import glob
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")


def put(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def files(*patterns):
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    yield path, f.read()


# request: data file, control files, blank line.
for req in [
    "/var/lib/courier/tmp/D123\n/var/lib/courier/tmp/C123\n\n",
    "D123\nC123\nC123.1\n\n",
    "msg/D1\n\n",
    "/a\n/b\n/c\n\nextra",
    "\n",
]:
    put("request", req)

# control: Courier's control files.
for _, data in files("tests/data/*/control-*", "tests/data/demo/*.control"):
    put("control", data)
put("control", b"sa@b\x00rx@y\nR\nN\nS0 1\n")

# modules_file / chain_file: the shipped and test configurations.
for path, data in files("conf/*.conf", "conf/examples/*.conf", "tests/data/*/*.conf"):
    put("modules_file" if "modules" in os.path.basename(path) else "chain_file", data)

# literal: every value of the shipped modules files, and a few more.
for _, data in files("conf/*modules*.conf", "conf/examples/*modules*.conf",
                     "tests/data/*/*modules*.conf"):
    for line in data.decode("utf-8", "replace").splitlines():
        m = re.match(r"^#?\s*[A-Za-z_][A-Za-z0-9_]*\s*[=:]\s*(.+)$", line)
        if m:
            put("literal", m.group(1))
for lit in ["{'a': [1, 2.5, -3e2], 'b': (True, None)}", "'x' * 3", "0x1f", "u'\\u00e9'",
            "[\n 1,\n 2,\n]", "b'\\x00'", "r'\\d+'", "-(-1)", "{1, 2}"]:
    put("literal", lit)

# attachments: messages with attachments, and archives.
for _, data in files("tests/data/queuefiles/data-*", "tests/data/attachments/data-*",
                     "tests/data/daemon/data-*", "tests/data/spam/*.eml",
                     "tests/data/demo/*.data"):
    put("attachments", data)

# dns_response: answers of each type the resolver reads, with name compression.
def name(n):
    out = b""
    for label in n.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def response(qname, qtype, answers, rcode=0, flags=0x8180):
    hdr = struct.pack(">HHHHHH", 0x1234, flags | rcode, 1, len(answers), 0, 0)
    q = name(qname) + struct.pack(">HH", qtype, 1)
    body = b""
    for rtype, rdata in answers:
        body += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 300, len(rdata)) + rdata
    return hdr + q + body


put("dns_response", response("example.test", 1, [(1, bytes([192, 0, 2, 1])),
                                                  (1, bytes([192, 0, 2, 2]))]))
put("dns_response", response("example.test", 28, [(28, bytes(15) + b"\x01")]))
put("dns_response", response("example.test", 16, [(16, b"\x0bv=spf1 -all\x05 more")]))
put("dns_response", response("example.test", 15, [(15, b"\x00\x0a" + name("mx.example.test")),
                                                  (15, b"\x00\x14\x02mx\xc0\x0c")]))
put("dns_response", response("1.2.0.192.in-addr.arpa", 12, [(12, name("host.example.test"))]))
put("dns_response", response("alias.example.test", 1, [(5, b"\x04real\xc0\x12"),
                                                       (1, bytes([127, 0, 0, 2]))]))
put("dns_response", response("nx.example.test", 1, [], rcode=3))
put("dns_response", response("example.test", 1, [], flags=0x8380))

# spf: MAIL FROM, HELO, then the records of the RFC 7208 test suite.
records = []
for line in open(os.path.join(ROOT, "tests/data/spf/rfc7208-tests.yml"), encoding="utf-8"):
    m = re.search(r"(?:SPF|TXT):\s*(.*v=spf1.*)$", line)
    if m:
        rec = m.group(1).strip()
        if rec.startswith('"') and rec.endswith('"'):
            rec = rec[1:-1].encode().decode("unicode_escape", "replace")
        records.append(rec)
for i, rec in enumerate(dict.fromkeys(records)):
    sender = ["user@example.com", "", "a.b-c@sub.example.com"][i % 3]
    put("spf", f"{sender}\nmail.example.com\n{rec}\n")
put("spf", "u@example.com\nh.example.com\nv=spf1 include:%{d2}._spf.%{d} "
           "exists:%{ir}.%{l1r-}.e.%{d} redirect=other.example.com\nv=spf1 ip4:192.0.2.0/24 "
           "ip6:2001:db8::/32 mx/24 a//64 ptr -all exp=explain.%{d}\n%{i} is not %{p} %{c} %{r} %{t}\n")

# clamd_reply: the replies clamd sends.
for reply in [b"stream: OK\0", b"stream: Eicar-Signature FOUND\0", b"fd[10]: OK\n",
              b"fd[3]: Win.Test.EICAR_HDB-1(44d88612fea8a8f36de82e1278abb02f:68) FOUND\0",
              b"INSTREAM size limit exceeded. ERROR\0", b"COMMAND READ TIMED OUT\0",
              b"1: stream: OK\0", b"lstat() failed: No such file or directory. ERROR\n"]:
    put("clamd_reply", reply)

# spamc_output: messages as spamc -E returns them.
for _, data in files("tests/data/spam/*.eml"):
    put("spamc_output", b"X-Spam-Checker-Version: SpamAssassin 4.0.0\nX-Spam-Status: No, "
                        b"score=-1.0 required=5.0\n\ttests=ALL_TRUSTED autolearn=ham\n" + data)
for status in [b"Yes, score=1000.0 required=5.0 tests=GTUBE", b"No, score=0.1 required=5.0",
               b"Yes, score=nan required=5.0", b"Yes,\r\n score=7.2\r\n required=5.0"]:
    put("spamc_output", b"From: a@b\nX-Spam-Status: " + status + b"\nSubject: x\n\nbody\n")

# attachments: archives, bare and as MIME attachments (nested zip in zip, tar.gz).
import base64
import gzip
import io
import tarfile
import zipfile


def zip_of(members, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for n, d in members:
            z.writestr(n, d)
    return buf.getvalue()


def tar_of(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for n, d in members:
            info = tarfile.TarInfo(n)
            info.size = len(d)
            t.addfile(info, io.BytesIO(d))
    return buf.getvalue()


inner = zip_of([("evil.exe", b"MZ" + bytes(30))])
archives = [
    zip_of([("readme.txt", b"hello"), ("inner.zip", inner)]),
    zip_of([("a.bat", b"echo")], zipfile.ZIP_STORED),
    gzip.compress(tar_of([("dir/a.scr", b"x" * 100), ("b.txt", b"y")])),
    tar_of([("x.zip", inner)]),
    gzip.compress(b"plain text"),
]
for a in archives:
    put("attachments", a)
    put("attachments", (b"From: a@example.com\nTo: b@example.com\nSubject: files\n"
                        b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XX\"\n\n"
                        b"--XX\nContent-Type: text/plain\n\nsee attached\n--XX\n"
                        b"Content-Type: application/octet-stream; name=\"f.zip\"\n"
                        b"Content-Disposition: attachment; filename*=UTF-8''f%C3%A9.zip\n"
                        b"Content-Transfer-Encoding: base64\n\n"
                        + base64.encodebytes(a) + b"--XX--\n"))
put("attachments", b"Content-Type: message/rfc822\n\nContent-Type: multipart/mixed; "
                   b"boundary=b\n\n--b\nContent-Type: text/plain; name==?UTF-8?B?YS5leGU=?=\n"
                   b"Content-Transfer-Encoding: quoted-printable\n\nx=3D1=\n--b--\n")
