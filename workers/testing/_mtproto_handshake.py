"""The server side of MTProto's auth-key exchange, for the loopback server (test-only).

Follows https://core.telegram.org/mtproto/auth_key as Pyrogram's ``session/auth.py``
checks it: ``req_pq_multi`` -> ``resPQ`` with a fixed small ``pq`` and the fingerprint
of a *test* RSA key, ``req_DH_params`` -> ``server_DH_params_ok`` with Pyrogram's own
``CURRENT_DH_PRIME``, ``set_client_DH_params`` -> ``dh_gen_ok``.

Pyrogram encrypts with the RSA public key it finds by fingerprint in the plain dict
``pyrogram.crypto.rsa.server_public_keys``; :func:`install_test_rsa_key` adds the test
key there while it is active (the loopback redirect does so). The private key is in
this file: it protects nothing. ``server_time`` is read through the codec's
``unix_now``, the one place the MTProto loopback reads the wall clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from io import BytesIO
from typing import Any, Final

import pyrogram.raw
from pyrogram.crypto import aes, prime, rsa
from pyrogram.raw.core.tl_object import TLObject

from ._mtproto_codec import unix_now

# ``pyrogram.raw`` is generated code whose modules do not re-export their names, so under
# ``mypy --strict`` (no implicit re-export) every ``raw.types.X`` would be an error: use
# it untyped.
raw: Any = pyrogram.raw

__all__ = ["TEST_RSA_FINGERPRINT", "Handshake", "HandshakeError", "install_test_rsa_key"]

_P: Final = int(
    "FD0C28B04027A5ECBAD80C546E6578C721315CF99B4ACDEE90BBF5E85E9E56F7"
    "866B62030C74EB809702D2C6F54AC0E7D2DAB1CD8360016E635875E900023EE0"
    "1A3142EE9A57BE659282B82FF3ED58544658DE42727FFCB4C81D96698DF5B7DF"
    "D142C12D53AC2E28F2C4ED72046C3F1AB325A8E275ECBB77108535FD1812FDA3",
    16,
)
_Q: Final = int(
    "B5B5A719B2DEDCEAE61CEAB858B4C19E592FC1B19A41A1EB7ED5FF30BBC5D746"
    "880A23122D19BE87D939EECA528DC871352F12DBE05B9C9307799B08AC1960E9"
    "BCAEBD15A1753C5D5228A15B788B747A08AE7B005C35E945D359CC2ACE1923FB"
    "EA08AA5999DE7630D7EBC0F6240E7618297F30A1B220C66702B176625BF3A26B",
    16,
)
_E: Final = 65537
_N: Final = _P * _Q
_D: Final = pow(_E, -1, (_P - 1) * (_Q - 1))

TEST_RSA_FINGERPRINT: Final = int.from_bytes(
    hashlib.sha1(b"trio-supervision loopback RSA key").digest()[-8:], "little", signed=True
)
"""The fingerprint the loopback server announces for its test RSA key."""

# pq = 1229739323 * 1402015859, the example in Telegram's documentation.
_PQ: Final = 0x17ED48941A08F981
_G: Final = 3
_BOUND: Final = 2 ** (2048 - 64)


class HandshakeError(Exception):
    """The client sent something the key exchange does not allow."""


@contextlib.contextmanager
def install_test_rsa_key() -> Iterator[None]:
    """Let Pyrogram encrypt to the test RSA key while the block runs (test-only).

    Yields:
        Nothing.
    """
    already = TEST_RSA_FINGERPRINT in rsa.server_public_keys
    if not already:
        rsa.server_public_keys[TEST_RSA_FINGERPRINT] = rsa.PublicKey(_N, _E)
    try:
        yield
    finally:
        if not already:
            rsa.server_public_keys.pop(TEST_RSA_FINGERPRINT, None)


def _int128() -> int:
    return int.from_bytes(os.urandom(16), "little", signed=True)


def _tmp_aes(new_nonce: bytes, server_nonce: bytes) -> tuple[bytes, bytes]:
    key = (
        hashlib.sha1(new_nonce + server_nonce).digest()
        + hashlib.sha1(server_nonce + new_nonce).digest()[:12]
    )
    iv = (
        hashlib.sha1(server_nonce + new_nonce).digest()[12:]
        + hashlib.sha1(new_nonce + new_nonce).digest()
        + new_nonce[:4]
    )
    return key, iv


class Handshake:
    """One connection's auth-key exchange, driven by the client's plain messages.

    Attributes:
        auth_key: the new auth key once the exchange is complete, else None.
    """

    def __init__(self) -> None:
        """Start an exchange that waits for ``req_pq_multi``."""
        self.auth_key: bytes | None = None
        self._nonce: int | None = None
        self._server_nonce = _int128()
        self._new_nonce = b""
        self._a = 0
        self._tmp: tuple[bytes, bytes] | None = None

    def answer(self, query: Any) -> Any:
        """Answer one unencrypted request.

        Args:
            query: the parsed ``pyrogram.raw.functions`` request.

        Returns:
            The TL object to send back.

        Raises:
            HandshakeError: if the request is out of order or fails a check.
        """
        if isinstance(query, (raw.functions.ReqPqMulti, raw.functions.ReqPq)):
            self._nonce = query.nonce
            return raw.types.ResPQ(
                nonce=query.nonce,
                server_nonce=self._server_nonce,
                pq=_PQ.to_bytes(8, "big"),
                server_public_key_fingerprints=[TEST_RSA_FINGERPRINT],
            )
        self._check_nonces(query)
        if isinstance(query, raw.functions.ReqDHParams):
            return self._dh_params(query)
        if isinstance(query, raw.functions.SetClientDHParams):
            return self._client_dh_params(query)
        raise HandshakeError(f"unexpected plain message {type(query).__name__}")

    def _check_nonces(self, query: Any) -> None:
        if self._nonce is None:
            raise HandshakeError("req_pq_multi first")
        if query.nonce != self._nonce or query.server_nonce != self._server_nonce:
            raise HandshakeError("nonce mismatch")

    def _dh_params(self, query: Any) -> Any:
        if query.public_key_fingerprint != TEST_RSA_FINGERPRINT:
            raise HandshakeError("unknown RSA key")
        decrypted = pow(int.from_bytes(query.encrypted_data, "big"), _D, _N).to_bytes(255, "big")
        inner = TLObject.read(BytesIO(decrypted[20:]))
        if not isinstance(inner, raw.types.PQInnerData):
            raise HandshakeError("expected p_q_inner_data")
        if hashlib.sha1(inner.write()).digest() != decrypted[:20]:
            raise HandshakeError("p_q_inner_data hash mismatch")
        if int.from_bytes(inner.pq, "big") != _PQ:
            raise HandshakeError("pq mismatch")
        self._new_nonce = inner.new_nonce.to_bytes(32, "little", signed=True)
        server_nonce = self._server_nonce.to_bytes(16, "little", signed=True)
        self._tmp = _tmp_aes(self._new_nonce, server_nonce)
        g_a = 0
        while not _BOUND < g_a < prime.CURRENT_DH_PRIME - _BOUND:
            self._a = int.from_bytes(os.urandom(256), "big")
            g_a = pow(_G, self._a, prime.CURRENT_DH_PRIME)
        answer = raw.types.ServerDHInnerData(
            nonce=self._nonce,
            server_nonce=self._server_nonce,
            g=_G,
            dh_prime=prime.CURRENT_DH_PRIME.to_bytes(256, "big"),
            g_a=g_a.to_bytes(256, "big"),
            server_time=int(unix_now()),
        ).write()
        with_hash = hashlib.sha1(answer).digest() + answer
        with_hash += os.urandom(-len(with_hash) % 16)
        return raw.types.ServerDHParamsOk(
            nonce=self._nonce,
            server_nonce=self._server_nonce,
            encrypted_answer=aes.ige256_encrypt(with_hash, *self._tmp),
        )

    def _client_dh_params(self, query: Any) -> Any:
        if self._tmp is None:
            raise HandshakeError("req_DH_params first")
        decrypted = aes.ige256_decrypt(query.encrypted_data, *self._tmp)
        inner = TLObject.read(BytesIO(decrypted[20:]))
        if not isinstance(inner, raw.types.ClientDHInnerData):
            raise HandshakeError("expected client_DH_inner_data")
        if hashlib.sha1(inner.write()).digest() != decrypted[:20]:
            raise HandshakeError("client_DH_inner_data hash mismatch")
        g_b = int.from_bytes(inner.g_b, "big")
        if not _BOUND < g_b < prime.CURRENT_DH_PRIME - _BOUND:
            raise HandshakeError("g_b out of range")
        auth_key = pow(g_b, self._a, prime.CURRENT_DH_PRIME).to_bytes(256, "big")
        aux_hash = hashlib.sha1(auth_key).digest()[:8]
        new_nonce_hash1 = int.from_bytes(
            hashlib.sha1(self._new_nonce + b"\x01" + aux_hash).digest()[-16:],
            "little",
            signed=True,
        )
        self.auth_key = auth_key
        return raw.types.DhGenOk(
            nonce=self._nonce, server_nonce=self._server_nonce, new_nonce_hash1=new_nonce_hash1
        )
