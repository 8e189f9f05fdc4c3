"""`streamvid index` / `streamvid search`: a catalog of memories, in-process and on a local Ray cluster."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from streamvid import synth
from streamvid.catalog import INDEX_NAME, Catalog
from streamvid.cli import main

# three short generated videos; the third has a foreign clip (a street) spliced into a lobby
NEEDLE_START, NEEDLE_END, NEEDLE_T = 3.0, 4.5, 3.8


def _scenes() -> dict[str, synth.Scene]:
    return {
        "lobby.mp4": synth.Scene(160, 120, 10, 6.0, 1, ["lobby"], noise_sigma=2.0),
        "office.mp4": synth.Scene(160, 120, 10, 6.0, 2, ["office"], noise_sigma=2.0),
        "spliced.mp4": synth.Scene(160, 120, 10, 6.0, 3, ["lobby", "street"],
                                   cuts=[(NEEDLE_START, 1), (NEEDLE_END, 0)], noise_sigma=2.0),
    }


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """The three videos, and a needle image: an altered (brighter) frame of the spliced clip."""
    d = tmp_path_factory.mktemp("videos")
    paths = []
    for name, scene in _scenes().items():
        synth.write_video(d / name, scene)
        paths.append(d / name)
    frame = synth.render_frame(_scenes()["spliced.mp4"], round(NEEDLE_T * 10))
    altered = np.clip(frame.astype(np.int16) + 12, 0, 255).astype(np.uint8)
    needle = d / "needle.png"
    cv2.imwrite(str(needle), cv2.cvtColor(altered, cv2.COLOR_RGB2BGR))
    return paths, needle


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot_times(catalog) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in catalog.glob("*.svm")}


def assert_finds_the_needle(capsys, catalog, needle, spliced, tmp_path, videos=3):
    code, out, err = run_cli(capsys, "search", catalog, "--image", needle, "--json", "--out", tmp_path / "out")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["videos"] == videos and doc["kind"] == "image" and doc["warnings"] == []
    best = doc["moments"][0]
    assert best["video"] == str(spliced.resolve()), doc["moments"]
    assert abs(best["t"] - NEEDLE_T) <= 1.0 and NEEDLE_START - 1.0 <= best["start"] and best["end"] <= NEEDLE_END + 1.0
    scores = [m["score"] for m in doc["moments"]]
    assert scores == sorted(scores, reverse=True)
    return doc


def test_index_in_process_is_resumable_and_search_finds_the_needle(videos, tmp_path, capsys):
    paths, needle = videos
    cat = tmp_path / "cat"
    code, out, err = run_cli(capsys, "index", *paths, "--catalog", cat, "--encoder", "classic", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["indexed"], doc["skipped"], doc["failed"]) == (3, 0, 0) and doc["ray"] is None
    assert [line.split("] ")[1].split(" ")[0] for line in err.strip().splitlines()] == ["indexed"] * 3
    entries = Catalog.open(str(cat), create=False).entries()
    assert len(entries) == 3 and {e["video"] for e in entries.values()} == {str(p.resolve()) for p in paths}
    for e in entries.values():
        assert (cat / e["snapshot"]).is_file() and e["frames"] == 12 and e["encoder"]["name"] == "classic"
    before = snapshot_times(cat)
    index_before = (cat / INDEX_NAME).read_bytes()

    code, out, err = run_cli(capsys, "index", *paths, "--catalog", cat, "--encoder", "classic", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["indexed"], doc["skipped"], doc["failed"]) == (0, 3, 0)
    assert all(v["reason"] == "already indexed" for v in doc["videos"])
    assert snapshot_times(cat) == before and (cat / INDEX_NAME).read_bytes() == index_before

    # the same content at another path is the same video; other settings make another memory
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(paths[0].read_bytes())
    code, out, err = run_cli(capsys, "index", copy, "--catalog", cat, "--encoder", "classic", "--json")
    assert code == 0 and json.loads(out)["videos"][0]["reason"].startswith("already indexed as ")
    code, out, err = run_cli(capsys, "index", paths[0], "--catalog", cat, "--encoder", "classic", "--fps", "1",
                             "--memory-mb", "2", "-q")
    assert code == 0 and err == "" and "1 new" in out
    assert len(Catalog.open(str(cat), create=False).entries()) == 4
    (cat / next(n for n in before if n.startswith(doc["videos"][0]["id"]))).unlink()  # lost snapshot
    code, out, err = run_cli(capsys, "index", paths[0], "--catalog", cat, "--encoder", "classic", "-q")
    assert code == 0 and "1 new" in out  # indexed again

    assert_finds_the_needle(capsys, cat, needle, paths[2], tmp_path, videos=4)
    code, out, err = run_cli(capsys, "search", cat, "--image", needle, "--top-k", "2", "--out", tmp_path / "out")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("Searched 4 videos of ") and len(lines) == 3
    assert str(paths[2].resolve()) in lines[1] and "score " in lines[1]


def test_a_changed_file_replaces_its_entry_once_indexed(videos, tmp_path, capsys):
    paths, _ = videos
    cat, video = tmp_path / "cat", tmp_path / "cam.mp4"
    video.write_bytes(paths[0].read_bytes())
    assert run_cli(capsys, "index", video, "--catalog", cat, "--encoder", "classic")[0] == 0
    (old,) = Catalog.open(str(cat), create=False).entries()
    video.write_bytes(paths[1].read_bytes())  # the camera's file was recorded again
    code, out, err = run_cli(capsys, "index", video, "--catalog", cat, "--encoder", "classic", "--json")
    assert code == 0, err
    (new,) = Catalog.open(str(cat), create=False).entries()
    assert new != old and json.loads(out)["videos"][0]["replaced"] == [old]
    assert not (cat / f"{old}.svm").exists() and (cat / f"{new}.svm").exists()


def test_bad_videos_are_reported_and_the_others_indexed_exit_3(videos, tmp_path, capsys):
    paths, _ = videos
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cat = tmp_path / "cat"
    code, out, err = run_cli(capsys, "index", tmp_path / "missing.mp4", junk, empty, paths[0], "--catalog", cat,
                             "--encoder", "classic", "--json")
    assert code == 3
    doc = json.loads(out)
    assert (doc["indexed"], doc["failed"]) == (1, 3)
    failed = {os.path.basename(v["video"]): v["error"] for v in doc["videos"] if v["status"] == "failed"}
    assert set(failed) == {"missing.mp4", "junk.mp4", "empty.mp4"}
    assert "no such file" in failed["missing.mp4"] and "not a video" in failed["junk.mp4"]
    assert sum("failed" in line for line in err.splitlines()) == 3
    assert len(Catalog.open(str(cat), create=False).entries()) == 1
    # a re-run keeps what was indexed, reports the bad ones again
    code, out, err = run_cli(capsys, "index", junk, paths[0], "--catalog", cat, "--encoder", "classic", "-q")
    assert code == 3 and err.count("\n") == 1 and "] failed " in err and "junk.mp4" in err
    assert "0 new, 1 already indexed, 1 failed" in out


def test_catalog_that_is_a_file_or_foreign_is_exit_2_and_untouched(videos, tmp_path, capsys):
    paths, _ = videos
    afile = tmp_path / "notes.txt"
    afile.write_text("my notes")
    code, out, err = run_cli(capsys, "index", paths[0], "--catalog", afile, "--encoder", "classic")
    assert code == 2 and err.count("\n") == 1 and "is a file, not a folder" in err
    code, out, err = run_cli(capsys, "index", paths[0], "--catalog", afile, "--encoder", "classic", "--json")
    assert code == 2 and json.loads(out)["exit_code"] == 2
    assert afile.read_text() == "my notes"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / INDEX_NAME).write_text('{"something": "else"}')
    code, out, err = run_cli(capsys, "index", paths[0], "--catalog", foreign, "--encoder", "classic")
    assert code == 2 and "not a streamvid catalog" in err
    assert (foreign / INDEX_NAME).read_text() == '{"something": "else"}' and not list(foreign.glob("*.svm"))
    code, out, err = run_cli(capsys, "index", paths[0], "--catalog", tmp_path / "c", "--workers", "2")
    assert code == 2 and "--workers needs --ray" in err


def test_search_without_a_catalog_is_exit_2(videos, tmp_path, capsys):
    _, needle = videos
    for where in (tmp_path, tmp_path / "missing", tmp_path / "f.txt"):
        if where.name == "f.txt":
            where.write_text("x")
        code, out, err = run_cli(capsys, "search", where, "who entered?")
        assert code == 2 and err.startswith("streamvid: error: ") and err.count("\n") == 1, err
        code, out, err = run_cli(capsys, "search", where, "--image", needle, "--json")
        assert code == 2 and json.loads(out)["exit_code"] == 2
    code, out, err = run_cli(capsys, "search", tmp_path, "who entered?", "--image", needle)
    assert code == 2 and "not both" in err


def test_search_json_shape_and_encoders_that_do_not_compare(videos, tmp_path, capsys):
    paths, _ = videos
    cat = tmp_path / "cat"
    assert run_cli(capsys, "index", *paths[:2], "--catalog", cat, "--encoder", "classic", "-q")[0] == 0
    code, out, err = run_cli(capsys, "search", cat, "when was there motion?", "--json", "--top-k", "3")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) >= {"catalog", "question", "kind", "intent", "encoder", "videos", "moments", "warnings"}
    assert doc["kind"] == "text" and doc["videos"] == 2 and len(doc["moments"]) <= 3
    for m in doc["moments"]:
        assert set(m) >= {"t", "start", "end", "score", "event", "description", "thumbnail", "video", "id"}
    code, out, err = run_cli(capsys, "search", cat, "what is the meaning of life?", "--json")
    assert code == 0 and json.loads(out)["intent"] == "unsupported" and json.loads(out)["moments"] == []

    # an entry made with another encoder: refused unless --encoder picks one
    index = json.loads((cat / INDEX_NAME).read_text())
    first = next(iter(index["entries"].values()))
    first["encoder"] = {"name": "clip", "model": "ViT-B-32", "pretrained": "x", "dim": 512}
    (cat / INDEX_NAME).write_text(json.dumps(index))
    code, out, err = run_cli(capsys, "search", cat, "who entered?")
    assert code == 2 and "2 encoders" in err and "--encoder" in err
    code, out, err = run_cli(capsys, "search", cat, "who entered?", "--encoder", "classic", "--json")
    assert code == 0 and json.loads(out)["videos"] == 1
    # a snapshot gone missing: the others are searched, a warning says so (exit 3)
    (cat / first["snapshot"]).unlink()
    first["encoder"] = index["entries"][list(index["entries"])[1]]["encoder"]
    (cat / INDEX_NAME).write_text(json.dumps(index))
    code, out, err = run_cli(capsys, "search", cat, "who entered?", "--json")
    assert code == 3 and json.loads(out)["videos"] == 1 and len(json.loads(out)["warnings"]) == 1


def test_ray_missing_is_a_one_line_error(videos, tmp_path, capsys, monkeypatch):
    paths, _ = videos
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    code, out, err = run_cli(capsys, "index", paths[0], "--catalog", tmp_path / "c", "--ray", "local")
    assert code == 2 and err == "streamvid: error: ray is not installed: pip install 'streamvid[ray]'\n"
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------------- on Ray
@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPUs (2 workers), started here and stopped at the end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def cli_subprocess(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "streamvid", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.mark.slow
def test_index_on_a_local_ray_cluster(ray_cluster, videos, tmp_path, capsys):
    paths, needle = videos
    cat = tmp_path / "cat"
    proc = cli_subprocess("index", *paths, "--catalog", cat, "--encoder", "classic", "--ray", ray_cluster,
                          "--workers", "2", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["indexed"], doc["skipped"], doc["failed"], doc["workers"]) == (3, 0, 0, 2)
    assert sum(" indexed " in line for line in proc.stderr.splitlines()) == 3
    assert len(list(cat.glob("*.svm"))) == 3
    assert_finds_the_needle(capsys, cat, needle, paths[2], tmp_path)

    before = snapshot_times(cat)
    proc = cli_subprocess("index", *paths, "--catalog", cat, "--encoder", "classic", "--ray", ray_cluster,
                          "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["indexed"], doc["skipped"], doc["failed"]) == (0, 3, 0) and doc["workers"] is None  # no work
    assert snapshot_times(cat) == before

    # `--ray local` starts (and stops) its own cluster; its memories are those of an in-process run
    local, here = tmp_path / "local", tmp_path / "here"
    proc = cli_subprocess("index", paths[0], "missing.mp4", "--catalog", local, "--encoder", "classic",
                          "--ray", "local", "--workers", "1", "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["indexed"], doc["failed"], doc["workers"]) == (1, 1, 1)
    assert run_cli(capsys, "index", paths[0], "--catalog", here, "--encoder", "classic", "-q")[0] == 0
    on_ray, in_process = (Catalog.open(str(d), create=False).entries() for d in (local, here))
    assert on_ray.keys() == in_process.keys()
    (key,) = on_ray
    assert on_ray[key]["frames"] == in_process[key]["frames"]
