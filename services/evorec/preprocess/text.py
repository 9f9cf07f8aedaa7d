"""Text normalization: raw user and catalog text in, the tokens the word vectors know out.

Steps, in order: Unicode NFKC normalization; HTML entities and tags, URLs, e-mail addresses
and Markdown link syntax removed; case folding; tokenization into words (runs of letters and
digits, inner apostrophes kept), where runs of Chinese characters are segmented into words by
jieba's dictionary; stopwords dropped (gensim's English list and a bundled Chinese list, so
nothing is downloaded); optionally English words stemmed (gensim's Porter stemmer); at most
`max_tokens` tokens kept. Deterministic: the same text and options always give the same
tokens. Numbers alone are dropped: they rarely say what an item is about.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

Language = Literal["en", "zh"]
MAX_TOKENS = 5_000

_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_TAG = re.compile(r"<[^>]*>")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# A word: letters and digits, with inner apostrophes (don't, o'neill), or a run of Han.
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_]+(?:'[^\W_]+)*")


@dataclass(frozen=True)
class TextOptions:
    """How to normalize; see the module docstring."""

    remove_stopwords: bool = True
    stem: bool = False
    max_tokens: int = MAX_TOKENS
    # None: decided per text (Chinese when at least a third of its letters are Han).
    language: Language | None = None


@dataclass(frozen=True)
class NormalizedText:
    tokens: list[str]
    language: Language
    truncated: bool


@cache
def _english_stopwords() -> frozenset[str]:
    from gensim.parsing.preprocessing import STOPWORDS

    return frozenset(STOPWORDS)


@cache
def _chinese_stopwords() -> frozenset[str]:
    path = Path(__file__).with_name("stopwords_zh.txt")
    return frozenset(
        line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    )


@cache
def _segmenter() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@cache
def _stemmer() -> Any:
    from gensim.parsing.porter import PorterStemmer

    return PorterStemmer()


def clean_markup(text: str) -> str:
    """NFKC-normalized, case-folded text without HTML, URLs, e-mail addresses or link syntax."""
    text = unicodedata.normalize("NFKC", text)
    text = _MARKDOWN_LINK.sub(r" \1 ", text)
    text = _URL.sub(" ", text)
    text = _TAG.sub(" ", html.unescape(_TAG.sub(" ", text)))
    text = _EMAIL.sub(" ", text)
    return text.casefold()


def detect_language(text: str) -> Language:
    """Chinese when at least a third of the text's letters are Han characters."""
    if _HAN.search(text) is None:
        return "en"
    han = sum(len(run) for run in _HAN.findall(text))
    letters = sum(1 for c in text if c.isalpha())
    return "zh" if letters and han * 3 >= letters else "en"


def normalize(text: str, options: TextOptions | None = None) -> NormalizedText:
    """Normalizes one text; see the module docstring for the steps."""
    options = options or TextOptions()
    cleaned = clean_markup(text)
    language = options.language or detect_language(cleaned)
    tokens: list[str] = []
    stop_en = _english_stopwords() if options.remove_stopwords else frozenset()
    stop_zh = _chinese_stopwords() if options.remove_stopwords else frozenset()
    stemmer = _stemmer() if options.stem else None
    limit = options.max_tokens
    for match in _TOKEN.finditer(cleaned):
        word = match.group()
        if _HAN.fullmatch(word):
            words = [w for w in _segmenter().cut(word) if w.strip() and w not in stop_zh]
        elif word.isdigit() or word in stop_en:
            continue
        else:
            words = [stemmer.stem(word) if stemmer else word]
        tokens.extend(words)
        if len(tokens) > limit:
            return NormalizedText(tokens[:limit], language, True)
    return NormalizedText(tokens, language, False)
