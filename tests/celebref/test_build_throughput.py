"""Build throughput levers keep the build's output (issue 19): the fused faces pass (embed and quality scored on
the crops in memory) gives the same records and manifest as three separate passes, and a changed embedder still
recomputes only the embeddings; batched dlib descriptors equal one call per view, bit for bit; the workers' stage
modules import neither torch nor pandas; progress bars count photos, not shards; the report lists the funnel in
pipeline order and shows thumbnails of exact duplicates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bfrcore.imageio import read_image
from celebref.pipeline import builder as builder_mod
from celebref.pipeline import build_dataset, parse_config
from celebref.pipeline.output import FUNNEL_STEPS
from tests.celebref.build_support import link_tree, shared_rows
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.shared_data

N_PHOTOS = 4
CFG = {"runner": {"shard_size": 2}, "identity": {"min_images": 1}, "splits": {"mode": "image"}}


@pytest.fixture(scope="module")
def photos(shared_faces, tmp_path_factory):
    """Four LFW photos and an exact duplicate of the first (the same bytes under another name)."""
    rows = sorted(shared_rows(shared_faces, kinds={"lfw_250"}), key=lambda r: r["sha256"])[:N_PHOTOS]
    src = link_tree(rows, shared_faces, tmp_path_factory.mktemp("throughput_src"))
    first = sorted(src.iterdir())[0]
    (src / f"zz_copy_of_first{first.suffix}").symlink_to(first.resolve())
    return src


class _Bars:
    """A progress-bar factory that records every bar's total, description and updates."""

    def __init__(self):
        self.bars: list[dict] = []

    def __call__(self, total: int, desc: str):
        rec = {"total": total, "desc": desc, "updates": []}
        self.bars.append(rec)

        class Bar:
            def update(self, n=1):
                rec["updates"].append(n)

            def close(self):
                rec["closed"] = True

        return Bar()


@pytest.fixture(scope="module")
def builds(photos, tmp_path_factory):
    """The same photos built fused (default, with the report) and in three separate passes (progress recorded)."""
    fused = build_dataset([f"folder:{photos}"], tmp_path_factory.mktemp("fused"), parse_config(CFG), workers=1)
    bars = _Bars()
    mp = pytest.MonkeyPatch()
    mp.setattr(builder_mod, "bar_factory", lambda quiet: bars)
    try:
        separate = build_dataset([f"folder:{photos}"], tmp_path_factory.mktemp("separate"),
                                 parse_config({**CFG, "runner": {**CFG["runner"], "fuse": False},
                                               "output": {"report": False}}), workers=1, quiet=False)
    finally:
        mp.undo()
    return fused, separate, bars


def test_fused_pass_gives_the_same_records_and_manifest(builds):
    fused, separate, _ = builds
    with_faces = fused.info["counts"]["photos_with_faces"]
    assert with_faces >= 3
    tm = fused.info["timings"]
    # embed and quality ran inside the faces pass: their own runs found every item cached
    assert tm["faces"]["fused"] == {"embed": with_faces, "quality": with_faces}
    assert tm["embed"]["computed"] == 0 and tm["quality_scores"]["computed"] == 0
    assert "fused" not in separate.info["timings"]["faces"]
    assert separate.info["timings"]["embed"]["computed"] == with_faces
    for stage in ("faces", "embed", "quality"):
        assert fused.stage_runs[stage].key == separate.stage_runs[stage].key
        assert fused.stage_runs[stage].records == separate.stage_runs[stage].records, stage
    pd.testing.assert_frame_equal(fused.manifest, separate.manifest)
    assert fused.info["dataset_hash"] == separate.info["dataset_hash"]


def test_changed_embedder_after_a_fused_build_recomputes_only_embeddings(builds, photos):
    fused = builds[0]
    cfg = parse_config({**CFG, "identity": {**CFG["identity"], "embedder": "dlib"}, "output": {"report": False}})
    again = build_dataset([f"folder:{photos}"], fused.out, cfg, workers=1)
    tm = again.info["timings"]
    n = fused.info["counts"]["photos_with_faces"]
    assert tm["faces"]["computed"] == 0 and tm["quality_scores"]["computed"] == 0
    assert tm["embed"]["computed"] == n and "fused" not in tm["faces"]
    assert again.stage_runs["quality"].records == fused.stage_runs["quality"].records


