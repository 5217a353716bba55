"""The control plane's certificates and keys (`cryptography`): CA, serving, admin client, SA key."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localcluster.node import kubelet_pki

VALIDITY = datetime.timedelta(days=365)
SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def make_ca(
    common_name: str = "localcluster-ca",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that signs the serving and client certificates."""
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    *,
    organization: str | None = None,
    server: bool = False,
    client_too: bool = False,
    ips: tuple[str, ...] = (),
    dns_names: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by `ca`: a client certificate, or a serving one with SANs
    (with `client_too`, one that also authenticates its holder as a client: mutual TLS between
    peers that share one certificate, as KEDA's operator and metrics server do)."""
    ca_cert, ca_key = ca
    key = _key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if client_too or not server:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        _builder(_name(common_name, organization), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def pair_pem(pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> tuple[bytes, bytes]:
    """A certificate and its key as PEM (the key unencrypted, PKCS#8)."""
    return _cert_pem(pair[0]), _key_pem(pair[1])


def _pair_files(
    name: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> dict[str, bytes]:
    cert, key = pair_pem(pair)
    return {f"{name}.crt": cert, f"{name}.key": key}


def write_pki(
    root: Path, service_ip: str, nodes: Sequence[tuple[str, str]] = (), apiserver_ip: str = ""
) -> None:
    """Write into `root`: ca.crt/key, apiserver.crt/key (serving), admin.crt/key (client, group
    system:masters) and sa.key/sa.pub (service-account token signing).

    With `nodes` = [(node name, node IP), ...] also the real nodes': for each, its kubelet's
    client (user system:node:NAME) and serving certificates (kubelet.crt/key and
    kubelet-serving.crt/key for the first, kubelet-2.crt/key and kubelet-serving-2.crt/key for
    the second: node.kubelet_pki), and once kube-proxy.crt/key (user system:kube-proxy),
    apiserver-kubelet-client.crt/key (what the API server shows the kubelet for logs/exec), and
    front-proxy-ca.crt + front-proxy-client.crt/key (aggregated APIs such as metrics-server).
    `apiserver_ip`: one more address the API server is reached at (the node's side of it)."""
    root.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    ips = ("127.0.0.1", service_ip, *([apiserver_ip] if apiserver_ip else []))
    serving = issue(ca, "kube-apiserver", server=True, ips=ips, dns_names=SERVING_DNS_NAMES)
    admin = issue(ca, "localcluster-admin", organization="system:masters")
    sa_key = _key()
    files = {
        "ca.crt": _cert_pem(ca[0]),
        "ca.key": _key_pem(ca[1]),
        **_pair_files("apiserver", serving),
        **_pair_files("admin", admin),
        "sa.key": _key_pem(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    for index, (name, ip) in enumerate(nodes):
        client, serving_name = kubelet_pki(index)
        files.update(
            {
                **_pair_files(
                    client, issue(ca, f"system:node:{name}", organization="system:nodes")
                ),
                **_pair_files(
                    serving_name, issue(ca, name, server=True, ips=(ip,), dns_names=(name,))
                ),
            }
        )
    if nodes:
        front_proxy_ca = make_ca("localcluster-front-proxy-ca")
        files.update(
            {
                **_pair_files("kube-proxy", issue(ca, "system:kube-proxy")),
                **_pair_files(
                    "apiserver-kubelet-client",
                    issue(ca, "kube-apiserver-kubelet-client", organization="system:masters"),
                ),
                "front-proxy-ca.crt": _cert_pem(front_proxy_ca[0]),
                **_pair_files("front-proxy-client", issue(front_proxy_ca, "front-proxy-client")),
            }
        )
    for file_name, data in files.items():
        path = root / file_name
        path.write_bytes(data)
        if path.suffix == ".key":
            path.chmod(0o600)
