"""Who computed a shared artifact: ed25519 signing keys and the keys a run trusts.

Stores and cache entries written by mexkit are signed with the key of the lab
or machine that computed them, so that a run can use, from a shared cache or a
store received with ``--reuse``, only what was computed by someone it trusts
(DESIGN.md, "Trust in shared artifacts"; docs/sharing.md).

- The signing key is an ed25519 private key in a PEM file: ``MEXKIT_KEY`` if
  set, else ``$XDG_CONFIG_HOME/mexkit/signing-key.pem`` (``~/.config``),
  made on first use (mode 0600) with its public key beside it
  (``signing-key.pub.pem``).  A lab that wants one identity for all its
  machines and users points ``MEXKIT_KEY`` at one shared key file.
- A run trusts its own key and the public keys named with ``--trust KEYFILE``
  (or ``MEXKIT_TRUST``): PEM public keys, PEM private keys (their public
  half), or OpenSSH ``ssh-ed25519`` lines.
- A key is named by its *key id*, the hex of its 32 raw public bytes.

The signatures are made with the ``cryptography`` package (a maintained
binding of OpenSSL); what is signed is a SHA-256 digest the caller computes
(a store's whole-file checksum, a cache entry's key, data and attributes).
"""
from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParameterError, StoreError
from .atomic import temporary_name

__all__ = ["KEY_ENV", "TRUST_ENV", "Signer", "TrustedKeys", "default_key_path",
           "load_signer", "load_public_keys", "verify", "trusted_keys"]

logger = logging.getLogger("mexkit")

#: Environment variable naming the signing key file (a PEM ed25519 private key).
KEY_ENV = "MEXKIT_KEY"
#: Environment variable naming trusted public key files (separated by os.pathsep).
TRUST_ENV = "MEXKIT_TRUST"


