"""Hub upload folder contract (``celebref publish`` output, uploaded to a Hugging Face dataset repo as is).

    README.md                     YAML front matter (:class:`CardFrontMatter`) + the dataset card
    build.json                    the dataset's build.json (paths reduced): bfrcore.formats.dataset.BuildInfo
    testsets/<config>.json        each test set's testset.json (paths reduced): bfrcore.formats.testset
    data/<config>/<split>-*.parquet   shards; columns = the config's features in dataset_info, with the contract
                                  columns of :data:`HQ`, :data:`REFERENCES` or :data:`TESTSET` by config kind

Every config of ``configs`` must point at existing shards whose columns equal its ``dataset_info`` features and
whose row counts equal ``num_examples``; ``hq`` is the default config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from bfrcore.formats import (
    Column,
    Document,
    FormatError,
    NonEmptyStr,
    check_columns,
    parquet_schema,
    show,
    validate_model,
)

FORMAT = "celebref.hub/1"
CONFIG_HQ, CONFIG_REFS = "hq", "references"
HQ_CONFIGS = ("hq", "train", "test")

HQ = (
    Column("image_id", "string", nullable=False), Column("identity", "int", nullable=False),
    Column("split", "string", nullable=False), Column("path", "string", nullable=False),
    Column("sha256", "string", nullable=False), Column("landmarks", "list<float>"),
    Column("references", "list<string>"), Column("image", "image", required=False),
)
REFERENCES = (
    Column("image_id", "string", nullable=False), Column("ref_image_id", "string", nullable=False),
    Column("rank", "int", nullable=False), Column("identity", "int", nullable=False),
)
TESTSET = (
    Column("image_id", "string", nullable=False), Column("identity", "int", nullable=False),
    Column("gt_sha256", "string", nullable=False), Column("seed", "int", nullable=False),
    Column("lq_sha256", "string", nullable=False), Column("lq", "image", required=False),
)


class DataFile(Document):
    split: NonEmptyStr
    path: NonEmptyStr


class ConfigEntry(Document):
    config_name: NonEmptyStr
    data_files: Annotated[list[DataFile], Field(min_length=1)]
    default: bool = False


class SplitEntry(Document):
    name: NonEmptyStr
    num_examples: int = Field(ge=0)
    num_bytes: int = Field(ge=0)


class InfoEntry(Document):
    config_name: NonEmptyStr
    features: list[dict[str, Any]]
    splits: list[SplitEntry]


class CardFrontMatter(Document):
    """README.md YAML front matter (the keys this tool writes and the Hub reads)."""

    pretty_name: NonEmptyStr
    configs: Annotated[list[ConfigEntry], Field(min_length=1)]
    dataset_info: list[InfoEntry]
    tags: list[str] = []
    license: str | list[str] | None = None


def read_front_matter(readme: Path, *, writing: bool = False) -> dict:
    import yaml

    if not readme.is_file():
        raise FormatError(readme, "(file)", "a dataset card README.md", "no such file", writing=writing)
    text = readme.read_text(encoding="utf-8")
    parts = text.split("---\n", 2)
    if not text.startswith("---\n") or len(parts) < 3:
        raise FormatError(readme, "(front matter)", "YAML front matter between '---' lines", "none",
                          writing=writing)
    try:
        doc = yaml.safe_load(parts[1])
    except yaml.YAMLError as e:
        raise FormatError(readme, "(front matter)", "valid YAML", f"invalid ({str(e).splitlines()[0]})",
                          writing=writing) from None
    return doc


def validate_hub_folder(folder: str | os.PathLike, *, writing: bool = False) -> CardFrontMatter:
    """Check a built upload folder: front matter, build.json, testsets/*.json, every shard's columns and rows."""
    import pyarrow.parquet as pq

    from bfrcore.formats.dataset import validate_build_info
    from bfrcore.formats.testset import validate_info

    folder = Path(folder)
    readme = folder / "README.md"
    card = validate_model(CardFrontMatter, read_front_matter(readme, writing=writing), readme, writing=writing)
    info_of = {i.config_name: i for i in card.dataset_info}
    names = [c.config_name for c in card.configs]
    if CONFIG_HQ not in names or not next(c for c in card.configs if c.config_name == CONFIG_HQ).default:
        raise FormatError(readme, "configs", f"a config {CONFIG_HQ!r} marked default: true", show(names),
                          writing=writing)
    import json

    bj = folder / "build.json"
    if not bj.is_file():
        raise FormatError(bj, "(file)", "the dataset's build.json", "no such file", writing=writing)
    validate_build_info(json.loads(bj.read_text()), bj, writing=writing)
    for tj in sorted((folder / "testsets").glob("*.json")):
        validate_info(json.loads(tj.read_text()), tj, writing=writing)
        if tj.stem not in names:
            raise FormatError(tj, "(file)", "a test set with a config of the same name", "no such config",
                              writing=writing)
    for k, c in enumerate(card.configs):
        where = f"configs[{k}]"
        info = info_of.get(c.config_name)
        if info is None:
            raise FormatError(readme, "dataset_info", f"an entry for config {c.config_name!r}", "none",
                              writing=writing)
        features = [f.get("name") for f in info.features]
        rows_of = {s.name: s.num_examples for s in info.splits}
        contract = HQ if c.config_name in HQ_CONFIGS else REFERENCES if c.config_name == CONFIG_REFS else TESTSET
        for d in c.data_files:
            if d.split not in rows_of:
                raise FormatError(readme, f"{where}.data_files", f"a split listed in dataset_info of "
                                  f"{c.config_name!r} ({sorted(rows_of)})", repr(d.split), writing=writing)
            if Path(d.path).is_absolute() or ".." in Path(d.path).parts:
                raise FormatError(readme, f"{where}.data_files.path", "a path inside the folder", repr(d.path),
                                  writing=writing)
            shards = sorted(folder.glob(d.path))
            if not shards:
                raise FormatError(readme, f"{where}.data_files.path", "a pattern matching parquet shards",
                                  f"{d.path!r} (no file)", writing=writing)
            n = 0
            for shard in shards:
                schema = parquet_schema(shard)
                check_columns(schema, contract, shard, writing=writing)
                if list(schema.names) != features:
                    raise FormatError(shard, "(columns)", f"the features of {c.config_name!r} in README.md "
                                      f"{features}", show(list(schema.names), 200), writing=writing)
                ids = pq.read_table(shard, columns=["image_id"]).column("image_id")
                if ids.null_count:
                    raise FormatError(shard, "image_id", "a value in every row", f"{ids.null_count} null(s)",
                                      writing=writing)
                n += pq.ParquetFile(shard).metadata.num_rows
            if n != rows_of[d.split]:
                raise FormatError(readme, f"dataset_info.{c.config_name}.splits.{d.split}.num_examples",
                                  f"{n} (the rows of its shards)", str(rows_of[d.split]), writing=writing)
    return card