def test_progress_bars_count_photos(builds):
    _, separate, bars = builds
    by_stage = {b["desc"]: b for b in bars.bars}
    counts = separate.info["counts"]
    expected = {"faces": counts["ingest_items"], "embed": counts["photos_with_faces"],
                "quality": counts["photos_with_faces"]}
    assert counts["ingest_items"] == N_PHOTOS  # the exact duplicate is collapsed at ingest
    assert {k: by_stage[k]["total"] for k in expected} == expected
    for k in expected:  # every photo counted once, in shards of runner.shard_size
        assert sum(by_stage[k]["updates"]) == expected[k] and by_stage[k].get("closed")
        assert max(by_stage[k]["updates"]) <= CFG["runner"]["shard_size"]


def test_report_funnel_in_pipeline_order_and_exact_duplicate_thumbnails(builds):
    fused = builds[0]
    html = (fused.out / "report.html").read_text()
    funnel = html[html.index("<h2>Funnel</h2>"):]
    funnel = funnel[:funnel.index("</table>")]
    steps = re.findall(r"<tr><td>([a-z_]+)</td>", funnel)
    assert steps == [k for k in FUNNEL_STEPS if k in fused.info["counts"]]
    assert steps.index("ingest_entries") < steps.index("candidate_faces") < steps.index("kept_images")
    dup = html[html.index("<h3>ingest · exact_duplicate"):]
    dup = dup[:dup.index("</div>")]
    assert "zz_copy_of_first" in dup
    assert "<img src='data:image/jpeg;base64," in dup  # the duplicated photo, not a blank box


def test_batched_dlib_descriptors_equal_one_call_per_view(builds):
    from bfrcore.faces import get_embedder

    fused = builds[0]
    crops = [read_image(f) for f in sorted(fused.out.glob("cache/faces/*/files/*/*.png"))][:3]
    assert crops
    for name, engine in (("dlib", "dlib"), ("dlib-flip", "dlib"), ("dlib-flip", "onnx")):
        emb = get_embedder(name, engine=engine)
        ref = np.stack([emb._one(np.ascontiguousarray(c)) for c in crops])
        if emb.flip:
            mirrored = np.stack([emb._one(np.ascontiguousarray(c[:, ::-1]), mirrored=True) for c in crops])
            ref = (ref + mirrored) / 2
        if engine == "dlib":
            np.testing.assert_array_equal(emb.embed(crops), ref.astype(np.float32))
        else:  # a port's batch may round differently on another CPU's kernels
            np.testing.assert_allclose(emb.embed(crops), ref.astype(np.float32), rtol=0, atol=1e-6)


def _python(code: str) -> str:
    """stdout of ``code`` run by a fresh interpreter in the project root (which must exit 0)."""
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_worker_stage_modules_import_neither_torch_nor_pandas():
    code = ("import sys\n"
            "import bfrcore.faces, celebref.pipeline.faces_stage, celebref.pipeline.embed_stage\n"
            "import celebref.pipeline.quality, celebref.pipeline.runner\n"
            "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))\n"
            "from celebref.pipeline import build_dataset, BuildConfig\n"
            "print(callable(build_dataset), BuildConfig.__name__)\n")
    assert _python(code).split("\n")[:2] == ["[]", "True BuildConfig"]


def test_a_worker_scores_a_photo_without_importing_torch(photos):
    """What a build worker does to a photo by default (faces pass with embed and quality fused: the onnx engine
    for dlib's network, NIQE by bfrcore.metrics.niqe_numpy) never imports torch (2-3 s of start-up)."""
    photo = sorted(photos.iterdir())[0]
    code = ("import sys\n"
            "import celebref.pipeline._preload\n"  # the fork server's warm-up
            "from celebref.pipeline import faces_stage, embed_stage, quality\n"
            "from celebref.pipeline.config import parse_config\n"
            "cfg = parse_config({})\n"
            "fp = faces_stage.FacesParams(cfg.faces, cfg.ingest.max_pixels, cfg.ingest.max_bytes, 1)\n"
            f"res, why = faces_stage.process_item({{'item_id': 'x' * 64, 'path': {str(photo)!r}}}, fp)\n"
            "faces = [{'face_id': k, 'crop': None, 'aligned_input': False, 'pixels': v}\n"
            "         for k, v in res['_pixels'].items()]\n"
            "e, _ = embed_stage.embed_item({'faces': faces}, embed_stage.embed_params('dlib-flip', 'auto', 'cpu'))\n"
            "q, _ = quality.score_item({'faces': faces}, quality.QualityParams(True))\n"
            "rec = next(iter(q['scores'].values()))\n"
            "print(len(e['embeddings']), rec['niqe_status'], rec['niqe'] > 0, 'torch' in sys.modules)\n")
    assert _python(code).split() == ["1", "ok", "True", "False"]


