"""From behind a corporate proxy: HTTPS_PROXY / HTTP_PROXY / NO_PROXY and a custom CA bundle, for
Metronome and for the stores, through a real forward proxy on loopback that counts what it
carried (tests/proxy.py)."""

import base64
import datetime
import ipaddress

import orjson
import pytest

from segmetro.emulator import EmulatorState, Faults, tls_context
from segmetro.timestamps import parse_rfc3339
from tests.conftest import SAMPLE, SAMPLE_NOW, jsonl, track
from tests.harness import BackgroundEmulator
from tests.proxy import ForwardProxy, TlsFront

TOKEN = "proxy-test-token"
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy",
                   "http_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1: the company's own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "segmetro test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.fixture
def https_metronome(certificate, tmp_path):
    store = open(tmp_path / "store.jsonl", "ab")
    state = EmulatorState(TOKEN, Faults(), now_ms=parse_rfc3339(SAMPLE_NOW), store=store)
    with BackgroundEmulator(state, host="localhost", tls=tls_context(*certificate)) as server:
        yield server
    store.close()


def send(run, server, *extra):
    result = run("send", str(SAMPLE), "--now", SAMPLE_NOW, "--api-token", TOKEN,
                 "--base-url", server.base_url, "--json", "-q", *extra)
    return result, orjson.loads(result.stdout)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_send_goes_through_the_https_proxy_and_trusts_the_ca_bundle(variable, certificate,
                                                                    https_metronome, run,
                                                                    monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv(variable, certificate[0])
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        result, found = send(run, https_metronome)
        auth = run("check-auth", "--api-token", TOKEN, "--base-url", https_metronome.base_url)
    assert result.exit_code == 1, result.stderr  # the sample's rejects; every valid one sent
    assert found["sent"] == found["events"] > 0
    assert auth.exit_code == 0, auth.stderr
    tunnels = proxy.seen[("CONNECT", f"localhost:{https_metronome.port}")]
    assert tunnels >= 2  # the upload's pools, and check-auth's client


def test_the_proxy_gets_the_credentials_of_its_url(certificate, https_metronome, run,
                                                   monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificate[0])
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("://", "://ops:pr%40xy-pass@"))
        result, found = send(run, https_metronome)
    assert found["sent"] == found["events"] > 0, result.stderr
    assert proxy.credentials == {"Basic " + base64.b64encode(b"ops:pr@xy-pass").decode()}
    assert "pr@xy-pass" not in result.stdout + result.stderr


def test_without_the_ca_bundle_the_certificate_is_refused(certificate, https_metronome, run,
                                                          monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    result = run("check-auth", "--api-token", TOKEN, "--base-url", https_metronome.base_url,
                 "--timeout", "5")
    assert result.exit_code == 3
    assert "TLS certificate is not trusted (self-signed certificate)" in result.stderr
    assert "REQUESTS_CA_BUNDLE or SSL_CERT_FILE" in result.stderr
    # a send stops at once, without retries, saying the same; nothing was sent
    result, found = send(run, https_metronome)
    assert result.exit_code == 3 and found["sent"] == 0 and found["retries"] == 0
    assert "TLS certificate is not trusted" in found["aborted"]
    result = run("preflight", str(SAMPLE), "--api-token", TOKEN, "--base-url",
                 https_metronome.base_url, "--now", SAMPLE_NOW)
    assert result.exit_code == 3 and "TLS certificate is not trusted" in result.stderr


def test_no_proxy_hosts_are_reached_directly(certificate, https_metronome, run, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificate[0])
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "example.com,localhost")
        result, found = send(run, https_metronome)
    assert found["sent"] == found["events"] > 0
    assert not proxy.seen


