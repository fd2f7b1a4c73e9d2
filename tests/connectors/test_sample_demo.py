"""The demo's data: the sample is reused only when it is there in the wanted size, and regenerated otherwise."""

from __future__ import annotations

from pathlib import Path

from connectors.sample.demo import prepare_sample
from connectors.sample.enterprise import MIN_PEOPLE, SampleManifest


def test_the_sample_is_generated_once_and_reused_in_the_same_size(tmp_path: Path) -> None:
    first, generated = prepare_sample(tmp_path, "tiny")
    assert generated and first.size == "tiny" and (tmp_path / "hr.sqlite").is_file()
    written = (tmp_path / "manifest.json").stat().st_mtime_ns
    again, generated = prepare_sample(tmp_path, "tiny")
    assert not generated and again == first
    assert (tmp_path / "manifest.json").stat().st_mtime_ns == written  # nothing was rewritten


def test_another_size_or_a_broken_manifest_regenerates_the_sample(tmp_path: Path) -> None:
    prepare_sample(tmp_path, "tiny")
    custom, generated = prepare_sample(tmp_path, MIN_PEOPLE)
    assert generated and (custom.size, custom.people) == ("custom", MIN_PEOPLE)
    assert prepare_sample(tmp_path, MIN_PEOPLE)[1] is False
    assert prepare_sample(tmp_path, MIN_PEOPLE + 1)[0].people == MIN_PEOPLE + 1  # a custom size of other people
    (tmp_path / "manifest.json").write_text("{not json")
    repaired, generated = prepare_sample(tmp_path, "tiny")
    assert generated and SampleManifest.read(tmp_path) == repaired