def test_blockiness_of_the_face_region_equals_the_whole_photo_grey(photos):
    from celebref.pipeline.faces_stage import blockiness, blockiness_rgb

    img = read_image(sorted(photos.iterdir())[0])
    h, w = img.shape[:2]
    grey = img.mean(axis=2)
    boxes = [(60.4, 70.6, 190.2, 200.9), (-15, -10, 120, 130), (w - 100, h - 90, w + 20, h + 5), (0, 0, w, h),
             (10, 10, 30, 30)]  # inside, clipped at the top-left / bottom-right, the whole photo, too small
    for box in boxes:
        assert blockiness_rgb(img, box) == blockiness(grey, box), box
    assert blockiness_rgb(img, boxes[-1]) is None and blockiness_rgb(img, boxes[0]) is not None


def test_auto_shard_size_gives_every_worker_several_shards():
    from celebref.pipeline import ConfigError
    from celebref.pipeline.runner import shard_size_for

    assert parse_config({}).runner.shard_size == "auto"
    assert shard_size_for(40, 2, "auto") == 3  # 14 shards for 2 workers, not 5 shards of 8
    assert shard_size_for(70_000, 16, "auto") == 8 and shard_size_for(40, 1, "auto") == 5
    assert shard_size_for(3, 2, "auto") == 1 and shard_size_for(0, 2, "auto") == 1
    assert shard_size_for(40, 2, 3) == 3  # an explicit size is kept
    with pytest.raises(ConfigError, match="shard_size"):
        parse_config({"runner": {"shard_size": 0}})


def test_shards_are_handed_out_largest_first(tmp_path):
    """Longest-processing-time order: the faces stage's shards by their photos' bytes, the others by faces."""
    from celebref.pipeline.runner import _shard_cost

    small, big = tmp_path / "small.jpg", tmp_path / "big.jpg"
    small.write_bytes(b"x" * 10)
    big.write_bytes(b"x" * 5000)
    assert _shard_cost([{"path": str(big)}]) > _shard_cost([{"path": str(small)}, {"path": str(small)}])
    assert _shard_cost([{"faces": [1, 2, 3]}]) > _shard_cost([{"faces": [1]}])
    assert _shard_cost([{"path": str(tmp_path / "gone.jpg")}]) > 0  # a file that vanished still counts as work


def _count_item(item: dict, params) -> tuple[dict, None]:
    return {"bytes": len(open(item["path"], "rb").read())}, None


def test_run_item_stage_submits_the_largest_shard_first(tmp_path):
    from celebref.pipeline.executor import LocalExecutor
    from celebref.pipeline.runner import ItemStage, run_item_stage

    items = []
    for k, size in enumerate((10, 3000, 200, 90_000)):
        p = tmp_path / f"photo{k}.jpg"
        p.write_bytes(b"x" * size)
        items.append({"item_id": f"{k:064d}", "path": str(p)})

    class Recording(LocalExecutor):
        order: list = []

        def run(self, task, payloads, labels=None):
            Recording.order = [[i["path"] for i in p[3]] for p in payloads]
            return super().run(task, payloads, labels)

    run = run_item_stage(ItemStage("t", "1", _count_item, None), items, cache_root=tmp_path / "cache", upstream=(),
                         executor=Recording(1), shard_size=1)
    assert [Path(o[0]).name for o in Recording.order] == ["photo3.jpg", "photo1.jpg", "photo2.jpg", "photo0.jpg"]
    assert {r["result"]["bytes"] for r in run.records.values()} == {10, 3000, 200, 90_000}
