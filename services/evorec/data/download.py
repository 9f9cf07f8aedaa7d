"""`evorec data download NAME`: fetches a public dataset, resumably, and checks its SHA-256.

An interrupted download leaves `<file>.part`; the next run asks the server for the rest (an
HTTP Range request) and starts over where the server cannot resume. The file is kept only
when its SHA-256 is the one recorded here; zip archives are then unpacked beside it.
"""

from __future__ import annotations

import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evorec.data.artifacts import sha256_of
from evorec.data.schema import DataError

Progress = Callable[[int, int | None], None]
_CHUNK = 1 << 16
_MOVIELENS = "https://files.grouplens.org/datasets/movielens/"
_AMAZON_2018 = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/"


@dataclass(frozen=True)
class DownloadSource:
    """Where a dataset file is published, and what it must hash to."""

    name: str
    url: str
    sha256: str
    size: int | None = None
    description: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# Checksums: MovieLens as recorded by TensorFlow Datasets; Amazon as distributed with the
# development datasets of this project.
SOURCES: dict[str, DownloadSource] = {
    source.name: source
    for source in (
        DownloadSource(
            "ml-100k", _MOVIELENS + "ml-100k.zip",
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4_924_029,
            "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies",
        ),
        DownloadSource(
            "ml-1m", _MOVIELENS + "ml-1m.zip",
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5_917_549,
            "MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies",
        ),
        DownloadSource(
            "ml-latest-small", _MOVIELENS + "ml-latest-small.zip",
            "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", 978_202,
            "MovieLens latest, small: ratings and tags",
        ),
        DownloadSource(
            "amazon-2018-all-beauty", _AMAZON_2018 + "categoryFilesSmall/All_Beauty_5.json.gz",
            "4a6b1eb40c4f58328f3f34181a6ef00f8e3423d801128617cc408a83c9bd0027", 633_507,
            "Amazon reviews 2018, All Beauty, 5-core",
        ),
        DownloadSource(
            "amazon-2018-magazine-subscriptions",
            _AMAZON_2018 + "categoryFilesSmall/Magazine_Subscriptions_5.json.gz",
            "95c124603d62d6acdfd1bd62284934fb6c513db836ea64c2e8176c14256426f2", 401_655,
            "Amazon reviews 2018, Magazine Subscriptions, 5-core",
        ),
        DownloadSource(
            "amazon-2018-magazine-subscriptions-meta",
            _AMAZON_2018 + "metaFiles2/meta_Magazine_Subscriptions.json.gz",
            "147cb78dac0f9ce04849b196e2e13cad6a504bff45d53500b7a1fe8121d91595", 1_276_947,
            "Amazon 2018 item metadata, Magazine Subscriptions",
        ),
    )
}  # fmt: skip


def _fetch(url: str, partial: Path, progress: Progress, timeout: float) -> None:
    """Downloads `url` into `partial`, continuing after what `partial` already holds."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        resumed = have > 0 and getattr(response, "status", None) == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        with partial.open("ab" if resumed else "wb") as out:
            while block := response.read(_CHUNK):
                out.write(block)
                have += len(block)
                progress(have, total)


def download(
    source: DownloadSource,
    folder: Path,
    progress: Progress = lambda done, total: None,
    timeout: float = 60.0,
) -> Path:
    """Fetches `source` into `folder` (unpacking a zip); returns the file or unpacked folder."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.filename
    if not (target.exists() and sha256_of(target) == source.sha256):
        partial = target.with_name(target.name + ".part")
        try:
            _fetch(source.url, partial, progress, timeout)
        except OSError as error:
            raise DataError(
                f"download of {source.name} interrupted ({error}); run again to resume"
            ) from error
        actual = sha256_of(partial)
        if actual != source.sha256:
            partial.unlink()
            raise DataError(
                f"{source.filename}: SHA-256 {actual} is not the expected {source.sha256}; "
                "the partial file was removed"
            )
        partial.replace(target)
    if not zipfile.is_zipfile(target):
        return target
    with zipfile.ZipFile(target) as archive:
        top = {Path(name).parts[0] for name in archive.namelist() if name.strip("/")}
        archive.extractall(folder)
    unpacked = folder / top.pop() if len(top) == 1 else folder
    return unpacked
