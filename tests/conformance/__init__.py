"""Conformance tests against a real Erlang/OTP supervisor."""

from __future__ import annotations
