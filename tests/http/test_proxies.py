"""Trusted proxies behind a real nginx: with the proxy block the README recommends
(examples/nginx-proxy.conf), over TCP and over a unix socket, the app sees
wsgi.url_scheme https when nginx terminated TLS, and only when nginx is a trusted peer
(forwarded_allow_ips; unix-socket clients are trusted, as in gunicorn). nginx is
installed by tests/run.sh and started here on loopback ports of the test's own."""
import json
import os
import shutil
import signal
import socket
import ssl
import time
import subprocess

import pytest

from harness import REPO, build_request, free_port, wait_for

pytestmark = pytest.mark.unitcorn_only

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_BLOCK = REPO / "examples" / "nginx-proxy.conf"


class Nginx:
    def __init__(self, workdir, tcp_upstream, unix_upstream):
        self.dir = workdir
        self.http_port, self.https_port = free_port(), free_port()
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / sub).mkdir()
        key, cert = workdir / "key.pem", workdir / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True, timeout=30)
        location = """
            location / {{ proxy_pass http://{up}; include {block}; }}
            location /via-unix/ {{ proxy_pass http://{unix}/; include {block}; }}
        """.format(up="app_tcp", unix="app_unix", block=PROXY_BLOCK)
        conf = """
            user root;
            daemon off;
            pid {d}/nginx.pid;
            error_log {d}/error.log info;
            events {{ worker_connections 256; }}
            http {{
                access_log {d}/access.log;
                client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
                fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi;
                scgi_temp_path {d}/scgi;
                upstream app_tcp {{ server {tcp}; keepalive 4; }}
                upstream app_unix {{ server unix:{unix}; keepalive 4; }}
                server {{ listen 127.0.0.1:{http}; {location} }}
                server {{
                    listen 127.0.0.1:{https} ssl;
                    ssl_certificate {cert}; ssl_certificate_key {key};
                    {location}
                }}
            }}
        """.format(d=workdir, tcp=tcp_upstream, unix=unix_upstream, http=self.http_port,
                   https=self.https_port, cert=cert, key=key, location=location)
        (workdir / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen([NGINX, "-c", str(workdir / "nginx.conf"), "-p",
                                      str(workdir)], stdout=subprocess.DEVNULL,
                                     stderr=open(workdir / "stderr", "wb"),
                                     start_new_session=True)
        up = wait_for(lambda: self._listening(), 10)
        assert up, "nginx did not start: %s" % (workdir / "stderr").read_text()

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.https_port), 0.5).close()
            return True
        except OSError:
            return None

    def get(self, path, tls, headers=()):
        """GET through nginx; the parsed JSON body and the status."""
        raw = socket.create_connection(
            ("127.0.0.1", self.https_port if tls else self.http_port), 10)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
        headers = [("Host", "shop.example"), ("Connection", "close")] + list(headers)
        raw.sendall(build_request("GET", path, headers=headers))
        data = b""
        raw.settimeout(10)
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                break
            data += chunk
        raw.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def behind_nginx(start_server, tmp_path):
    """behind_nginx(*unitcorn_args) -> (server, nginx): unitcorn on TCP and a unix socket,
    nginx in front of both."""
    started = []

    def start(*args):
        port = free_port()
        sock = tmp_path / "app.sock"
        s = start_server("wsgiapp:app", "-w", "1", *args,
                         bind=["127.0.0.1:%d" % port, "unix:%s" % sock])
        (tmp_path / "nginx").mkdir()
        n = Nginx(tmp_path / "nginx", "127.0.0.1:%d" % port, sock)
        started.append(n)
        return s, n

    yield start
    for n in started:
        n.stop()


def environ_via(n, tls, path="/environ", headers=()):
    status, body = n.get(path, tls, headers)
    assert status == 200, (status, body[:500])
    return json.loads(body)["values"]


