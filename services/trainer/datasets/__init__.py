"""Training datasets: validation, multi-oracle consensus, duplicate removal, grouped stratified splits.

- :mod:`.io` — label records, examples and datasets; reading labels (JSONL, the label store), saving datasets
- :mod:`.dedup` — MinHash near duplicates and the groups (near duplicates, same URL) a split never divides
- :mod:`.splits` — grouped 80/10/10 splits stratified by overall-score band, the frozen test split
- :mod:`.report` — a dataset's content hash and validation report
- :mod:`.build` — one filter's dataset; :mod:`.joint` — several filters' labels split once for a multi student
"""

from distillery_services.trainer.datasets.build import build_dataset
from distillery_services.trainer.datasets.dedup import near_duplicate_pairs
from distillery_services.trainer.datasets.io import (
    Dataset,
    DatasetError,
    Example,
    LabelRecord,
    records_from_jsonl,
    records_from_store,
    split_arrays,
    split_of,
)
from distillery_services.trainer.datasets.joint import JointDataset, build_joint_dataset
from distillery_services.trainer.datasets.report import dataset_hash, validation_report
from distillery_services.trainer.datasets.splits import SPLITS, FrozenSplit, frozen_test_ids, merged_frozen

__all__ = [
    "SPLITS", "Dataset", "DatasetError", "Example", "FrozenSplit", "JointDataset", "LabelRecord", "build_dataset",
    "build_joint_dataset", "dataset_hash", "frozen_test_ids", "merged_frozen", "near_duplicate_pairs",
    "records_from_jsonl", "records_from_store", "split_arrays", "split_of", "validation_report",
]
