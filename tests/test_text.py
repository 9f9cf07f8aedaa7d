"""Text normalization: markup, case, tokens, Chinese, stopwords, stemming, limits."""

from __future__ import annotations

from evorec.preprocess.text import TextOptions, clean_markup, detect_language, normalize


def test_markup_urls_and_case_are_removed() -> None:
    result = normalize(
        "Hello, <b>World</b>! See https://example.com/a?b=1 &amp; [the docs](http://d.io) or "
        "mail me@example.com. I don't like RUNNING 1995"
    )
    assert result.tokens == ["hello", "world", "docs", "mail", "don't", "like", "running"]
    assert result.language == "en"
    assert not result.truncated


def test_unicode_is_normalized_and_case_folded() -> None:
    fullwidth_abc = "\uff21\uff22\uff23"
    assert normalize(f"{fullwidth_abc} Café STRASSE Straße").tokens == [
        "abc",
        "café",
        "strasse",
        "strasse",
    ]
    assert clean_markup("&lt;i&gt;x&lt;/i&gt;").strip() == "x"


def test_chinese_is_segmented_into_words() -> None:
    result = normalize("我喜欢看科幻电影和纪录片")
    assert result.language == "zh"
    assert result.tokens == ["喜欢", "看", "科幻电影", "纪录片"]
    assert detect_language("a few English words 和 一点") == "en"


def test_stopwords_and_stemming_are_options() -> None:
    text = "The dogs were running in the parks"
    assert normalize(text).tokens == ["dogs", "running", "parks"]
    assert normalize(text, TextOptions(remove_stopwords=False)).tokens == [
        "the", "dogs", "were", "running", "in", "the", "parks",
    ]  # fmt: skip
    assert normalize(text, TextOptions(stem=True)).tokens == ["dog", "run", "park"]


def test_long_texts_are_cut_at_max_tokens() -> None:
    result = normalize("word " * 50, TextOptions(max_tokens=10))
    assert result.tokens == ["word"] * 10
    assert result.truncated


def test_empty_and_symbol_only_texts_have_no_tokens() -> None:
    assert normalize("").tokens == []
    assert normalize("!!! ... 123 456 ---").tokens == []
