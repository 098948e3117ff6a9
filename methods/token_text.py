"""What a token string stands for, comparable across tokenizer families (methods-spec §19 "canonical token string").

A byte-level BPE (GPT-2, Qwen2, Pythia, Llama-3) writes every byte as one character of GPT-2's byte alphabet
(``Ġthe``, ``Ċ``, ``Ã¼``); a SentencePiece vocabulary (Llama-2, Mistral) writes a space as ``▁`` and bytes it has
no piece for as ``<0xNN>``. Read through :class:`TokenCanonicalizer`, both meet on the text a token adds to the
output, as bytes (:meth:`TokenCanonicalizer.bytes_of`) or as a string whose stray bytes are surrogate-escaped
(``__call__``, for edit distances). :class:`VocabInfo` reads a whole tokenizer once: vocabulary, family, special
tokens and their roles. Special tokens are compared by role (bos, eos, pad, unk), never as text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from benchmark.core.digest import digest

ROLES = ("eos_token", "bos_token", "pad_token", "unk_token")  # checked in this order; the first shared role wins
SENTENCEPIECE_MARKER = "▁"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece byte-fallback pieces


def _byte_alphabet() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2 scheme): printable Latin-1 bytes stand for themselves, the other bytes
    for the code points 256, 257, ... in byte order (so a space is ``Ġ`` and a newline ``Ċ``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet = {chr(byte): byte for byte in printable}
    shifted = (byte for byte in range(256) if chr(byte) not in alphabet)
    alphabet.update({chr(256 + n): byte for n, byte in enumerate(shifted)})
    return alphabet


_BYTE_ALPHABET = _byte_alphabet()


def is_byte_piece(token: str) -> bool:
    """A SentencePiece byte-fallback piece such as ``<0x0A>``."""
    return _BYTE_PIECE.fullmatch(token) is not None


@dataclass(frozen=True)
class TokenCanonicalizer:
    """Token string → the text it stands for, comparable across tokenizer families.

    Bytes that are not valid UTF-8 on their own (a fragment of a multi-byte character) become surrogate-escape code
    points (U+DC80 + byte), so the same fragment compares equal whichever family produced it.
    """

    byte_level: bool
    literals: frozenset[str] = frozenset()  # added tokens: matched on raw text, so never byte-encoded
    tokens: tuple[str | None, ...] = field(default=(), repr=False, compare=False)  # token string per id (None: hole)

    def text_of_id(self, token_id: int) -> str:
        """The canonical text of token ``token_id`` of the vocabulary this canonicalizer was built from."""
        token = self.tokens[token_id] if 0 <= token_id < len(self.tokens) else None
        if token is None:
            raise ValueError(f"token id {token_id} has no token in this vocabulary of {len(self.tokens)} ids")
        return self(token)

    def __call__(self, token: str) -> str:
        if token in self.literals:
            return token
        if self.byte_level:
            try:
                data = bytes(_BYTE_ALPHABET[char] for char in token)
            except KeyError:
                return token  # not a byte-level string, e.g. text that was already decoded
        else:
            piece = _BYTE_PIECE.fullmatch(token)
            if piece is None:
                return token.replace(SENTENCEPIECE_MARKER, " ")
            data = bytes([int(piece.group(1), 16)])
        return data.decode("utf-8", errors="surrogateescape")

    def bytes_of(self, token: str) -> bytes:
        """The bytes the token writes (exact inverse of the surrogate escape, so fragments keep their bytes)."""
        return self(token).encode("utf-8", errors="surrogateescape")


@dataclass(frozen=True)
class VocabInfo:
    """What the cross-vocabulary code needs from one tokenizer (build one by hand in tests, or with
    :meth:`from_tokenizer`)."""

    vocab: Mapping[str, int]  # token string -> id
    byte_level: bool
    special_ids: frozenset[int] = frozenset()
    roles: Mapping[str, int] = field(default_factory=dict)  # e.g. {"eos_token": 2}
    literals: frozenset[str] = frozenset()  # added tokens, stored verbatim

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "VocabInfo":
        """Read a Hugging Face tokenizer (any family)."""
        added = getattr(tokenizer, "added_tokens_decoder", {})
        special = set(tokenizer.all_special_ids) | {i for i, token in added.items() if token.special}
        roles = {role: getattr(tokenizer, f"{role}_id") for role in ROLES}
        return cls(
            vocab=dict(tokenizer.get_vocab()),
            byte_level=is_byte_level(tokenizer),
            special_ids=frozenset(special),
            roles={role: i for role, i in roles.items() if i is not None},
            literals=frozenset(token.content for token in added.values()),
        )

    @property
    def size(self) -> int:
        """One past the largest id (ids without a token are holes)."""
        return max(self.vocab.values()) + 1

    def canonicalizer(self) -> TokenCanonicalizer:
        tokens: list[str | None] = [None] * self.size
        for token, i in self.vocab.items():
            tokens[i] = token
        return TokenCanonicalizer(self.byte_level, self.literals, tuple(tokens))

    def canonical_strings(self) -> list[str | None]:
        """Canonical text per id, ``None`` for ids without a token."""
        canon = self.canonicalizer()
        return [None if token is None else canon(token) for token in canon.tokens]

    def special_roles(self) -> dict[str, str]:
        """Special token string → its role: the first of :data:`ROLES` naming its id (GPT-2's one
        ``<|endoftext|>`` is eos, bos, pad and unk at once: ``"eos_token"``), ``"special"`` when none does."""
        role_of: dict[int, str] = {}
        for role in ROLES:
            if role in self.roles:
                role_of.setdefault(self.roles[role], role)
        return {token: role_of.get(i, "special") for token, i in self.vocab.items() if i in self.special_ids or i in role_of}

    def fingerprint(self) -> str:
        """Digest of everything derived data depends on: the sorted vocabulary, the special tokens and the family."""
        return digest({
            "vocab": sorted(self.vocab.items()),
            "byte_level": self.byte_level,
            "special_ids": sorted(self.special_ids),
            "roles": sorted(self.roles.items()),
            "literals": sorted(self.literals),
        })


def is_byte_level(tokenizer: Any) -> bool:
    """A fast tokenizer whose decoder (or one step of it) is ByteLevel; tokenizers without a backend are read as
    SentencePiece-like or plain vocabularies."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return False
    return '"ByteLevel"' in decoder.__getstate__().decode("utf-8")
