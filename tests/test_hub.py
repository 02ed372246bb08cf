"""Named models against a stand-in Hub on 127.0.0.1: download, cache, offline, pins, failures.

huggingface_hub freezes its environment-derived settings when first imported, so the variables
that must hold for every request are set here before anything imports it; the ``_isolated``
fixture also patches its constants, in case another test module imported it first. No test here
reaches any host but 127.0.0.1.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="deblur-test-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
os.environ["HF_HOME"] = _HF_HOME
# Nothing listens on port 9 (discard): a request that escapes the per-test endpoint fails locally.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")

import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hubserver import StandInHub, hub_server  # noqa: E402, F401 - the fixture, found by name
from huggingface_hub import constants as hf_constants  # noqa: E402
from rich.console import Console  # noqa: E402

from deblurcli import catalog, hub, settings  # noqa: E402
from deblurcli.errors import CheckpointError, ModelNotAvailable, UsageError  # noqa: E402
from deblurcli.eval.datasets import DATASETS  # noqa: E402
from deblurcli.models import create, registry  # noqa: E402
from deblurcli.weights import load_model, save_model  # noqa: E402

TINY = {"width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1]}
FIXTURES = Path(__file__).parent / "fixtures" / "conformance"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Two different tiny ALGNet files in our own format (two commits' worth of content)."""
    folder = tmp_path_factory.mktemp("tiny")
    out = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = folder / f"tiny{seed}.safetensors"
        save_model(create("algnet", TINY, "plain"), path, arch="algnet", config=TINY, variant="plain",
                   extra_metadata={"trained_on": "nothing (test)", "description": f"tiny seed {seed}"})
        out[f"v{seed}"] = path.read_bytes()
    return out


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "DEBLUR_OFFLINE", "DEBLUR_HUB_ORG",
                 "DEBLUR_CONFIG", "HF_TOKEN", "DEBLUR_HUB_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    c = hf_constants
    monkeypatch.setattr(c, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(c, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_WARNED", set())


@pytest.fixture
def hubenv(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> StandInHub:
    """The stand-in Hub, made the endpoint, with the registry's repos under the org ``testorg``."""
    server: StandInHub = request.getfixturevalue("hub_server")
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("DEBLUR_HUB_ORG", "testorg")
    return server


def _quiet() -> Console:
    return Console(quiet=True)


def _capture() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=400), buf


def _add_entry(monkeypatch: pytest.MonkeyPatch, **fields: object) -> registry.ModelEntry:
    entry = dataclasses.replace(registry.get("algnet-gopro"), aliases=(), **fields)  # type: ignore[arg-type]
    monkeypatch.setattr(registry, "_BUILTIN", (*registry._BUILTIN, entry))
    return entry


def _two_steps(msg: str, name: str, authors_file: str) -> bool:
    """The way to a model the Hub cannot give, and nothing else: the authors' page, then one command."""
    url = registry.get(name).source_url
    steps = re.findall(r"\d\) ", msg)
    assert steps == ["1) ", "2) "], msg
    first, second = msg.split("1) ", 1)[1].split("2) ", 1)
    assert url and url in first and "deblur" not in first, msg
    assert second.strip().rstrip(".") == f"run `deblur convert {authors_file} --install {name}`", msg
    assert "deblur download" not in msg, msg
    return True


def _cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


# --------------------------------------------------------------------------------------------- #
# Download, cache, offline
# --------------------------------------------------------------------------------------------- #


def test_first_download_then_cache_with_server_stopped_and_offline(
        hubenv: StandInHub, weights: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    # The entry as published before its pin (whatever the registry ships today): no revision, no sha256.
    monkeypatch.setattr(registry, "_BUILTIN", tuple(
        dataclasses.replace(e, revision=None, sha256=None, size_bytes=None) if e.name == "algnet-gopro" else e
        for e in registry._BUILTIN))
    commit = hubenv.add_file("testorg/algnet-gopro", "algnet-gopro.safetensors", weights["v1"])
    console, out = _capture()
    first = hub.resolve("algnet-gopro", progress=False, console=console)
    assert first.source == "download" and first.revision == commit
    assert first.repo_id == "testorg/algnet-gopro" and first.entry is not None and first.entry.name == "algnet-gopro"
    assert first.path.read_bytes() == weights["v1"] and first.sha256 == _sha(weights["v1"])
    text = out.getvalue()
    assert f"from {hubenv.endpoint}" in text and "downloading algnet-gopro" in text
    assert "not checksum-pinned" in text  # an entry without a pin says so
    assert ("HEAD", "/testorg/algnet-gopro/resolve/main/algnet-gopro.safetensors") in hubenv.requests
    assert ("GET", f"/testorg/algnet-gopro/resolve/{commit}/algnet-gopro.safetensors") in hubenv.requests
    model, spec = load_model(first.path)
    assert spec.arch == "algnet" and spec.config == TINY and spec.variant == "plain"
    # The branch was resolved to a commit and recorded, as huggingface_hub would have.
    ref = settings.hf_cache_dir() / "models--testorg--algnet-gopro" / "refs" / "main"
    assert ref.read_text() == commit

    hubenv.stop()
    n = len(hubenv.requests)
    again = hub.resolve("algnet-gopro", progress=False, console=_quiet())  # online, but cached
    assert again.source == "cache" and again.path == first.path and again.revision == commit
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = hub.resolve("algnet", progress=False, console=_quiet())  # alias, env offline
    assert offline.source == "cache" and offline.sha256 == _sha(weights["v1"])
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hub.resolve("ALGNet-GoPro", offline=True, console=_quiet()).source == "cache"
    assert len(hubenv.requests) == n


def test_offline_never_touches_the_network(hubenv: StandInHub, weights: dict[str, bytes],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    hubenv.add_file("testorg/evssm-gopro", "evssm-gopro.safetensors", weights["v1"])
    for how in ("param", "HF_HUB_OFFLINE", "DEBLUR_OFFLINE"):
        if how != "param":
            monkeypatch.setenv(how, "1")
        with pytest.raises(ModelNotAvailable) as err:
            hub.resolve("evssm", offline=True if how == "param" else None, console=_quiet())
        msg = str(err.value)
        assert "not in the local cache" in msg
        assert _two_steps(msg, "evssm-gopro", "net_g_GoPro.pth")
        if how != "param":
            assert how in msg
            monkeypatch.delenv(how)
    assert hubenv.requests == []


def test_dead_server_fails_fast_with_the_reason(hubenv: StandInHub) -> None:
    hubenv.stop()
    start = time.monotonic()
    with pytest.raises(ModelNotAvailable, match=r"could not reach http://127\.0\.0\.1:\d+ ") as err:
        hub.resolve("xyscannetp-realblur-j", console=_quiet())
    assert _two_steps(str(err.value), "xyscannetp-realblur-j", "best_XYScanNet_stage2.pth")
    assert time.monotonic() - start < 5


def test_default_org_config_file_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    entry = registry.get("evssm-realblur-r")
    assert entry.hf_repo_id() == "deblurcli/evssm-realblur-r"
    cfg = tmp_path / "deblur.toml"
    cfg.write_text('hub_org = "mirror-org"\n')
    monkeypatch.setenv("DEBLUR_CONFIG", str(cfg))
    assert entry.hf_repo_id() == "mirror-org/evssm-realblur-r"
    monkeypatch.setenv("DEBLUR_HUB_ORG", "env-org")
    assert entry.hf_repo_id() == "env-org/evssm-realblur-r"
    monkeypatch.setenv("DEBLUR_HUB_ORG", "bad org!")
    with pytest.raises(UsageError, match="not a valid Hub organisation"):
        entry.hf_repo_id()
    monkeypatch.delenv("DEBLUR_HUB_ORG")
    cfg.write_text("hub_org = [\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        settings.hub_org()
    monkeypatch.setenv("DEBLUR_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(UsageError, match="does not exist"):
        settings.hub_org()


def test_hub_org_changes_what_is_requested(hubenv: StandInHub, weights: dict[str, bytes],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    hubenv.add_file("otherorg/evssm-gopro", "evssm-gopro.safetensors", weights["v2"])
    with pytest.raises(ModelNotAvailable, match="repository testorg/evssm-gopro not found.*DEBLUR_HUB_ORG"):
        hub.resolve("evssm-gopro", console=_quiet())
    monkeypatch.setenv("DEBLUR_HUB_ORG", "otherorg")
    got = hub.resolve("evssm-gopro", console=_quiet(), progress=False)
    assert got.repo_id == "otherorg/evssm-gopro" and got.path.read_bytes() == weights["v2"]


# --------------------------------------------------------------------------------------------- #
# Pins and revisions
# --------------------------------------------------------------------------------------------- #


def test_pinned_revision_and_hf_refs_with_revisions(hubenv: StandInHub, weights: dict[str, bytes],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    c1 = hubenv.add_file("testorg/tiny", "tiny.safetensors", weights["v1"])
    c2 = hubenv.add_file("testorg/tiny", "tiny.safetensors", weights["v2"])  # main moves on
    _add_entry(monkeypatch, name="tiny-pinned", hf_repo="tiny", hf_filename="tiny.safetensors", revision=c1,
               sha256=_sha(weights["v1"]))
    console, out = _capture()
    pinned = hub.resolve("tiny-pinned", console=console, progress=False)
    assert pinned.revision == c1 and pinned.path.read_bytes() == weights["v1"]
    assert pinned.warnings == [] and "not checksum-pinned" not in out.getvalue()
    assert not (settings.hf_cache_dir() / "models--testorg--tiny" / "refs" / "main").exists()
    # Offline, a reference naming no revision takes the copy there is; a named one must match.
    stale = hub.resolve("hf:testorg/tiny/tiny.safetensors", offline=True, console=_quiet())
    assert stale.source == "cache" and stale.revision == c1
    with pytest.raises(ModelNotAvailable, match="not in the local cache"):
        hub.resolve("hf:testorg/tiny/tiny.safetensors@main", offline=True, console=_quiet())

    latest = hub.resolve("hf:testorg/tiny/tiny.safetensors", console=_quiet(), progress=False)
    assert latest.revision == c2 and latest.path.read_bytes() == weights["v2"] and latest.entry is None
    by_commit = hub.resolve(f"hf:testorg/tiny/tiny.safetensors@{c1}", console=_quiet())
    assert by_commit.source == "cache" and by_commit.path == pinned.path

    hubenv.stop()
    for ref, want in ((f"hf:testorg/tiny/tiny.safetensors@{c1}", "v1"), ("hf:testorg/tiny/tiny.safetensors", "v2"),
                      ("hf:testorg/tiny@main", "v2"), ("tiny-pinned", "v1")):
        got = hub.resolve(ref, offline=True, console=_quiet())
        assert got.source == "cache" and got.path.read_bytes() == weights[want], ref


def test_branch_and_tag_revisions(hubenv: StandInHub, weights: dict[str, bytes]) -> None:
    c1 = hubenv.add_file("testorg/tiny", "tiny.safetensors", weights["v1"], branch="v1.0")
    hubenv.add_file("testorg/tiny", "tiny.safetensors", weights["v2"])
    got = hub.resolve("hf:testorg/tiny/tiny.safetensors@v1.0", console=_quiet())
    assert got.revision == c1 and got.path.read_bytes() == weights["v1"]
    with pytest.raises(ModelNotAvailable, match="revision 'nope' not found in testorg/tiny"):
        hub.resolve("hf:testorg/tiny/tiny.safetensors@nope", console=_quiet())


# --------------------------------------------------------------------------------------------- #
# Not found, corrupt, truncated
# --------------------------------------------------------------------------------------------- #


def test_missing_repo_and_missing_file(hubenv: StandInHub, weights: dict[str, bytes]) -> None:
    hubenv.add_file("testorg/tiny", "tiny.safetensors", weights["v1"])
    with pytest.raises(ModelNotAvailable, match=r"repository testorg/nothing not found on http://127\.0\.0\.1"):
        hub.resolve("hf:testorg/nothing/x.safetensors", console=_quiet())
    with pytest.raises(ModelNotAvailable,
                       match=r"file 'missing\.safetensors' not found in testorg/tiny@main.*it has: tiny\.safetensors"):
        hub.resolve("hf:testorg/tiny/missing.safetensors", console=_quiet())
    # A registry model whose converted file is not published: the way out is the authors' link.
    with pytest.raises(ModelNotAvailable) as err:
        hub.resolve("xyscannetp-gopro", console=_quiet())
    msg = str(err.value)
    assert "testorg/xyscannetp-gopro not found" in msg
    assert _two_steps(msg, "xyscannetp-gopro", "best_XYScanNet_stage2.pth")
    assert "\n" not in msg


def test_same_size_corruption_is_caught_deleted_and_recovered(
        hubenv: StandInHub, weights: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    commit = hubenv.add_file("testorg/tiny", "tiny.safetensors", weights["v1"])
    _add_entry(monkeypatch, name="tiny-pinned", hf_repo="tiny", hf_filename="tiny.safetensors", revision=commit,
               sha256=_sha(weights["v1"]))
    storage = settings.hf_cache_dir() / "models--testorg--tiny"
    hubenv.faults[("testorg/tiny", "tiny.safetensors")] = "corrupt"
    with pytest.raises(ModelNotAvailable, match="corrupt .*registry's pinned sha256.*deleted it.*command again"):
        hub.resolve("tiny-pinned", console=_quiet())
    assert list((storage / "blobs").iterdir()) == []
    assert not (storage / "snapshots" / commit / "tiny.safetensors").exists()

    del hubenv.faults[("testorg/tiny", "tiny.safetensors")]
    good = hub.resolve("tiny-pinned", console=_quiet())  # re-running fetches a good copy
    assert good.source == "download" and good.sha256 == _sha(weights["v1"])

    # Damage on disk after the fact (same size) is caught on the next use, and deleted.
    blob = Path(os.path.realpath(good.path))
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ModelNotAvailable, match="cached testorg/tiny/tiny.safetensors is corrupt"):
        hub.resolve("tiny-pinned", console=_quiet())
    assert not blob.exists() and not good.path.exists()
    gets = sum(1 for m, p in hubenv.requests if m == "GET")
    restored = hub.download(["tiny-pinned"], console=_quiet())
    assert restored[0].source == "download" and sum(1 for m, p in hubenv.requests if m == "GET") == gets + 1

    # force re-downloads a file that is cached and fine.
    forced = hub.download(["tiny-pinned"], force=True, console=_quiet())
    assert forced[0].source == "download" and sum(1 for m, p in hubenv.requests if m == "GET") == gets + 2
    assert hub.download(["tiny-pinned"], console=_quiet())[0].source == "cache"


def test_unpinned_corruption_is_caught_by_the_hubs_own_sha256(hubenv: StandInHub, weights: dict[str, bytes]) -> None:
    hubenv.add_file("testorg/algnet-gopro", "algnet-gopro.safetensors", weights["v1"])
    hubenv.faults[("testorg/algnet-gopro", "algnet-gopro.safetensors")] = "corrupt"
    with pytest.raises(ModelNotAvailable, match="corrupt .*the Hub's sha256.*deleted"):
        hub.resolve("algnet-gopro", console=_quiet())
    assert list((settings.hf_cache_dir() / "models--testorg--algnet-gopro" / "blobs").iterdir()) == []


def test_truncated_download_leaves_nothing_behind(hubenv: StandInHub, weights: dict[str, bytes]) -> None:
    hubenv.add_file("testorg/tiny", "tiny.safetensors", weights["v1"])
    hubenv.faults[("testorg/tiny", "tiny.safetensors")] = "truncate"
    start = time.monotonic()
    with pytest.raises(ModelNotAvailable, match="cut short.*run the command again"):
        hub.resolve("hf:testorg/tiny/tiny.safetensors", console=_quiet())
    assert time.monotonic() - start < 10
    blobs = settings.hf_cache_dir() / "models--testorg--tiny" / "blobs"
    assert not blobs.exists() or list(blobs.iterdir()) == []


# --------------------------------------------------------------------------------------------- #
# hf: references without a file name
# --------------------------------------------------------------------------------------------- #


def test_hf_ref_without_filename_picks_the_single_safetensors(hubenv: StandInHub, weights: dict[str, bytes]) -> None:
    commit = hubenv.add_file("someone/deblur-tiny", "weights/model.safetensors", weights["v2"])
    hubenv.add_file("someone/deblur-tiny", "README.md", b"# tiny\n", commit=commit)
    got = hub.resolve("hf:someone/deblur-tiny", console=_quiet())
    assert got.filename == "weights/model.safetensors" and got.revision == commit
    assert got.path.read_bytes() == weights["v2"]
    assert ("GET", "/api/models/someone/deblur-tiny/revision/main") in hubenv.requests
    hubenv.stop()
    cached = hub.resolve("hf:someone/deblur-tiny", offline=True, console=_quiet())
    assert cached.source == "cache" and cached.path == got.path


def test_hf_ref_without_filename_refuses_to_guess(hubenv: StandInHub, weights: dict[str, bytes]) -> None:
    commit = hubenv.add_file("someone/two", "a.safetensors", weights["v1"])
    hubenv.add_file("someone/two", "b.safetensors", weights["v2"], commit=commit)
    hubenv.add_file("someone/none", "README.md", b"nothing here\n")
    with pytest.raises(ModelNotAvailable, match=r"several \.safetensors files \(a\.safetensors, b\.safetensors\)"):
        hub.resolve("hf:someone/two", console=_quiet())
    with pytest.raises(ModelNotAvailable, match=r"no \.safetensors file \(files: README\.md\)"):
        hub.resolve("hf:someone/none", console=_quiet())
    with pytest.raises(ModelNotAvailable, match="not in the local cache"):
        hub.resolve("hf:someone/two", offline=True, console=_quiet())


def test_parse_hf_ref(monkeypatch: pytest.MonkeyPatch) -> None:
    r = hub.parse_hf_ref("hf:owner/repo/sub/file.safetensors@v1.0")
    assert (r.repo_id, r.filename, r.revision) == ("owner/repo", "sub/file.safetensors", "v1.0")
    r = hub.parse_hf_ref("hf:owner/repo")
    assert (r.repo_id, r.filename, r.revision) == ("owner/repo", None, None)
    monkeypatch.setenv("DEBLUR_HUB_ORG", "myorg")
    assert hub.parse_hf_ref("hf:evssm-gopro").repo_id == "myorg/evssm-gopro"
    for bad in ("hf:", "hf:owner/repo@", "hf:-x/repo"):
        with pytest.raises(UsageError):
            hub.parse_hf_ref(bad)


# --------------------------------------------------------------------------------------------- #
# Names, local files, the embedded default, listings
# --------------------------------------------------------------------------------------------- #


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ModelNotAvailable) as err:
        registry.get("evsm")
    assert str(err.value) == "unknown model 'evsm': did you mean evssm? (deblur models lists them)"
    with pytest.raises(ModelNotAvailable, match="did you mean xyscannetp-gopro"):
        hub.resolve("xyscannetp-gopr", console=_quiet())
    with pytest.raises(ModelNotAvailable, match=r"^unknown model 'zzz' \(deblur models lists them\)$"):
        hub.resolve("zzz", console=_quiet())
    with pytest.raises(CheckpointError, match="no such weights file"):
        hub.resolve("./missing.pth", console=_quiet())
    with pytest.raises(ModelNotAvailable, match="did you mean"):
        hub.download(["evsm"], console=_quiet())


def test_local_path_and_embedded_default(tmp_path: Path, weights: dict[str, bytes],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "mine.safetensors"
    local.write_bytes(weights["v1"])
    got = hub.resolve(str(local), console=_quiet())
    assert got.source == "local" and got.path == local.resolve() and got.entry is None

    folder = tmp_path / "pkg-weights"
    folder.mkdir()
    monkeypatch.setattr(registry, "weights_dir", lambda: folder)
    assert registry.default_entry().arch == "unknown"
    with pytest.raises(ModelNotAvailable, match="embedded model 'default' is missing"):
        hub.resolve(None, console=_quiet())
    (folder / "default.safetensors").write_bytes(weights["v2"])
    entry = registry.get("default")
    assert (entry.arch, entry.variant, entry.config) == ("algnet", "plain", TINY)
    assert entry.trained_on == "nothing (test)" and entry.description == "tiny seed 2"
    assert entry.params == sum(p.numel() for p in create("algnet", TINY, "plain").state_dict().values())
    for ref in (None, "default", "embedded"):
        res = hub.resolve(ref, console=_quiet())
        assert res.source == "embedded" and res.path == folder / "default.safetensors"
    assert load_model(res.path)[1].arch == "algnet"
    assert hub.download(["default"], console=_quiet())[0].source == "embedded"

    # The package pins what it ships: a matching file runs, a replaced one is refused.
    import hashlib
    import json

    pin = hashlib.sha256(weights["v2"]).hexdigest()
    (folder / "manifest.json").write_text(json.dumps({"default.safetensors": {"sha256": pin}}))
    assert registry.get("default").sha256 == pin
    assert hub.resolve(None, console=_quiet()).sha256 == pin
    (folder / "default.safetensors").write_bytes(weights["v1"])
    os.utime(folder / "default.safetensors", ns=(10**9, 10**9))  # a new version even on coarse clocks
    with pytest.raises(CheckpointError, match="embedded weights do not match the sha256 this package pins"):
        hub.resolve(None, console=_quiet())


def test_models_table_and_details(hubenv: StandInHub, weights: dict[str, bytes]) -> None:
    hubenv.add_file("testorg/evssm-realblur-j", "evssm-realblur-j.safetensors", weights["v1"])
    hub.resolve("evssm-realj", console=_quiet())
    rows = {r["name"]: r for r in catalog.models_table_rows()}
    assert set(rows) >= {"default", "algnet-gopro", "evssm-gopro", "evssm-realblur-j", "evssm-realblur-r",
                         "xyscannetp-gopro", "xyscannetp-realblur-j", "xyscannetp-realblur-r"}
    assert rows["evssm-realblur-j"]["where"] == "cached" and rows["evssm-gopro"]["where"] == "downloadable"
    assert rows["evssm-gopro"]["repo"] == "testorg/evssm-gopro" and rows["evssm-gopro"]["params"] == 17_129_472
    json.dumps(rows)  # plain data
    info = catalog.model_details("evssm-realj")
    assert info["name"] == "evssm-realblur-j" and info["cached_path"] and info["where"] == "cached"
    assert info["download_command"] == "deblur download evssm-realblur-j" and info["revision"] is None
    json.dumps(info)
    assert hub.cached_path(registry.get("xyscannetp-gopro")) is None


def test_progress_callback_sees_every_byte(hubenv: StandInHub, weights: dict[str, bytes]) -> None:
    hubenv.add_file("testorg/tiny", "tiny.safetensors", weights["v1"])
    seen: list[tuple[int, int | None]] = []
    hub.resolve("hf:testorg/tiny/tiny.safetensors", console=_quiet(), progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (len(weights["v1"]), len(weights["v1"]))


def test_registry_matches_the_official_models() -> None:
    from deblurcli.models import get_arch
    from deblurcli.models.algnet import network as algnet
    from deblurcli.models.evssm import network as evssm

    official = json.loads((FIXTURES / "official_state_dicts.json").read_text())
    shapes = {"algnet-b-gopro": "algnet-b", "algnet-gopro": "algnet", "evssm": "evssm", "xyscannet": "xyscannetp"}
    for entry in registry.entries()[1:]:
        if entry.classical:  # `shake`: the deconvolution engine, no network to compare
            continue
        ref = official[shapes.get(entry.name) or shapes[entry.arch]]
        sd = {k: torch.empty(s, device="meta") for k, s in ref["keys"].items()}
        assert get_arch(entry.arch).infer_config(sd) == entry.config, entry.name
        assert entry.params == ref["n_params"], entry.name
        assert entry.variant == get_arch(entry.arch).default_variant, entry.name
        assert entry.source_url and entry.source_url.startswith("https://drive.google.com/"), entry.name
        assert entry.convert_command == f"deblur convert {entry.convert_command.split()[2]} --install {entry.name}"
        assert entry.hf_filename == f"{entry.name}.safetensors"
        # A pin is whole or absent: a commit without its sha256 (or the reverse) would check nothing.
        assert (entry.revision is None) == (entry.sha256 is None), entry.name
        assert entry.revision is None or re.fullmatch(r"[0-9a-f]{40}", entry.revision), entry.name
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.name
        assert set(entry.paper_numbers) <= set(DATASETS)
    assert registry.get("algnet").settings["local_pool"] == algnet.normalize_local_pool({})
    assert tuple(registry.get("evssm").settings["scan_window"]) == evssm.OFFICIAL_WINDOWS
    names = [n for e in registry.entries() for n in (e.name, *e.aliases)]
    assert len(names) == len({n.lower() for n in names})


def test_offline_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not settings.offline()
    monkeypatch.setenv("DEBLUR_OFFLINE", "yes")
    assert settings.offline() and settings.offline_reason() == "DEBLUR_OFFLINE=1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert settings.offline_reason() == "HF_HUB_OFFLINE=1"
    monkeypatch.setenv("DEBLUR_HUB_TIMEOUT", "0")
    with pytest.raises(UsageError):
        settings.hub_timeout()
