"""The one encrypted format of the runtime ("sealed"), for every file and log entry it
encrypts at rest: job inputs and results, `aiops score` output and quarantine, and the
prediction log's entries. `aiops decrypt FILE` reads all of them.

A sealed blob is a header, then records:

    header  = MAGIC (b"AIOPS-SEALED1\\n", 14 bytes) | kind (1 byte) | salt (16 bytes)
              | key id (8 bytes) | context length (2 bytes, big-endian) | context (UTF-8)
    record  = length of what follows (4 bytes, big-endian) | nonce (12 bytes) | AES-256-GCM
              ciphertext and tag

Keys: the data key (the deployment's 32-byte key) never encrypts anything itself. Each blob
is sealed under its own subkey, HKDF-SHA256(data key, salt, info = b"aiops sealed v1 " +
kind name): a file gets a fresh random salt, and every entry of one prediction log segment
shares the segment's salt (a segment holds at most SEGMENT_MAX_ENTRIES entries, far below
the 2^32 messages NIST SP 800-38D allows one key with random nonces).

Each record's associated data is the header, the record number (8 bytes) and a final flag
(1 byte), so a changed header (kind, context, salt), a reordered, dropped or appended record,
or a cut-off end fails to open. The context names what the blob belongs to (the job id, the
prediction id) and is checked by readers that know it.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

MAGIC = b"AIOPS-SEALED1\n"
KINDS = {1: "job-input", 2: "job-result", 3: "score-output", 4: "score-quarantine", 5: "log-entry"}
KIND_OF = {v: k for k, v in KINDS.items()}
SEGMENT = 1 << 20  # plain bytes per record of a sealed file
_FIXED = struct.Struct(">14sB16s8sH")
_LEN = struct.Struct(">I")


class SealedError(Exception):
    """A blob that is not sealed, was altered, or needs another key; the message says which."""


def key_id(key: bytes) -> str:
    """8 bytes that name a data key without revealing it (hex in messages, raw in headers)."""
    return hashlib.sha256(b"aiops-key-id" + key).hexdigest()[:16]


def subkey(key: bytes, salt: bytes, kind: str) -> bytes:
    """HKDF-SHA256 (RFC 5869) of the data key: the AES-256 key of one file or log segment."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"aiops sealed v1 " + kind.encode()).derive(key)


@dataclass(frozen=True)
class Header:
    kind: str
    salt: bytes
    kid: str
    context: str

    def bytes(self) -> bytes:
        ctx = self.context.encode()
        return _FIXED.pack(MAGIC, KIND_OF[self.kind], self.salt, bytes.fromhex(self.kid), len(ctx)) + ctx


def parse_header(data: bytes, where: str = "the data") -> tuple[Header, int]:
    """The header at the start of `data` and its length."""
    if len(data) < _FIXED.size or not data.startswith(MAGIC):
        raise SealedError(f"{where} is not encrypted by aiops (it does not start with {MAGIC[:-1].decode()})")
    _, kind, salt, kid, n = _FIXED.unpack_from(data)
    if kind not in KINDS or len(data) < _FIXED.size + n:
        raise SealedError(f"{where} has a damaged header")
    try:
        ctx = data[_FIXED.size:_FIXED.size + n].decode()
    except UnicodeDecodeError:
        raise SealedError(f"{where} has a damaged header") from None
    return Header(KINDS[kind], salt, kid.hex(), ctx), _FIXED.size + n


class Sealer:
    """Seals records under one header's subkey (one file, or one log segment's entries)."""

    def __init__(self, key: bytes, kind: str, context: str = "", salt: bytes | None = None):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.header = Header(kind, salt if salt is not None else os.urandom(16), key_id(key), context)
        self.head = self.header.bytes()
        self._fixed = self.head[:_FIXED.size - 2]  # the header up to the context's length
        self._aead = AESGCM(subkey(key, self.header.salt, kind))
        self._nonces, self._at = b"", 0

    def _nonce(self) -> bytes:
        """A random 96-bit nonce; the OS's random bytes are drawn 4096 nonces at a time (one
        getrandom call costs as much as an encryption). Not shared between threads."""
        at = self._at
        if at >= len(self._nonces):
            self._nonces, at = os.urandom(12 * 4096), 0
        self._at = at + 12
        return self._nonces[at:at + 12]

    def record(self, index: int, data: bytes, final: bool, head: bytes | None = None) -> bytes:
        nonce = self._nonce()
        aad = (head or self.head) + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")
        sealed = nonce + self._aead.encrypt(nonce, data, aad)
        return _LEN.pack(len(sealed)) + sealed

    def one(self, data: bytes, context: str | None = None) -> bytes:
        """A whole blob of one record; `context` overrides the header's (a log entry's id)."""
        if context is None:
            head = self.head
        else:
            ctx = context.encode()
            head = self._fixed + len(ctx).to_bytes(2, "big") + ctx
        return head + self.record(0, data, True, head)