def test_a_proxy_password_is_never_printed(certificate, run, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pr0xy-s3cret@127.0.0.1:9/")
    result = run("check-auth", "--api-token", TOKEN, "--base-url", "https://localhost:9",
                 "--timeout", "1")
    assert result.exit_code == 3
    assert "pr0xy-s3cret" not in result.output + result.stderr


def test_the_stores_go_through_the_proxy(monkeypatch, tmp_path, run):
    pytest.importorskip("s3fs")
    pytest.importorskip("gcsfs")
    from tests.servers import free_port, gcs_command, loopback_server, moto_command
    from tests.test_stores import NOW

    s3_port, gcs_port = free_port(), free_port()
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{s3_port}")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{gcs_port}")
    with loopback_server(moto_command(s3_port), s3_port), \
            loopback_server(gcs_command(gcs_port), gcs_port):
        import s3fs
        from gcsfs.core import GCSFileSystem

        lines = jsonl(track(1), track(2))
        s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": f"http://127.0.0.1:{s3_port}"},
                               skip_instance_cache=True)
        s3.mkdir("proxied")
        s3.pipe("proxied/a.jsonl", lines)
        gcs = GCSFileSystem(token="anon", skip_instance_cache=True)
        gcs.mkdir("proxied")
        gcs.pipe("proxied/a.jsonl", lines)
        with ForwardProxy() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("http_proxy", proxy.url)
            results = [run("send", "--dry-run", "--now", NOW, "--json", "-q", url)
                       for url in ("s3://proxied/a.jsonl", "gs://proxied/a.jsonl")]
    for result in results:
        assert result.exit_code == 0, result.stderr
        assert orjson.loads(result.stdout)["events"] == 2
    hosts = {host for _method, host in proxy.seen}
    assert hosts == {f"127.0.0.1:{s3_port}", f"127.0.0.1:{gcs_port}"}


def test_an_s3_store_behind_a_private_ca_is_read_with_the_bundle_and_refused_without(
        certificate, monkeypatch, run):
    pytest.importorskip("s3fs")
    from tests.servers import free_port, loopback_server, moto_command
    from tests.test_stores import NOW

    port = free_port()
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"https://localhost:{port}")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with loopback_server(moto_command(port) + ["-c", certificate[0], "-k", certificate[1]],
                         port):
        import s3fs

        s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": f"https://localhost:{port}",
                                              "verify": certificate[0]},
                               skip_instance_cache=True)
        s3.mkdir("private-ca")
        s3.pipe("private-ca/a.jsonl", jsonl(track(1), track(2)))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificate[0])
        trusted = run("send", "--dry-run", "--now", NOW, "--json", "-q", "s3://private-ca/a.jsonl")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        refused = run("send", "--dry-run", "s3://private-ca/a.jsonl")
    assert trusted.exit_code == 0, trusted.stderr
    assert orjson.loads(trusted.stdout)["events"] == 2
    assert refused.exit_code == 3, refused.stderr
    assert "TLS certificate is not trusted" in refused.stderr
    assert "REQUESTS_CA_BUNDLE or SSL_CERT_FILE" in refused.stderr


def test_a_gcs_store_behind_a_private_ca_is_read_with_the_bundle(
        certificate, tmp_path):
    pytest.importorskip("gcsfs")
    import os
    import subprocess
    import sys

    from tests.servers import free_port, gcs_command, loopback_server
    from tests.test_stores import NOW

    port = free_port()
    with loopback_server(gcs_command(port), port):
        from gcsfs.core import GCSFileSystem

        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        try:
            gcs = GCSFileSystem(token="anon", skip_instance_cache=True)
            gcs.mkdir("private-ca")
            gcs.pipe("private-ca/a.jsonl", jsonl(track(1), track(2)))
        finally:
            del os.environ["STORAGE_EMULATOR_HOST"]
        front = TlsFront(certificate, port)
        try:
            def send(bundle):  # a process of its own: aiohttp reads the bundle when imported
                env = {k: v for k, v in os.environ.items() if k not in (
                    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", *PROXY_VARIABLES)}
                env.update(STORAGE_EMULATOR_HOST=f"https://localhost:{front.port}",
                           REQUESTS_CA_BUNDLE=bundle)
                return subprocess.run(
                    [sys.executable, "-m", "segmetro", "send", "--dry-run", "--now", NOW,
                     "--json", "-q", "--rejects", str(tmp_path / "r.jsonl"),
                     "gs://private-ca/a.jsonl"], env=env, capture_output=True, text=True,
                    timeout=120)

            trusted = send(certificate[0])
        finally:
            front.close()
    # (refused without it, gcsfs retries for ~30 s before the same exit 3 as S3's: not run here)
    assert trusted.returncode == 0, trusted.stderr
    assert orjson.loads(trusted.stdout)["events"] == 2


def test_a_ca_bundle_that_cannot_be_loaded_is_a_configuration_error(run, monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
    result = run("check-auth", "--api-token", TOKEN, "--base-url", "https://localhost:9")
    assert result.exit_code == 2
    assert "the CA bundle (REQUESTS_CA_BUNDLE=" in result.stderr and "cannot be loaded" in \
        result.stderr