def default_key_path() -> Path:
    """``MEXKIT_KEY``, else ``$XDG_CONFIG_HOME/mexkit/signing-key.pem``."""
    env = os.environ.get(KEY_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "mexkit" / "signing-key.pem"


def _crypto() -> Any:
    try:
        # start-up: cryptography loads only where stores are signed or checked
        from cryptography.hazmat.primitives import serialization  # start-up, as above
        from cryptography.hazmat.primitives.asymmetric import ed25519  # start-up, as above
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ParameterError("Signing needs the 'cryptography' package "
                             "(pip install cryptography).") from exc
    return serialization, ed25519


def _key_id(public: Any) -> str:
    serialization, _ = _crypto()
    return public.public_bytes(serialization.Encoding.Raw,
                               serialization.PublicFormat.Raw).hex()


@dataclass
class Signer:
    """A private signing key and its id."""

    path: Path
    key_id: str
    _key: Any = field(repr=False)

    def sign(self, digest: bytes) -> str:
        """Hex ed25519 signature of ``digest``."""
        return self._key.sign(bytes(digest)).hex()

    def public_pem(self) -> bytes:
        serialization, _ = _crypto()
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file (never over an existing one; no link followed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _make_key(path: Path) -> None:
    serialization, ed25519 = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # written whole under a temporary name, then linked into place: a reader never sees
    # half a key, and two processes making one at once keep the first
    tmp = temporary_name(path)
    _write_new(tmp, pem, 0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    pub = path.with_name(path.name.removesuffix(".pem") + ".pub.pem")
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        _write_new(pub, public, 0o644)
    except FileExistsError:
        pass
    logger.info("made the signing key %s (public key %s)", path, pub)


_SIGNERS: dict[str, Signer] = {}


def load_signer(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Signer:
    """The signing key at ``path`` (default :func:`default_key_path`), made if missing.

    Raises
    ------
    StoreError
        The file is not an ed25519 private key, or cannot be read or made.
    """
    path = Path(path).expanduser() if path is not None else default_key_path()
    cached = _SIGNERS.get(str(path))
    if cached is not None:
        return cached
    serialization, ed25519 = _crypto()
    try:
        if not path.exists():
            if not create:
                raise StoreError(f"no signing key at {path}")
            _make_key(path)
        st = os.stat(path)
        if st.st_mode & stat.S_IWOTH:
            raise StoreError(f"{path}: the signing key is writable by every user; mexkit "
                             "will not sign with it.")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except StoreError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"{path}: cannot read or make the signing key ({exc}).") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise StoreError(f"{path}: not an ed25519 private key.")
    signer = Signer(path, _key_id(key.public_key()), key)
    _SIGNERS[str(path)] = signer
    return signer


def load_public_keys(path: str | os.PathLike[str]) -> list[str]:
    """Key ids of the ed25519 public keys in a key file.

    Accepts PEM public keys, PEM private keys (their public half) and OpenSSH
    ``ssh-ed25519`` lines, several per file.
    """
    serialization, ed25519 = _crypto()
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParameterError(f"--trust {path}: cannot read the key file ({exc}).") from exc

    ids: list[str] = []
    text = data.decode("ascii", "replace")
    for m in re.finditer(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", text, re.S):
        pem = m.group(0).encode() + b"\n"
        try:
            if "PRIVATE" in m.group(1):
                key = serialization.load_pem_private_key(pem, password=None).public_key()
            else:
                key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"--trust {path}: not a readable PEM key ({exc}).") from exc
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ParameterError(f"--trust {path}: not an ed25519 key.")
        ids.append(_key_id(key))
    for line in text.splitlines():
        if line.startswith("ssh-ed25519 "):
            try:
                key = serialization.load_ssh_public_key(line.strip().encode())
            except (ValueError, TypeError) as exc:
                raise ParameterError(f"--trust {path}: unreadable ssh-ed25519 line ({exc})."
                                     ) from exc
            ids.append(_key_id(key))
    if not ids:
        raise ParameterError(f"--trust {path}: no ed25519 public key in the file.")
    return ids


def verify(key_id: str, digest: bytes, signature: str) -> bool:
    """True if ``signature`` (hex) is ``key_id``'s signature of ``digest``."""
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature  # start-up: as in _crypto

    try:
        public = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_id))
        public.verify(bytes.fromhex(signature), bytes(digest))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class TrustedKeys:
    """The key ids a run trusts (its own and those of ``--trust``), picklable for workers.

    Attributes
    ----------
    ids : frozenset of str
        Trusted key ids.
    own : str
        This run's own key id ("" when it has no key: then it signs nothing).
    key_path : str
        This run's signing key file (workers sign cache entries with it).
    """

    ids: frozenset[str]
    own: str = ""
    key_path: str = ""

    def trusts(self, key_id: str) -> bool:
        return bool(key_id) and key_id in self.ids

    def check(self, key_id: str, digest: bytes, signature: str) -> str:
        """'' if signed by a trusted key, else why not (one short phrase)."""
        if not key_id or not signature:
            return "it is not signed"
        if key_id not in self.ids:
            return f"it is signed by key {key_id[:16]}..., which this run does not trust"
        if not verify(key_id, digest, signature):
            return f"its signature by key {key_id[:16]}... does not match its content"
        return ""

    def signer(self) -> Signer | None:
        """The run's signing key, or None if it cannot be loaded here."""
        if not self.key_path:
            return None
        try:
            return load_signer(self.key_path, create=False)
        except StoreError as exc:
            logger.warning("cannot sign with %s (%s)", self.key_path, exc)
            return None


def trusted_keys(trust: Iterable[str | os.PathLike[str]] = (), *,
                 key_path: str | os.PathLike[str] | None = None) -> TrustedKeys:
    """The run's own key (made on first use) and the keys of the ``trust`` files.

    Raises
    ------
    ParameterError
        A ``--trust`` file holds no readable ed25519 key.
    """
    ids: set[str] = set()
    for p in trust:
        ids.update(load_public_keys(p))
    own = ""
    path = ""
    try:
        signer = load_signer(key_path)
        own, path = signer.key_id, str(signer.path)
        ids.add(own)
    except StoreError as exc:
        logger.warning("no signing key (%s): nothing this run writes is signed, and only "
                       "--trust keys are trusted", exc)
    return TrustedKeys(frozenset(ids), own, path)
