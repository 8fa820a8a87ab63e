"""``python -m training data fetch`` writes only files whose sha256 is the table's."""

import hashlib
from pathlib import Path

import pytest

from training import fetch
from training.__main__ import main

CONTENTS = {"mnist/a.gz": b"digits", "names/b.csv.gz": b"surnames", "shakespeare/c.gz": b"verse"}


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local mirror of three small files, and a table that expects exactly them."""
    root = tmp_path / "mirror"
    table = []
    for path, content in CONTENTS.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        table.append(fetch.DataFile(path, digest, f"https://example.invalid/{path}"))
    monkeypatch.setattr(fetch, "FILES", tuple(table))
    return root


def test_fetch_verifies_and_writes_every_file(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["data", "fetch", "--data-dir", str(data), "--mirror", str(mirror)]) == 0
    for path, content in CONTENTS.items():
        assert (data / path).read_bytes() == content
    assert capsys.readouterr().out.count("fetched") == len(CONTENTS)
    assert sorted(p.name for p in data.rglob("*") if p.is_file()) == ["a.gz", "b.csv.gz", "c.gz"]


def test_a_mirror_url_works_as_a_directory_does(mirror: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main(["data", "fetch", "--data-dir", str(data), "--mirror", mirror.as_uri()]) == 0
    assert (data / "names/b.csv.gz").read_bytes() == CONTENTS["names/b.csv.gz"]


def test_a_second_fetch_skips_what_is_there(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    args = ["data", "fetch", "--data-dir", str(data), "--mirror", str(mirror)]
    assert main(args) == 0
    capsys.readouterr()
    for path in CONTENTS:  # a mirror that is gone cannot be read: nothing is fetched again
        (mirror / path).unlink()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("present") == len(CONTENTS) and "fetched" not in out


def test_a_corrupted_file_is_a_one_line_error_and_not_written(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (mirror / "names/b.csv.gz").write_bytes(b"surnamez")
    data = tmp_path / "data"
    assert main(["data", "fetch", "--data-dir", str(data), "--mirror", str(mirror)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "names/b.csv.gz" in err and "sha256" in err and "Traceback" not in err
    assert not (data / "names").exists() or not any((data / "names").iterdir())


def test_a_missing_file_is_a_one_line_error(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (mirror / "mnist/a.gz").unlink()
    data = tmp_path / "data"
    assert main(["data", "fetch", "--data-dir", str(data), "--mirror", str(mirror)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "mnist/a.gz" in err
    assert not (data / "mnist").exists() or not any((data / "mnist").iterdir())


def test_the_table_names_every_file_training_reads() -> None:
    from training.data import mnist_paths, names_paths, shakespeare_paths

    root = Path("/data")
    expected = {p.relative_to(root).as_posix() for p in mnist_paths(root) + names_paths(root)}
    expected |= {p.relative_to(root).as_posix() for p in shakespeare_paths(root)}
    assert {file.path for file in fetch.FILES} == expected
    assert all(len(file.sha256) == 64 and file.url.startswith("https://") for file in fetch.FILES)


def test_the_table_holds_the_real_files_checksums(data_dir: Path) -> None:
    for file in fetch.FILES:
        assert fetch.fetch_file(file, data_dir) == "present", file.path
