"""The protocol registry: built-in protocols by name (``bench protocols list``)."""

from __future__ import annotations

from evaluation.protocols.model import Protocol, ProtocolError

_REGISTRY: dict[str, Protocol] = {}


def register_protocol(p: Protocol) -> Protocol:
    p.validate()
    if p.name in _REGISTRY:
        raise ProtocolError(f"protocol {p.name!r} is already registered")
    _REGISTRY[p.name] = p
    return p


def _load() -> None:
    if not _REGISTRY:
        from evaluation.protocols.definitions import PROTOCOLS

        for p in PROTOCOLS:
            register_protocol(p)


def list_protocols() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_protocol(name: str) -> Protocol:
    """A protocol by ``name`` or ``name@version`` (the version must then match)."""
    _load()
    base, _, version = str(name).partition("@")
    p = _REGISTRY.get(base)
    if p is None:
        raise ProtocolError(f"unknown protocol {name!r}; known: {', '.join(list_protocols())} "
                            "(`bench protocols list`)")
    if version and version != p.version:
        raise ProtocolError(f"protocol {base!r} is at version {p.version}, not {version}")
    return p
