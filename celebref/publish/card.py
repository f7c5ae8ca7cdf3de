"""The dataset card (README.md) of a published dataset: YAML front matter + a body that says how it was built.

YAML: pretty_name, license (the one the user named; ``license: other`` + ``license_name``/``license_link`` for names
the Hub does not know; ``unknown`` for metadata-only without --license), task_categories, tags, size_categories,
gated-access fields for non-commercial face data (``extra_gated_heading/prompt/button_content/fields`` with a
non-commercial checkbox), ``configs`` (data_files per split; ``hq`` is the default) and ``dataset_info`` (features,
splits with num_examples/num_bytes, sizes), written with the `datasets` library's own serialisers so the Hub and
``load_dataset`` read them back unchanged. Body: contents, configs, loading, how it was built (parameters, versions,
counts per stage from build.json and the manifest), test sets, licence and access, personal information, citation
(DMDNet, TPAMI 2022, and this tool), and build.json itself.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from celebref.publish.builder import PublishResult

#: Licence identifiers the Hub accepts in ``license:`` (https://huggingface.co/docs/hub/repositories-licenses).
HUB_LICENSES = frozenset(["apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "h-research", "intel-research", "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr", "mpl-2.0", "odc-by", "odbl", "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "fair-noncommercial-research-license", "unknown", "other"])

NONCOMMERCIAL_HINTS = ("-nc", "noncommercial", "non-commercial", "research")

DMDNET_BIBTEX = """@article{li2022dmdnet,
  title   = {Learning Dual Memory Dictionaries for Blind Face Restoration},
  author  = {Li, Xiaoming and Zhang, Shiguang and Zhou, Shangchen and Zhang, Lei and Zuo, Wangmeng},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume  = {45},
  number  = {5},
  pages   = {5904--5917},
  year    = {2022}
}"""


def tool_bibtex() -> str:
    from bfrcore import __version__

    return ("@software{celebref_suite,\n"
            "  title   = {CelebRef-HQ suite: datasets, degraded test sets and benchmarks for reference-based blind "
            "face restoration},\n"
            f"  version = {{{__version__}}},\n"
            "  note    = {Built with `celebref build` and published with `celebref publish`}\n"
            "}")


GATED_HEADING = "Access to identity-labelled face images (non-commercial research only)"
GATED_PROMPT = (
    "This dataset contains photographs (or metadata of photographs) of identifiable people, grouped by identity. "
    "It is shared for non-commercial research on face restoration only. By requesting access you agree to use it "
    "for non-commercial research, not to try to identify, track or profile the people shown, not to redistribute "
    "the images, and to delete your copy on request.")
GATED_BUTTON = "Agree and request access"
GATED_FIELDS = {
    "Name": "text",
    "Affiliation": "text",
    "Country": "country",
    "Intended use (research project)": "text",
    "I agree to use this dataset for non-commercial research ONLY": "checkbox",
    "I will not use it to identify, track or profile the people in it": "checkbox",
}


def license_fields(license: str | None, license_link: str | None) -> dict:
    """YAML licence fields: a Hub id as is; any other name as ``other`` + ``license_name`` (+ link)."""
    if not license:
        return {"license": "unknown"}
    lid = license.strip().lower()
    if lid in HUB_LICENSES and lid != "other":
        out = {"license": lid}
        if license_link:
            out["license_link"] = license_link
        return out
    slug = "".join(ch if ch.isalnum() or ch in "-._" else "-" for ch in license.strip().lower()).strip("-") or "custom"
    out = {"license": "other", "license_name": slug}
    if license_link:
        out["license_link"] = license_link
    return out


def permits_commercial_use(license: str | None) -> bool | None:
    """True for known licences that allow commercial use, False for non-commercial ones, None when unknown."""
    if not license:
        return None
    lid = license.strip().lower()
    if any(h in lid for h in NONCOMMERCIAL_HINTS):
        return False
    if lid in HUB_LICENSES and lid not in ("unknown", "other"):
        return True
    return None


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _yaml(result: PublishResult, gated: str) -> str:
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    n_hq = sum(result.config("hq").num_examples.values())
    fields = license_fields(result.license, result.license_link)
    kw = dict(
        pretty_name=result.pretty_name,
        task_categories=["image-to-image"],
        tags=["face-restoration", "blind-face-restoration", "reference-based-face-restoration", "celebref-hq",
              "faces", "identity"] + ([] if result.include_pixels else ["metadata-only"]),
        size_categories=[size_category(n_hq)],
    )
    card = DatasetCardData(**fields, **kw)
    if gated != "none":
        card.extra_gated_heading = GATED_HEADING
        card.extra_gated_prompt = GATED_PROMPT
        card.extra_gated_button_content = GATED_BUTTON
        card.extra_gated_fields = dict(GATED_FIELDS)
    infos = {}
    for c in result.configs:
        splits = SplitDict()
        for s in c.splits:
            splits.add(SplitInfo(name=s, num_bytes=int(c.num_bytes[s]), num_examples=int(c.num_examples[s])))
        infos[c.name] = DatasetInfo(features=c.features, splits=splits, download_size=int(c.download_size),
                                    dataset_size=int(sum(c.num_bytes.values())))
    DatasetInfosDict(infos).to_dataset_card_data(card)
    mc = {}
    for c in result.configs:
        d = {"data_files": [{"split": s, "path": c.data_files[s]} for s in c.splits]}
        if c.default:
            d["default"] = True
        mc[c.name] = d
    MetadataConfigs(mc).to_dataset_card_data(card)
    return quote_ambiguous_yaml(card.to_yaml())


_AMBIGUOUS = re.compile(r"^(?:[-+]?[0-9][0-9_:.eExXoObB+-]*|[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)|"
                        r"(?i:y|n|yes|no|on|off|true|false|null|~)|)$")


def quote_ambiguous_yaml(text: str) -> str:
    """Re-dump YAML so that strings a YAML 1.2 (or 1.1) reader could take for numbers, booleans or null — such as
    identity ids like ``00086`` — are quoted. The data is unchanged (checked by reloading)."""
    import yaml

    data = yaml.safe_load(text)

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper, value):
        style = "'" if _AMBIGUOUS.match(value) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    out = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    if yaml.safe_load(out) != data:  # pragma: no cover - guard
        raise RuntimeError("YAML re-dump changed the card metadata")
    return out


def _feature_summary(features) -> str:
    parts = []
    for name, f in features.items():
        t = type(f).__name__
        if t == "Value":
            t = f.dtype
        elif t == "ClassLabel":
            t = f"ClassLabel({f.num_classes})"
        elif t == "List":
            inner = getattr(f, "feature", None)
            t = f"list[{getattr(inner, 'dtype', type(inner).__name__)}]"
        parts.append(f"`{name}`: {t}")
    return ", ".join(parts)


def _md(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_card(result: PublishResult, gated: str = "auto") -> str:
    from celebref.publish.builder import CARD_MARKER

    hq = result.config("hq")
    n_train = hq.num_examples.get("train", 0)
    n_test = hq.num_examples.get("test", 0)
    lic = result.license or "unknown (metadata only)"
    pix = ("Image bytes are embedded in the Parquet shards (`image` in hq/train/test, `lq` in the test-set configs) "
           f"under the licence **{_md(lic)}** named by the publisher."
           if result.include_pixels else
           "**Metadata only**: no pixels are included. Every row carries the image's relative path and sha256, its "
           "identity, split, 68 landmarks, reference ids and quality scores, so the images can be rebuilt from the "
           "sources with `celebref build` and checked byte for byte.")
    lines = [
        "---", _yaml(result, gated).rstrip(), "---", CARD_MARKER, "",
        f"# {_md(result.pretty_name)}", "",
        f"Face images aligned FFHQ-style to {result.image_size}×{result.image_size}, grouped by identity "
        "(CelebRef-HQ style), for reference-based and generic blind face restoration. Built with the CelebRef-HQ "
        "suite (`celebref build`), with degraded test sets from `bench degrade`, and published with "
        "`celebref publish`.", "",
        f"- {sum(hq.num_examples.values())} images of {len(result.identities)} identities "
        f"({n_train} train / {n_test} test; the splits share no identity)",
        f"- dataset hash `{result.dataset_hash}` (sha256 over sorted `image_id sha256` lines)",
        f"- {pix}", "",
        "## Configs", "",
        "| config | splits (rows) | features |", "|---|---|---|",
    ]
    for c in result.configs:
        sp = ", ".join(f"{s} ({c.num_examples[s]})" for s in c.splits)
        lines.append(f"| `{c.name}`{' (default)' if c.default else ''} | {sp} | {_feature_summary(c.features)} |")
    lines += [""] + [f"- `{c.name}`: {c.description}" for c in result.configs] + [
        "", "## Loading", "", "```python", "from datasets import load_dataset", "",
        f'hq = load_dataset("{result.repo_id}", "hq")            # train + test',
        f'refs = load_dataset("{result.repo_id}", "references", split="test")',
    ]
    for t in result.testsets[:1]:
        lines.append(f'lq = load_dataset("{result.repo_id}", "{t.config}", split="test")  # ground truth: hq image '
                     "with the same image_id")
    lines += ["names = hq[\"train\"].features[\"identity\"].names    # identity ids", "```", "",
              "## How it was built", ""]
    params = result.build_info.get("params")
    if params and isinstance(params, dict):
        lines += ["Build parameters (`build.json` → `params`):", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {_md(k)} | `{_md(json.dumps(v, sort_keys=True))}` |" for k, v in sorted(params.items())]
        lines.append("")
    versions = result.build_info.get("versions")
    if versions and isinstance(versions, dict):
        lines += ["Software: " + ", ".join(f"{_md(k)} {_md(v)}" for k, v in sorted(versions.items())) + ".", ""]
    weights = weights_list(result.build_info.get("weights"))
    if weights:
        lines += ["Pretrained files used (sha256): " + ", ".join(
            f"{_md(name)} `{_md(sha)}`" for name, sha in weights) + ".", ""]
    lines += ["### Counts per stage", "", "| stage | count |", "|---|---:|"]
    lines += [f"| {_md(k)} | {v} |" for k, v in result.stage_counts.items()]
    counts = result.build_info.get("counts") or {}
    for k, v in _flatten(counts if isinstance(counts, dict) else {}):
        lines.append(f"| build.json counts.{_md(k)} | {_md(v)} |")
    lines.append("")
    if result.reject_reasons:
        lines += ["Rejections by reason: " + ", ".join(f"{_md(k)} {v}" for k, v in
                                                       sorted(result.reject_reasons.items())) + ".", ""]
    if result.testsets:
        lines += ["## Degraded test sets", "",
                  "| config | test set | preset | version | seed | severity | images | testset hash |",
                  "|---|---|---|---|---:|---:|---:|---|"]
        for t in result.testsets:
            lines.append(f"| `{t.config}` | {_md(t.name)} | {_md(t.preset)} | {_md(t.preset_version)} | "
                         f"{'' if t.seed is None else t.seed} | {'' if t.severity is None else f'{t.severity:g}'} | "
                         f"{t.n_images} | `{t.testset_hash}` |")
        lines += ["", "Each test set's full description (preset, seed, versions) is in `testsets/<config>.json`; "
                  "degradation: y = [(x ⊗ k)↓s + n]_JPEG ↑s with the sampled parameters in each row.", ""]
    lines += [
        "## Licence and access", "",
        f"Licence: **{_md(lic)}**" + (f" ({result.license_link})" if result.license_link else "") + ". "
        "The source photographs keep their own terms; CelebRef-HQ (Li et al., TPAMI 2022) is distributed for "
        "non-commercial research.", "",
        ("Access is gated: users must state who they are and agree to non-commercial research use before "
         "downloading." if gated != "none" else "This repository is not gated."), "",
        "## Personal and sensitive information", "",
        "The images show real, identifiable people. Identity labels are opaque ids (no names are published); "
        "local file paths were reduced to file names. To have images of yourself removed, open a discussion on "
        "this repository; they will be removed from the next version.", "",
        "## Citation", "", "```bibtex", DMDNET_BIBTEX, "", tool_bibtex(), "```", "",
        "## build.json", "", "<details><summary>build.json (as published in this repository)</summary>", "",
        "```json", json.dumps(result.build_info, indent=2, sort_keys=True), "```", "", "</details>", "",
    ]
    return "\n".join(lines)


def weights_list(weights) -> list[tuple[str, str]]:
    """(name, sha256 or the error) of build.json's ``weights``: a list of records ``{name, sha256, ...}`` (what
    `celebref build` writes) or a mapping name -> sha256 or record."""
    if not weights:
        return []
    if isinstance(weights, dict):
        items = [(str(k), v) for k, v in weights.items()]
    elif isinstance(weights, list):
        items = [(str(w.get("name") or w.get("file") or "?"), w) if isinstance(w, dict) else (str(w), "")
                 for w in weights]
    else:
        return [(str(weights), "")]

    def value(v) -> str:
        if isinstance(v, dict):
            return str(v.get("sha256") or (f"not available: {v['error']}" if v.get("error") else ""))
        return "" if v is None else str(v)

    return sorted((k, value(v)) for k, v in items)


def _flatten(d: dict, prefix: str = ""):
    for k, v in sorted(d.items()):
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        else:
            yield key, v