def test_https_at_nginx_is_https_for_the_app_over_tcp_and_unix(behind_nginx):
    s, n = behind_nginx()
    for prefix in ("", "/via-unix"):
        e = environ_via(n, True, prefix + "/environ")
        assert e["wsgi.url_scheme"] == "https", (prefix, e)
        assert e["HTTP_X_FORWARDED_PROTO"] == "https"
        assert e["HTTP_HOST"] == "shop.example"
        assert e["HTTP_X_REAL_IP"] == "127.0.0.1"
        assert e["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
        plain = environ_via(n, False, prefix + "/environ")
        assert plain["wsgi.url_scheme"] == "http", (prefix, plain)
    # The TCP hop: REMOTE_ADDR is nginx (gunicorn does not rewrite it either).
    assert environ_via(n, True, "/environ")["REMOTE_ADDR"] == "127.0.0.1"


def test_an_untrusted_nginx_says_nothing_over_tcp(behind_nginx):
    s, n = behind_nginx("--forwarded-allow-ips", "10.9.8.7")
    assert environ_via(n, True, "/environ")["wsgi.url_scheme"] == "http"
    # A unix-socket peer is trusted whatever the list says (the proxy is local).
    assert environ_via(n, True, "/via-unix/environ")["wsgi.url_scheme"] == "https"


def test_a_trusted_network_in_cidr_notation(behind_nginx):
    s, n = behind_nginx("--forwarded-allow-ips", "10.0.0.0/8,127.0.0.0/8")
    assert environ_via(n, True, "/environ")["wsgi.url_scheme"] == "https"


def test_a_client_cannot_claim_https_when_not_trusted(start_server):
    s = start_server("wsgiapp:app", "--forwarded-allow-ips", "10.9.8.7")
    r = s.get("/environ", headers=[("X-Forwarded-Proto", "https")])
    assert json.loads(r.body)["values"]["wsgi.url_scheme"] == "http"


def test_trusted_direct_client_and_contradicting_scheme_headers(start_server):
    s = start_server("wsgiapp:app")     # 127.0.0.1 is trusted by default, as in gunicorn
    r = s.get("/environ", headers=[("X-Forwarded-Ssl", "on")])
    assert json.loads(r.body)["values"]["wsgi.url_scheme"] == "https"
    r = s.get("/environ", headers=[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")])
    assert r.status == 400, r
    assert s.get("/pid").status == 200


def test_secure_scheme_headers_from_the_config_file(start_server, tmp_path):
    cfg = tmp_path / "app.toml"
    cfg.write_text('secure_scheme_headers = { "X-Scheme" = "https" }\n')
    s = start_server("wsgiapp:app", "-c", cfg)
    r = s.get("/environ", headers=[("X-Scheme", "https")])
    assert json.loads(r.body)["values"]["wsgi.url_scheme"] == "https"
    # The defaults are replaced, not added to.
    r = s.get("/environ", headers=[("X-Forwarded-Proto", "https")])
    assert json.loads(r.body)["values"]["wsgi.url_scheme"] == "http"


def test_script_name_from_a_trusted_proxy_only(start_server):
    s = start_server("wsgiapp:app")
    r = s.get("/shop/environ", headers=[("SCRIPT_NAME", "/shop")])
    e = json.loads(r.body)["values"]
    assert e["SCRIPT_NAME"] == "/shop" and e["PATH_INFO"] == "/environ", e
    untrusted = start_server("wsgiapp:app", "--forwarded-allow-ips", "10.9.8.7")
    r = untrusted.get("/environ", headers=[("SCRIPT_NAME", "/shop")])
    e = json.loads(r.body)["values"]
    assert e["SCRIPT_NAME"] == "" and "HTTP_SCRIPT_NAME" not in e, e


# ----- PROXY protocol (HAProxy's v1/v2): REMOTE_ADDR is the client the header names.

def _v2(src, dst, sport, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + sport.to_bytes(2, "big") \
        + dport.to_bytes(2, "big")
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + len(body).to_bytes(2, "big") + body


def _raw(s, data, timeout=5):
    """Send raw bytes, read until the server closes; the bytes received."""
    c = socket.create_connection(s.addr, timeout)
    try:
        c.sendall(data)
        out = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        c.close()


def _environ(response):
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:300]
    return json.loads(body)["values"]


GET_ENVIRON = build_request("GET", "/environ", headers=[("Connection", "close")])


def start_proxied(start_server, *args, header=b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n",
                  **kw):
    """A server that requires PROXY headers: ready once a request with one is served (the
    fixture's own readiness probe speaks plain HTTP)."""
    s = start_server("wsgiapp:app", *args, wait=False, **kw)

    def served():
        try:
            return _raw(s, header + GET_ENVIRON, timeout=2).startswith(b"HTTP/1.1 200") or None
        except OSError:
            return None
    assert wait_for(served, 30), s.stderr()[-2000:]
    return s


def test_proxy_protocol_v1_and_v2_set_remote_addr(start_server):
    s = start_server("wsgiapp:app", "--proxy-protocol", "auto", "--access-logfile", "-")
    e = _environ(_raw(s, b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 443\r\n" + GET_ENVIRON))
    assert (e["REMOTE_ADDR"], e["REMOTE_PORT"]) == ("192.0.2.7", "56324"), e
    e = _environ(_raw(s, _v2("198.51.100.9", "127.0.0.1", 40000, 443) + GET_ENVIRON))
    assert (e["REMOTE_ADDR"], e["REMOTE_PORT"]) == ("198.51.100.9", "40000"), e
    # auto: a connection without a header is plain HTTP.
    assert _environ(_raw(s, GET_ENVIRON))["REMOTE_ADDR"] == "127.0.0.1"
    # The access log names the client too.
    assert wait_for(lambda: "192.0.2.7 " in s.stdout() and "198.51.100.9 " in s.stdout(), 5), \
        s.stdout()


def test_proxy_protocol_required_malformed_and_version_mismatch_are_refused_400(
        start_server):
    """As gunicorn does (its corpus's invalid pp_01..03): a 400, then the close, so the
    proxy's operator sees why in its own log."""
    s = start_proxied(start_server, "--proxy-protocol", "v1")
    for bad in (GET_ENVIRON,                                        # missing
                b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n" + GET_ENVIRON,  # malformed
                _v2("192.0.2.1", "127.0.0.1", 1, 2) + GET_ENVIRON):  # v2 in v1 mode
        out = _raw(s, bad)
        assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in out, \
            (bad[:40], out[:200])
        assert b"REMOTE_ADDR" not in out, out    # the app never ran
    assert s.wait_log(r"Invalid request from ip=127\.0\.0\.1: no PROXY protocol v1 header")
    # The worker lives on.
    e = _environ(_raw(s, b"PROXY TCP4 192.0.2.7 127.0.0.1 1 443\r\n" + GET_ENVIRON))
    assert e["REMOTE_ADDR"] == "192.0.2.7"


def test_proxy_header_from_a_peer_not_allowed_is_not_believed(start_server):
    s = start_server("wsgiapp:app", "--proxy-protocol", "v1",
                     "--proxy-allow-from", "10.9.8.7")
    # Plain HTTP from this peer; a PROXY line is then a bad request, never a new address.
    assert _environ(_raw(s, GET_ENVIRON))["REMOTE_ADDR"] == "127.0.0.1"
    out = _raw(s, b"PROXY TCP4 192.0.2.7 127.0.0.1 1 443\r\n" + GET_ENVIRON)
    assert out.startswith(b"HTTP/1.1 400"), out[:200]


def test_proxy_protocol_header_trickled_and_timed_out(start_server):
    s = start_proxied(start_server, "--proxy-protocol", "v2", "--header-timeout", "1",
                      header=_v2("192.0.2.1", "127.0.0.1", 1, 2))
    c = socket.create_connection(s.addr, 5)
    data = _v2("192.0.2.44", "127.0.0.1", 5555, 443) + GET_ENVIRON
    for i in range(0, len(data), 7):                   # in pieces, within the time
        c.sendall(data[i:i + 7])
        time.sleep(0.01)
    out = b""
    while not out.endswith(b"}") and len(out) < 1 << 20:
        chunk = c.recv(65536)
        if not chunk:
            break
        out += chunk
    c.close()
    assert _environ(out)["REMOTE_ADDR"] == "192.0.2.44"
    # Half a header and then nothing: dropped after header_timeout.
    c = socket.create_connection(s.addr, 5)
    c.sendall(data[:10])
    t0 = time.monotonic()
    assert c.recv(100) == b""
    assert 0.8 < time.monotonic() - t0 < 3
    c.close()


def test_nginx_stream_proxy_protocol_reaches_the_app(start_server, tmp_path):
    """A real nginx in stream mode (TCP pass-through, `proxy_protocol on`) sends the v1
    header the way HAProxy or a cloud load balancer would."""
    upstream = free_port()
    s = start_proxied(start_server, "--proxy-protocol", "v1",
                      bind="127.0.0.1:%d" % upstream)
    d = tmp_path / "nginx-stream"
    d.mkdir()
    front = free_port()
    modules = "/usr/lib/nginx/modules/ngx_stream_module.so"
    (d / "nginx.conf").write_text("""
        load_module {modules};
        daemon off; pid {d}/nginx.pid; error_log {d}/error.log info;
        events {{ worker_connections 64; }}
        stream {{
            server {{ listen 127.0.0.2:{front}; proxy_pass 127.0.0.1:{up}; proxy_protocol on; }}
        }}
    """.format(modules=modules, d=d, front=front, up=upstream))
    proc = subprocess.Popen([NGINX, "-c", str(d / "nginx.conf"), "-p", str(d)],
                            stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "wb"),
                            start_new_session=True)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.2", front), 0.5).close()
                return True
            except OSError:
                return None
        assert wait_for(up, 10), (d / "stderr").read_text()
        # From 127.0.0.3: nginx itself connects to unitcorn from 127.0.0.1.
        c = socket.create_connection(("127.0.0.2", front), 5, source_address=("127.0.0.3", 0))
        client_port = c.getsockname()[1]
        c.sendall(GET_ENVIRON)
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            out += chunk
        c.close()
        e = _environ(out)
        assert (e["REMOTE_ADDR"], e["REMOTE_PORT"]) == ("127.0.0.3", str(client_port)), e
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
