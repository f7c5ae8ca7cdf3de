"""The built-in protocols. Published values are copied exactly from the cited tables
(/work/shared/research/protocols.md gathered them; docs/protocols.md lists the sources)."""

from __future__ import annotations

from degradations.presets import Preset
from evaluation.protocols.model import (
    MetricOptionsSpec,
    MetricSpec,
    Protocol,
    PublishedRow,
    ReferenceRule,
    TestSetRecipe,
)

#: No degradation: the LQ is the dataset image itself (same pixels), for real photos that are already degraded.
#: Protocol-only (not in the degradations registry, whose presets are all random); testset.json records it in full.
REAL_INPUT = Preset(
    name="real-input", version="1", severity=1.0,
    description="no degradation: the LQ is the dataset image itself (real-world photos scored without reference)",
    reference="this suite (protocol realworld-nr; NTIRE 2025 real-world face restoration metrics)",
).validate()
PROTOCOL_PRESETS = {REAL_INPUT.name: REAL_INPUT}

REFLDM_CITATION = ("Hsiao et al., \"ReF-LDM: A Latent Diffusion Model for Reference-based Face Image "
                   "Restoration\", NeurIPS 2024 (arXiv 2412.05043)")
OSDFACE_CITATION = "Wang et al., \"OSDFace: One-Step Diffusion Model for Face Restoration\", CVPR 2025"
NTIRE_CITATION = "NTIRE 2025 Challenge on Real-World Face Restoration (report and evaluation script)"

_IDS = MetricSpec("ids_arcface", "ids_arcface", "IDS", True,
                  "ReF-LDM: 1 - IdentityLoss with insightface_webface_r50.onnx on their aligned crop; ours: "
                  "InsightFace buffalo_l w600k_r50 cosine on a 112x112 norm_crop (another ArcFace R50: not the "
                  "same network, see docs/conventions.md)")
_FLPIPS = MetricSpec("flpips", "flpips", "fLPIPS", False,
                     "LPIPS on the face region only (ReF-LDM); needs the `flpips` metric")
_LPIPS_VGG = MetricSpec("lpips_vgg", "lpips_vgg", "LPIPS", False,
                        "pyiqa lpips-vgg (v0.1 linear heads), inputs in [0,1]; ours: same network and heads")
_NIQE = MetricSpec("niqe", "niqe", "NIQE", False,
                   "pyiqa niqe (ReF-LDM) / BasicSR NIQE, Y channel; ours: BasicSR calculate_niqe, crop_border 0")
_FID_FFHQ = MetricSpec("fid", "fid", "FID", False,
                       "pyiqa FID against FFHQ 512 trainval70k clean statistics; ours: the same statistics file "
                       "(ffhq512-fid-stats-clean), clean-fid resize")

_TABLE7 = {  # method: (severe IDS, fLPIPS, LPIPS, FID), (moderate ...), (CelebA-Test-Ref IDS, fLPIPS, LPIPS)
    "CodeFormer": ((".323", ".108", ".398", "51.51"), (".760", ".084", ".301", "38.78"), (".660", ".092", ".340")),
    "VQFR": ((".308", ".112", ".415", "52.96"), (".659", ".089", ".324", "36.77"), (".558", ".096", ".352")),
    "DAEFR": ((".294", ".118", ".435", "49.08"), (".614", ".093", ".333", "33.86"), (".491", ".101", ".367")),
    "LDM": ((".231", ".125", ".453", "34.40"), (".753", ".095", ".344", "32.16"), (".663", ".093", ".368")),
    "DMDNet": ((".185", ".162", ".511", "72.66"), (".810", ".096", ".348", "36.60"), (".752", ".097", ".362")),
    "ReF-LDM": ((".676", ".110", ".429", "37.60"), (".840", ".088", ".332", "33.05"), (".779", ".093", ".368")),
}
#: DMDNet's landmark detection failed on these images in ReF-LDM's run; its metrics are on the rest.
DMDNET_FAILED = {"severe": (214, 857), "moderate": (29, 857), "celeba": (488, 2533)}


def _dmdnet_note(which: str) -> str:
    failed, n = DMDNET_FAILED[which]
    return (f"landmark detection failed on {failed}/{n} images; metrics on the other {n - failed} "
            f"(ReF-LDM Table 7 footnote)")


def _rows(index: int, columns: tuple[str, ...], which: str) -> tuple[PublishedRow, ...]:
    return tuple(PublishedRow(method, tuple(zip(columns, vals[index])),
                              _dmdnet_note(which) if method == "DMDNet" else "")
                 for method, vals in _TABLE7.items())