def seal(key: bytes, kind: str, context: str, data: bytes) -> bytes:
    """`data` as one sealed blob under a fresh subkey (segments of SEGMENT bytes)."""
    s = Sealer(key, kind, context)
    parts = [s.head]
    chunks = [data[i:i + SEGMENT] for i in range(0, len(data), SEGMENT)] or [b""]
    for i, c in enumerate(chunks):
        parts.append(s.record(i, c, i == len(chunks) - 1))
    return b"".join(parts)


class Opener:
    """Opens blobs sealed under one data key; caches subkeys per (salt, kind)."""

    def __init__(self, key: bytes):
        self.key = key
        self.kid = key_id(key)
        self._aeads: dict[tuple[bytes, str], object] = {}

    def _aead(self, h: Header, where: str):
        if h.kid != self.kid:
            raise SealedError(f"{where} was sealed under key id {h.kid}, not under the given key (id {self.kid})")
        a = self._aeads.get((h.salt, h.kind))
        if a is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            if len(self._aeads) > 4096:
                self._aeads.clear()
            a = self._aeads[(h.salt, h.kind)] = AESGCM(subkey(self.key, h.salt, h.kind))
        return a

    def records(self, read, where: str, kind: str | None = None, context: str | None = None) -> Iterator[bytes]:
        """Plain records from `read(n)` (a file's read, or a bytes reader); checks the order
        and that the final record is last."""
        from cryptography.exceptions import InvalidTag

        first = read(_FIXED.size)
        if len(first) < _FIXED.size:
            parse_header(first, where)
        rest = read(_FIXED.unpack_from(first)[4]) if first.startswith(MAGIC) else b""
        h, _ = parse_header(first + rest, where)
        if kind is not None and h.kind != kind:
            raise SealedError(f"{where} holds a sealed {h.kind}, not a {kind}")
        if context is not None and h.context != context:
            raise SealedError(f"{where} belongs to {h.context!r}, not to {context!r}")
        aead, head = self._aead(h, where), first + rest
        index = 0
        while True:
            size = read(4)
            if len(size) < 4:
                raise SealedError(f"{where} is truncated: its final record is missing")
            blob = read(_LEN.unpack(size)[0])
            if len(blob) < 28:
                raise SealedError(f"{where} is truncated inside record {index}")
            for final in (b"\x00", b"\x01"):
                try:
                    plain = aead.decrypt(blob[:12], blob[12:], head + index.to_bytes(8, "big") + final)
                    break
                except InvalidTag:
                    continue
            else:
                raise SealedError(f"{where}: record {index} does not decrypt (it was altered, moved or reordered)")
            yield plain
            if final == b"\x01":
                if read(1):
                    raise SealedError(f"{where} has data after its final record")
                return
            index += 1

    def open(self, blob: bytes, where: str = "the data", kind: str | None = None, context: str | None = None) -> bytes:
        pos = [0]

        def read(n: int) -> bytes:
            out = blob[pos[0]:pos[0] + n]
            pos[0] += n
            return out

        return b"".join(self.records(read, where, kind, context))

    def header(self, blob: bytes, where: str = "the data") -> Header:
        return parse_header(blob, where)[0]


def open_file(path: str | Path, key: bytes, kind: str | None = None, context: str | None = None) -> Iterator[bytes]:
    """The plain bytes of a sealed file, record by record (bounded memory)."""
    with open(path, "rb") as fh:
        yield from Opener(key).records(fh.read, f"'{path}'", kind, context)


def is_sealed(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


class SealedWriter:
    """A write-only file object that seals what it is given, SEGMENT bytes per record
    (pyarrow's CSV and Parquet writers write through it). close() writes the final record."""

    def __init__(self, path: str | Path, key: bytes, kind: str, context: str = ""):
        self._fh: BinaryIO = open(path, "wb")
        self._s = Sealer(key, kind, context)
        self._buf = bytearray()
        self._index = 0
        self._pos = 0
        self.closed = False
        self._fh.write(self._s.head)

    def write(self, data) -> int:
        self._buf += data
        self._pos += len(data)
        while len(self._buf) > SEGMENT:  # keep at least one byte back: the final record is never empty by accident
            self._fh.write(self._s.record(self._index, bytes(self._buf[:SEGMENT]), False))
            del self._buf[:SEGMENT]
            self._index += 1
        return len(data)

    def tell(self) -> int:
        return self._pos

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self._fh.write(self._s.record(self._index, bytes(self._buf), True))
            self._fh.close()
            self.closed = True
