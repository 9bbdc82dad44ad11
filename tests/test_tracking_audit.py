"""What the audit log says of a tracking run made for a search by description."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from safeface.cli import main
from safeface.errors import InvalidArgument, PolicyViolation, SafeFaceError
from tests.policy_support import PASSPHRASE, Clock, edit_config, make_workspace, open_sf
from tests.video_fixtures import synthetic_video


def test_a_search_in_a_workspace_names_its_description_in_the_audit_entry(tmp_path: Path) -> None:
    """An operator runs `track search --describe "red top, child"` in a workspace: its entry read
    as a plain tracking run, so the log never showed who was searched for; it names the search."""
    src = synthetic_video(tmp_path / "in.mp4", 160, 120, frames=4)
    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)  # passphrase files must be private
    assert main(["track", "search", str(src), "--describe", "red top, child", "--workspace", str(ws.root),
                 "--purpose", "demo", "--passphrase-file", str(secret)]) == 0
    with open_sf(ws) as sf:
        entry = [e for e in sf.audit_entries() if e.operation == "track"][-1]
        assert entry.decision == "allowed" and entry.purpose == "demo"
        assert "top red" in (entry.note or "") and "size child" in (entry.note or "")
        # A description outside the vocabulary is refused before the video is read, on record.
        with pytest.raises(InvalidArgument):
            sf.track(src, "demo", describe="dark skin")
        last = sf.audit_entries()[-1]
        assert (last.operation, last.decision) == ("track", "failed")
        assert sf.audit_verify().entries == len(sf.audit_entries())


def test_every_search_of_a_tracking_result_is_on_record(tmp_path: Path) -> None:
    """An app runs one audited tracking run, then searches its result as often as it likes: the
    run was recorded and none of the searches were. Each is recorded, judged again, and a
    search that cannot be recorded (the handle closed) is not made."""
    src = synthetic_video(tmp_path / "in.mp4", 160, 120, frames=4)
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        result = sf.track(src, "demo")
        before = len(sf.audit_entries())
        result.search("red top")
        result.search("child")
        entries = sf.audit_entries()[before:]
        assert [(e.operation, e.decision, e.purpose) for e in entries] == [("track", "allowed", "demo")] * 2
        assert "top red" in (entries[0].note or "") and "size child" in (entries[1].note or "")
        assert sf.audit_verify().entries == len(sf.audit_entries())
    with pytest.raises(SafeFaceError):
        result.search("red top")


def test_a_run_that_leaves_head_zones_uncovered_says_so_on_record(tmp_path: Path) -> None:
    """An operator tracks with TrackOptions(cover_heads=False): faces under the video search's reach
    show in the output, and the entry read as every other run's ("faces covered"). It says the
    head zones were left uncovered."""
    from safeface.tracking import TrackOptions

    src = synthetic_video(tmp_path / "in.mp4", 160, 120, frames=4)
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.track(src, "demo")
        sf.track(src, "demo", options=TrackOptions(cover_heads=False))
        covered, bare = [e.note or "" for e in sf.audit_entries() if e.operation == "track"][-2:]
        assert "head zones not covered" not in covered
        assert "head zones not covered" in bare


def test_the_search_a_run_was_made_for_is_judged_when_it_is_made(tmp_path: Path) -> None:
    """An app tracks for a search ("red top") the day before its purpose ends and makes that search
    three days later: named in the run's entry, it was let through unjudged and unrecorded while
    any other search was refused. It is judged and recorded like every other."""
    src = synthetic_video(tmp_path / "in.mp4", 160, 120, frames=4)
    ws = make_workspace(tmp_path / "ws")
    tomorrow = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    edit_config(ws, lambda raw: raw["purposes"]["demo"].__setitem__("end_date", tomorrow.isoformat()))
    clock = Clock()
    with open_sf(ws, clock) as sf:
        result = sf.track(src, "demo", describe="red top")
        result.search("red top")  # the same day: recorded, not only named in the run's entry
        search = sf.audit_entries()[-1]
        assert (search.operation, search.decision) == ("track", "allowed") and "search of the tracks" in (search.note or "")
        clock.advance(days=3)
        with pytest.raises(PolicyViolation):
            result.search("red top")
        assert (sf.audit_entries()[-1].operation, sf.audit_entries()[-1].decision) == ("track", "refused")


def test_a_result_from_a_workspace_keeps_its_search_record_in_every_copy(tmp_path: Path) -> None:
    """An app clears `result.record_search` (or binds a hook of its own, or searches a copy made
    with `dataclasses.replace(result, record_search=None)`): its searches went unrecorded. The
    result is frozen, its hook is bound once and shared by every copy, and a person carries
    colour names only, not the shares a search ranks by."""
    import copy
    import dataclasses

    src = synthetic_video(tmp_path / "in.mp4", 160, 120, frames=4)
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        result = sf.track(src, "demo")
        with pytest.raises(AttributeError):
            result.record_search = None  # type: ignore[misc]
        with pytest.raises(AttributeError):
            result.looks = None  # type: ignore[misc]
        with pytest.raises(InvalidArgument):
            result.record_searches(lambda text: None)
        with pytest.raises(AttributeError):
            result.looks._record = None
        with pytest.raises(InvalidArgument):
            dataclasses.replace(result, looks=None)
        before = len(sf.audit_entries())
        dataclasses.replace(result, people=()).search("red top")
        copy.copy(result).search("blue trousers")
        copy.deepcopy(result).search("child")
        notes = [e.note or "" for e in sf.audit_entries()[before:]]
        assert len(notes) == 3 and all("search of the tracks" in n for n in notes), notes
        assert sf.audit_verify().entries == len(sf.audit_entries())
    from safeface.tracking import Person

    assert {f.name for f in dataclasses.fields(Person)}.isdisjoint({"upper", "lower", "observations"})


def test_a_results_search_record_cannot_be_deleted(tmp_path: Path) -> None:
    """`del result.looks._record`, then an assignment of None (allowed while no hook is bound):
    every later search of the result went unrecorded."""
    src = synthetic_video(tmp_path / "in.mp4", 160, 120, frames=4)
    with open_sf(make_workspace(tmp_path / "ws")) as sf:
        result = sf.track(src, "demo")
        with pytest.raises(AttributeError):
            del result.looks._record
        before = len(sf.audit_entries())
        result.search("red top")
        assert len(sf.audit_entries()) == before + 1


@pytest.mark.parametrize("fields", [{}, {"top": ("red\nforged entry",)}, {"size": "face"}, {"top": "red"},
                                    {"bottom": ("skin",)}])
def test_a_query_made_by_hand_is_held_to_the_closed_vocabulary(tmp_path: Path, fields: dict[str, object]) -> None:
    """A `Query` built by hand and ranked through `result.looks`: its free text ("size face", a
    line of its own) was written to the audit log as the search made, then ranked or crashed."""
    from safeface.tracking import Query

    with pytest.raises(InvalidArgument):
        Query(**fields)  # type: ignore[arg-type]
    src = synthetic_video(tmp_path / "in.mp4", 160, 120, frames=4)
    with open_sf(make_workspace(tmp_path / "ws")) as sf:
        result = sf.track(src, "demo")
        before = len(sf.audit_entries())
        with pytest.raises(InvalidArgument):
            result.looks.rank(fields)  # type: ignore[arg-type]
        assert len(sf.audit_entries()) == before


def test_a_run_refused_for_tracking_too_many_people_is_on_record(tmp_path: Path) -> None:
    """A clip of wave after wave of short-lived shapes, past `TrackOptions.max_people`: the run is
    refused as it passes the bound, recorded as a failed tracking run, and leaves no output."""
    from safeface.errors import ImageError
    from safeface.tracking import TrackOptions
    from tests.test_tracking_bounds import _small_waves

    src = synthetic_video(tmp_path / "waves.mp4", 320, 120, frames=26, frame=_small_waves)
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        with pytest.raises(ImageError, match="max_people"):
            sf.track(src, "demo", tmp_path / "out.mp4", options=TrackOptions(max_people=12))
        last = sf.audit_entries()[-1]
        assert (last.operation, last.decision, last.purpose) == ("track", "failed", "demo")
    assert not (tmp_path / "out.mp4").exists()