_FFHQREF_NOTES = (
    ("ReF-LDM released fixed LQ images; this recipe regenerates LQ from the same parameter ranges with our seed, "
    "so the pixels (and the numbers, within noise) differ from the release."),
    ("DMDNet needs 68-point landmarks: ReF-LDM skipped the images where detection failed and counted them. `bench "
    "evaluate` never skips: it falls back dataset landmarks -> dlib -> mean face and records landmarks_source per "
    "image; `bench protocols landmark-subset RUN` recomputes the means on the images with detected landmarks and counts the rest, as ReF-LDM did."),
)


def _ffhqref(severity: str, preset: str, index: int) -> Protocol:
    return Protocol(
        name=f"refldm-ffhqref-{severity}", version="1",
        title=f"ReF-LDM FFHQ-Ref {severity} (reference-based)",
        citation=REFLDM_CITATION, table="Table 7",
        testset=TestSetRecipe(
            source="FFHQ-Ref test split (ReF-LDM id_based_ffhq_split/test_image.txt): 857 images of 150 identities, "
                   "identity-disjoint from train/val (ArcFace cosine distance < 0.4 = same person)",
            preset=preset, preset_version="1", seed=0, split="test", n_images=857, n_identities=150),
        references=ReferenceRule(
            "same-identity",
            "other images of the person at ArcFace cosine distance >= 0.1 from the target (hand-checked), 2-9 per "
            "target, ordered by farthest-point sampling on ArcFace distance; the method gets them in that order",
            max_refs=5),
        metrics=(_IDS, _FLPIPS, _LPIPS_VGG, _NIQE, _FID_FFHQ),
        options=MetricOptionsSpec(fid_stats="ffhq512-fid-stats-clean"),
        published=_rows(index, ("ids_arcface", "flpips", "lpips_vgg", "fid"), severity),
        notes=_FFHQREF_NOTES,
    ).validate()


