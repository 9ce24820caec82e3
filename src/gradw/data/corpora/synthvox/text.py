"""Prompt text for the synthvox speakers: random word strings in each voice's language.

Text-independent speaker verification needs no meaningful sentences, so a prompt is a string of
words drawn Zipf-like from the language's 5,000 most frequent words (``wordfreq``), with commas
sprinkled in so the synthesiser inserts phrase breaks. Languages without a ``wordfreq`` list
borrow a neighbour's (``af`` reads Dutch, ``et`` reads Finnish) or get random syllables in their
own script (Latin, Telugu). Japanese keeps kana-only words (espeak-ng spells kanji out) and
Chinese and Japanese words are joined without spaces.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

from gradw.errors import GradwError

__all__ = ["TextError", "make_text", "text_language_ok"]

#: text language -> the wordfreq list it reads, where that differs.
_BORROWED = {"af": "nl", "et": "fi", "hr": "sh"}
#: languages that get random syllables, by script.
_SYLLABLE_SCRIPTS = {"la": "latin", "mi": "latin", "te": "telugu"}
#: languages written without spaces, with their comma.
_NO_SPACE = {"zh": "，", "ja": "、"}
_VOCABULARY = 5000

_LATIN_ONSETS = ["", "b", "c", "d", "f", "g", "l", "m", "n", "p", "qu", "r", "s", "t", "v", "pr", "tr", "st"]
_LATIN_NUCLEI = ["a", "e", "i", "o", "u", "ae", "au"]
_LATIN_CODAS = ["", "", "", "s", "m", "n", "t", "r", "x"]
# Telugu: consonant letters U+0C15..U+0C39 and dependent vowel signs U+0C3E..U+0C4C.
_TELUGU_CONSONANTS = [chr(c) for c in range(0x0C15, 0x0C3A) if unicodedata.category(chr(c)) == "Lo"]
_TELUGU_VOWEL_SIGNS = [""] + [chr(c) for c in range(0x0C3E, 0x0C4D) if unicodedata.category(chr(c)) == "Mn"]


class TextError(GradwError, RuntimeError):
    """No vocabulary is available for a language (``wordfreq`` missing or no list)."""


def _is_word(token: str, lang: str) -> bool:
    """True when ``token`` is made of letters and combining marks only (kana only for ``ja``)."""
    if not token:
        return False
    if lang == "ja":
        return all("\u3040" <= ch <= "\u30ff" and ch not in "\u30fb\u30a0" for ch in token)
    if not all(unicodedata.category(ch)[0] in "LM" for ch in token):
        return False
    if lang == "sh":  # the Serbo-Croatian list mixes scripts; Croatian is Latin
        return all(ch.isascii() or "LATIN" in unicodedata.name(ch, "") for ch in token)
    return True


@functools.lru_cache(maxsize=64)
def _vocabulary(lang: str) -> tuple[str, ...]:
    """The word list (most frequent first) that prompts in ``lang`` are drawn from."""
    source = _BORROWED.get(lang, lang)
    try:
        import wordfreq
    except ImportError:
        raise TextError(
            "the synthvox corpus needs the Python package 'wordfreq' for its prompt text; "
            "install it with: pip install wordfreq==3.1.1"
        ) from None
    if source not in wordfreq.available_languages("best"):
        raise TextError(f"wordfreq has no word list for language {source!r}")
    words = tuple(w for w in wordfreq.top_n_list(source, _VOCABULARY) if _is_word(w, source))
    if len(words) < 50:
        raise TextError(f"wordfreq word list for {source!r} has only {len(words)} usable words")
    return words


def text_language_ok(lang: str) -> bool:
    """True when prompts can be made for text language ``lang`` on this machine."""
    if lang in _SYLLABLE_SCRIPTS:
        return True
    try:
        _vocabulary(lang)
    except TextError:
        return False
    return True


def _syllable_word(rng: np.random.Generator, script: str) -> str:
    n = int(rng.integers(1, 4))
    if script == "telugu":
        parts = [
            _TELUGU_CONSONANTS[int(rng.integers(len(_TELUGU_CONSONANTS)))]
            + _TELUGU_VOWEL_SIGNS[int(rng.integers(len(_TELUGU_VOWEL_SIGNS)))]
            for _ in range(n)
        ]
        return "".join(parts)
    parts = [
        _LATIN_ONSETS[int(rng.integers(len(_LATIN_ONSETS)))]
        + _LATIN_NUCLEI[int(rng.integers(len(_LATIN_NUCLEI)))]
        for _ in range(n)
    ]
    return "".join(parts) + _LATIN_CODAS[int(rng.integers(len(_LATIN_CODAS)))]


def make_text(lang: str, n_words: int, rng: np.random.Generator, comma_prob: float = 0.12) -> str:
    """A random prompt of ``n_words`` words in text language ``lang``.

    Words are drawn with index ``floor(Lomax(0.6))`` into the frequency-sorted vocabulary
    (Zipf-like, redrawn when past its end); each word but the last is followed by a comma with
    probability ``comma_prob``; the prompt ends with a full stop.

    Args:
        lang: a text language code (ISO 639-1 as used by wordfreq, e.g. ``"de"``, ``"zh"``).
        n_words: number of words (at least 1).
        rng: the random generator (the only source of randomness).
        comma_prob: probability of a comma after a word.

    Raises:
        TextError: no vocabulary for ``lang``.
    """
    n_words = max(1, int(n_words))
    words: list[str] = []
    if lang in _SYLLABLE_SCRIPTS:
        words = [_syllable_word(rng, _SYLLABLE_SCRIPTS[lang]) for _ in range(n_words)]
    else:
        vocab = _vocabulary(lang)
        while len(words) < n_words:
            index = int(rng.pareto(0.6))
            if index < len(vocab):
                words.append(vocab[index])
    commas = rng.random(n_words) < comma_prob
    comma, space, stop = (
        _NO_SPACE.get(lang, ","),
        "" if lang in _NO_SPACE else " ",
        "。" if lang in _NO_SPACE else ".",
    )
    out = []
    for i, word in enumerate(words):
        out.append(word)
        if i < n_words - 1:
            out.append((comma if commas[i] else "") + space)
    return "".join(out) + stop
