"""The loopback test CA and the TLS contexts of the loopback servers (test-only).

One self-signed test CA (:data:`LOOPBACK_CA_PEM`, its key thrown away) signed one
certificate for 127.0.0.1, ::1 and localhost, whose key is in this file. The Bot API
server (``tls=True``) and the WebSocket test server (``tls=True``) serve it; clients
trust it, and nothing else, with :func:`loopback_client_ssl_context`.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Final

__all__ = ["LOOPBACK_CA_PEM", "loopback_client_ssl_context", "loopback_server_ssl_context"]

LOOPBACK_CA_PEM: Final = """\
-----BEGIN CERTIFICATE-----
MIIBwzCCAWigAwIBAgICEAAwCgYIKoZIzj0EAwIwRzEZMBcGA1UECgwQdHJpby1z
dXBlcnZpc2lvbjEqMCgGA1UEAwwhdHJpby1zdXBlcnZpc2lvbiBsb29wYmFjayB0
ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIxMjUwMTAxMDAwMDAwWjBHMRkwFwYD
VQQKDBB0cmlvLXN1cGVydmlzaW9uMSowKAYDVQQDDCF0cmlvLXN1cGVydmlzaW9u
IGxvb3BiYWNrIHRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARdqOuo
V9EMhyEx2tlnUCSbaZ+sH35TlR1VTwD0oS2x0AntTm9zC4hbZHML7zoX7FUi+NHi
uOEgKkb56iR7mB9co0IwQDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIB
BjAdBgNVHQ4EFgQU1vhQqa1UUiTp13v5QG/1AxPkCuYwCgYIKoZIzj0EAwIDSQAw
RgIhAPFSNS9kY6eIxssNUiw6wgeWTef2wc5gw9/EL1MazjTTAiEAwz6tqxMr/Lo/
CX8zHGZxpnPZZjjIBAdNLzM1yX0GVDE=
-----END CERTIFICATE-----
"""
"""The test CA that signed the loopback server's certificate (valid 2000-2125).

Its key was thrown away after signing; trust it only in tests.
"""

# The server's certificate (127.0.0.1, ::1, localhost) and key. A key in the
# source is fine for a loopback test server and keeps tests free of openssl
# runs or extra packages; it protects nothing.
_SERVER_CERT_PEM: Final = """\
-----BEGIN CERTIFICATE-----
MIICDTCCAbOgAwIBAgICEAEwCgYIKoZIzj0EAwIwRzEZMBcGA1UECgwQdHJpby1z
dXBlcnZpc2lvbjEqMCgGA1UEAwwhdHJpby1zdXBlcnZpc2lvbiBsb29wYmFjayB0
ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIxMjUwMTAxMDAwMDAwWjAvMRkwFwYD
VQQKDBB0cmlvLXN1cGVydmlzaW9uMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAR6Dy1MN/7whfbyjahtKWrwhv6nN+LH2RDOXsHV
oXBnZhc5LSXyKrlhfr9VIERrPrAQF6nkp3UTtmf3u6gdCkbbo4GkMIGhMAwGA1Ud
EwEB/wQCMAAwDgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMCwG
A1UdEQQlMCOHBH8AAAGHEAAAAAAAAAAAAAAAAAAAAAGCCWxvY2FsaG9zdDAdBgNV
HQ4EFgQUYY16rgmrXnmglufPP6XQCTs2iB8wHwYDVR0jBBgwFoAU1vhQqa1UUiTp
13v5QG/1AxPkCuYwCgYIKoZIzj0EAwIDSAAwRQIgVAjdN7IPvM2cUD4R2P3GzKGg
42ZnB62Jq7A88IJq/YkCIQCBbn9AQgU8qJkH2kmJ7f9Cud8UwYjJF0VkXdbYMQzu
tA==
-----END CERTIFICATE-----
"""
_SERVER_KEY_PEM: Final = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxW5KS/kdolwt5Hlj
mgJ8rTsDRQzKdZoPbSx9zGlwOHehRANCAAR6Dy1MN/7whfbyjahtKWrwhv6nN+LH
2RDOXsHVoXBnZhc5LSXyKrlhfr9VIERrPrAQF6nkp3UTtmf3u6gdCkbb
-----END PRIVATE KEY-----
"""


def loopback_client_ssl_context() -> ssl.SSLContext:
    """A client TLS context that trusts the loopback test CA, and nothing else.

    Returns:
        A context to pass as httpx's ``verify=`` (or a WebSocket client's
        ``ssl_context``) when talking to a loopback server opened with ``tls=True``.
    """
    return ssl.create_default_context(cadata=LOOPBACK_CA_PEM)


def loopback_server_ssl_context() -> ssl.SSLContext:
    """A server TLS context that presents the loopback certificate.

    It reads the certificate through a temporary file: call it in a thread
    (``trio.to_thread.run_sync``), not on the event loop.

    Returns:
        A context for ``trio.SSLStream(..., server_side=True)`` or ``trio.SSLListener``.
    """
    # load_cert_chain only reads files, so the PEMs pass through a private
    # temporary directory that is gone before this returns
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "server.pem")
        with open(path, "w", encoding="ascii") as file:
            file.write(_SERVER_CERT_PEM + _SERVER_KEY_PEM)
        context.load_cert_chain(path)
    return context