PROTOCOLS: tuple[Protocol, ...] = (
    _ffhqref("moderate", "refldm-moderate", 1),
    _ffhqref("severe", "refldm-severe", 0),
    Protocol(
        name="refldm-celeba-test-ref", version="1",
        title="ReF-LDM CelebA-Test-Ref (reference-based)",
        citation=REFLDM_CITATION, table="Table 7",
        testset=TestSetRecipe(
            source="CelebA-Test (3,000 CelebA-HQ test pairs): the 2,533 images that have references in ReF-LDM's "
                   "reference list", preset="gfpgan", preset_version="1", seed=0, split="test", n_images=2533),
        references=ReferenceRule("same-identity", "ReF-LDM's CelebA-Test-Ref reference list (same person, other "
                                                  "CelebA-HQ images)", max_refs=5),
        metrics=(_IDS, _FLPIPS, _LPIPS_VGG),
        published=_rows(2, ("ids_arcface", "flpips", "lpips_vgg"), "celeba"),
        notes=(("CelebA-Test's LQ images are a fixed release (GFPGAN-style degradation); this recipe regenerates "
               "them with the gfpgan preset and our seed."),) + _FFHQREF_NOTES[1:],
    ).validate(),
    Protocol(
        name="celeba-test", version="1",
        title="CelebA-Test, blind (as DifFace / OSDFace report it)",
        citation=OSDFACE_CITATION, table="Table 1",
        testset=TestSetRecipe(source="CelebA-Test: 3,000 synthetic pairs from CelebA-HQ test identities",
                              preset="gfpgan", preset_version="1", seed=0, split="test", n_images=3000),
        references=ReferenceRule("none", "blind: no references"),
        metrics=(
            MetricSpec("lpips_alex", "lpips_alex", "LPIPS", False,
                       "pyiqa `lpips` (AlexNet v0.1, pyiqa's default); which net OSDFace used is not stated"),
            MetricSpec("dists", "dists", "DISTS", False, "pyiqa dists; needs the `dists` metric"),
            MetricSpec("musiq", "musiq", "MUSIQ", True, "pyiqa musiq (KonIQ)"),
            _NIQE,
            MetricSpec("ids_arcface", "deg_arcface", "Deg", False,
                       "ArcFace embedding angle to the GT in degrees (VQFR/DifFace); ours: buffalo_l ArcFace R50"),
            MetricSpec("lmd", "lmd", "LMD", False,
                       "landmark distance to the GT (DifFace); ours: dlib 68 points, pixels at 512"),
            MetricSpec("fid", "fid", "FID(HQ)", False, "FID against the 3,000 HQ images; clean-fid resize"),
            MetricSpec("fid_ffhq", "fid_ffhq", "FID(FFHQ)", False,
                       "FID against FFHQ; one run computes one FID: score again with --fid-stats "
                       "ffhq512-fid-stats-clean"),
        ),
        published=tuple(PublishedRow(m, tuple(zip(
            ("lpips_alex", "dists", "musiq", "niqe", "deg_arcface", "lmd", "fid_ffhq", "fid"), v)))
            for m, v in (
                ("CodeFormer", (".3412", ".2151", "75.9432", "4.5157", "62.1972", "5.3819", "62.0280", "26.8595")),
                ("DifFace", (".3469", ".2126", "66.7451", "4.6381", "63.4511", "5.4759", "49.8075", "22.2370")),
                ("DiffBIR", (".3740", ".2340", "75.6360", "6.2801", "61.0238", "5.1042", "71.7767", "32.5109")),
                ("OSDFace", (".3365", ".1773", "75.6398", "3.8840", "60.0708", "5.2867", "45.4150", "17.0617")))),
        notes=("DifFace with s=250, DiffBIR with s=50 and OSDFace with s=1 sampling steps (OSDFace Table 1).",),
    ).validate(),
    Protocol(
        name="celebref-hq-v1", version="1",
        title="CelebRef-HQ, canonical identity split v1 (reference-based)",
        citation="Li et al., DMDNet (TPAMI 2022) dataset CelebRef-HQ; split: this suite (celebref_hq_v1.json)",
        table="none (no published table uses this split)",
        testset=TestSetRecipe(
            source="CelebRef-HQ (user's copy; identity folders): images of the 150 test identities of "
                   "celebref_hq_v1.json", preset="celebref-x8", preset_version="1", seed=0, split=None,
            identity_split="celebref-hq-v1", n_identities=150),
        references=ReferenceRule("same-identity", "the other images of the person, in the split file's seeded "
                                                  "order (sha256 of seed:ref:<identity>/<file>), target excluded",
                                 max_refs=5),
        metrics=(
            MetricSpec("psnr", "psnr", "PSNR", True, "BasicSR, RGB, crop_border 0"),
            MetricSpec("ssim", "ssim", "SSIM", True, "BasicSR, RGB per channel, crop_border 0"),
            _LPIPS_VGG,
            MetricSpec("dists", "dists", "DISTS", False, "pyiqa dists"),
            MetricSpec("ids_arcface", "ids_arcface", "IDS", True, "buffalo_l ArcFace R50 cosine to the GT"),
            MetricSpec("lmd", "lmd", "LMD", False, "dlib 68 points, pixels at 512"),
            _NIQE,
            MetricSpec("fid", "fid", "FID(HQ)", False, "against the test identities' HQ images, clean-fid"),
        ),
        notes=("HonestFace's CelebHQRef-Test numbers use their own, unpublished split: not comparable, not shown.",
               ("DMDNet's own CelebRef-HQ test set (150 random identities, 1 target + 1-4 references) was never "
               "published.")),
    ).validate(),
    Protocol(
        name="realworld-nr", version="1",
        title="Real-world faces, no reference (as the NTIRE 2025 real-world face restoration challenge)",
        citation=NTIRE_CITATION, table="challenge metrics (no per-method table shipped here)",
        testset=TestSetRecipe(source="real low-quality face photos (e.g. Wider-Test, LFW-Test, WebPhoto-Test), "
                                     "used as they are", preset="real-input", preset_version="1", seed=0,
                              split=None),
        references=ReferenceRule("none", "blind: no references"),
        metrics=(
            _NIQE,
            MetricSpec("clipiqa", "clipiqa", "CLIP-IQA", True, "pyiqa clipiqa; needs the `clipiqa` metric"),
            MetricSpec("maniqa", "maniqa", "MANIQA", True, "pyiqa maniqa; needs the `maniqa` metric"),
            MetricSpec("musiq", "musiq", "MUSIQ", True, "pyiqa musiq (KonIQ)"),
        ),
        notes=(("NTIRE 2025 also uses Q-Align and FID against FFHQ and combines them in a weighted score; those are "
               "not part of this protocol."),
               ("The GT column of such a test set is the LQ photo itself: full-reference metrics are meaningless "
               "and not computed.")),
    ).validate(),
)
